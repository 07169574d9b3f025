"""Audio I/O: decode a file (or take an array), downmix to mono, resample, check.

Decoding is done by soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3 and more), resampling by soxr
(the SoX resampler, high quality).  Every function returns float32 numpy arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from audiomamba.errors import AudioDecodeError

# The one list of file extensions read as audio: by `audiomamba tag DIR`, folder datasets, AudioSet audio folders and
# the built-in data's source recordings.  All are formats libsndfile decodes.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"}
)

__all__ = ["AUDIO_EXTENSIONS", "AudioDecodeError", "is_audio_file", "load_audio", "to_mono", "resample", "check_waveform", "audio_duration"]



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


def check_waveform(x: np.ndarray, name: str = "waveform") -> np.ndarray:
    """Raise ``ValueError`` naming ``name`` if ``x`` is empty or holds NaN/inf; return it otherwise."""
    if x.size == 0:
        raise ValueError(f"{name}: audio is empty (0 samples)")
    if not np.all(np.isfinite(x)):
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
