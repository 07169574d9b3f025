"""Audio I/O: decode a file (or take an array), downmix to mono, resample, check.

Decoding is done by soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3 and more), resampling by soxr
(the SoX resampler, high quality); they return float32 numpy arrays.  :func:`check_waveform` is the
one check of a waveform's content, used by the data loaders, the Tagger and the model's forward.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from audiomamba.errors import AudioDecodeError

# The one list of file extensions read as audio: by `audiomamba tag DIR`, folder datasets, AudioSet audio folders and
# the built-in data's source recordings.  All are formats libsndfile decodes.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"}
)

__all__ = [
    "AUDIO_EXTENSIONS", "AudioDecodeError", "is_audio_file", "load_audio", "to_mono", "array_to_mono", "resample",
    "check_waveform", "audio_duration",
]


def is_audio_file(path: str | os.PathLike) -> bool:
    """True for an existing regular file whose extension is one of :data:`AUDIO_EXTENSIONS`."""
    p = Path(path)
    return p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()


def to_mono(x: np.ndarray) -> np.ndarray:
    """Downmix ``(samples,)`` or ``(samples, channels)`` audio to ``(samples,)`` by averaging channels."""
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected audio of shape (samples,) or (samples, channels), got {tuple(x.shape)}")
    return x.mean(axis=1)


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float audio from ``orig_sr`` to ``target_sr`` with soxr (identity when equal)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    x = np.asarray(x, dtype=np.float32)
    if orig_sr == target_sr or x.size == 0:
        return x
    import soxr

    return soxr.resample(x, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def array_to_mono(x: np.ndarray | torch.Tensor, name: str = "waveform") -> np.ndarray:
    """An array or tensor of samples -> mono float32 ``(samples,)``.

    Accepts 1-D samples, or 2-D audio with a channel axis of at most 16 either way round (``(channels, samples)``,
    the torch convention, or ``(samples, channels)``); integer PCM is scaled to [-1, 1).  Raises ``ValueError``
    naming ``name`` for anything else.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected numeric audio samples, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim == 2:
        if x.shape[0] <= 16 and x.shape[0] < x.shape[1]:
            x = x.T  # (channels, samples), the torch convention
        elif x.shape[1] > 16:
            raise ValueError(f"{name}: cannot tell the channel axis of an array of shape {x.shape}; pass mono (samples,)")
        x = to_mono(x)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected audio of shape (samples,) or (channels, samples), got {x.shape}")
    return x


_SHAPES = {1: "(samples,)", 2: "(batch, samples)"}


def check_waveform(
    x: np.ndarray | torch.Tensor,
    name: str = "waveform",
    *,
    ndim: int | None = None,
    min_samples: int = 0,
    sample_rate: int | None = None,
    expected_rate: int | None = None,
    check_finite: bool = True,
) -> np.ndarray | torch.Tensor:
    """The one waveform check: raise ``ValueError`` naming ``name`` if ``x`` is not usable audio; return it otherwise.

    Always: ``x`` is empty.  Optionally: its ``sample_rate`` differs from ``expected_rate``; it does not have
    ``ndim`` dimensions (1: ``(samples,)``, 2: ``(batch, samples)``); it has fewer than ``min_samples`` samples
    (along the last axis); it holds NaN or inf (``check_finite``; on a GPU tensor this waits for the device).
    Works on numpy arrays and torch tensors alike.
    """
    if sample_rate is not None and expected_rate is not None and int(sample_rate) != int(expected_rate):
        raise ValueError(
            f"{name}: sample rate {sample_rate} Hz differs from the model's {expected_rate} Hz; resample it first "
            "(audiomamba.audio.resample)"
        )
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name}: expected a waveform array or tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected a waveform of shape {_SHAPES.get(ndim, f'{ndim}-D')}, got {tuple(x.shape)}")
    samples = x.shape[-1] if x.ndim else 0
    if samples < min_samples:
        at = f" ({min_samples / expected_rate * 1000:.0f} ms at {expected_rate} Hz)" if expected_rate else ""
        raise ValueError(f"{name}: too short: {samples} samples, need at least {min_samples}{at}")
    if math.prod(x.shape) == 0:
        raise ValueError(f"{name}: audio is empty (0 samples)")
    if check_finite and not bool((torch.isfinite(x) if isinstance(x, torch.Tensor) else np.isfinite(x)).all()):
        raise ValueError(f"{name}: audio contains NaN or infinite samples")
    return x


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 at ``sample_rate`` (the file's own rate when None).

    ``offset_s`` / ``duration_s`` read only a part of the file (seeking where the format allows).
    Returns ``(samples, sample_rate)``. Raises ``FileNotFoundError`` for a missing path and
    :class:`AudioDecodeError` (naming the file) for anything soundfile cannot decode.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioDecodeError(f"{path}: is a directory, not an audio file")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset_s * sr))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration_s is None else int(round(duration_s * sr))
            x = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:  # libsndfile reports most problems as these
        raise AudioDecodeError(f"{path}: cannot decode audio ({e})") from e
    x = to_mono(x)
    if sample_rate is not None and sample_rate != sr:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(x, dtype=np.float32), sr


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header (no decoding)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioDecodeError(f"{path}: cannot read audio header ({e})") from e
    return info.frames / info.samplerate
