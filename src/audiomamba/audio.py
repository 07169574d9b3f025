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
import torch.nn.functional as F

from audiomamba.errors import AudioDecodeError

# The one list of file extensions read as audio: by `audiomamba tag DIR`, folder datasets, AudioSet audio folders and
# the built-in data's source recordings.  All are formats libsndfile decodes.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"}
)

__all__ = [
    "AUDIO_EXTENSIONS", "AudioDecodeError", "is_audio_file", "load_audio", "to_mono", "array_to_mono", "resample",
    "check_waveform", "audio_duration", "decode_audio", "resample_torch", "resampled_length",
    "device_resampler_fits",
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
    :class:`AudioDecodeError` (naming the file) for anything soundfile cannot decode, for a truncated file (a
    header promising more samples than the file holds) and for NaN or infinite samples.
    """
    x, sr = decode_audio(path, offset_s=offset_s, duration_s=duration_s)
    x = to_mono(x)
    if sample_rate is not None and sample_rate != sr:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(x, dtype=np.float32), sr


def decode_audio(
    path: str | os.PathLike,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    dtype: str = "float32",
) -> tuple[np.ndarray, int]:
    """Decode a file as it is: ``(samples, channels)`` at its own rate.  ``dtype``: "float32", or "pcm16": int16
    samples as stored for a 16-bit PCM file (WAV, FLAC, ...; ``int16 / 32768`` is exactly its float32 decode, in
    half the bytes), float32 for any other.  The checks of :func:`load_audio` (missing, undecodable, truncated,
    non-finite) apply."""
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
            want = f.frames - min(start, f.frames) if duration_s is None else int(round(duration_s * sr))
            frames = -1 if duration_s is None else want
            if dtype == "pcm16":
                dtype = "int16" if f.subtype == "PCM_16" else "float32"
            x = f.read(frames=frames, dtype=dtype, always_2d=True)
            promised = f.frames
            fmt = f.format
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:  # libsndfile reports most problems as these
        raise AudioDecodeError(f"{path}: cannot decode audio ({e})") from e
    if duration_s is None and x.shape[0] < want and fmt in EXACT_LENGTH_FORMATS:
        raise AudioDecodeError(f"{path}: truncated: the header promises {promised} samples, {start + x.shape[0]} could be read")
    if fmt in ("WAV", "WAVEX"):
        declared = _wav_declared_frames(path)
        if declared is not None and declared > promised:
            raise AudioDecodeError(
                f"{path}: truncated: the WAV header promises {declared} samples per channel, the file holds {promised}"
            )
    if dtype != "int16" and not np.isfinite(x).all():
        raise AudioDecodeError(f"{path}: audio contains NaN or infinite samples")
    return x, sr


# Containers whose header states the exact number of frames: a short read there means a damaged file.  For
# compressed streams (MP3, Ogg) libsndfile's frame count is an estimate from the bitrate or the last page, and
# reading fewer frames than it is normal.
EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "AU", "CAF"})


_STREAMING_WAV_SIZE = 0x7FFF0000  # a data chunk this large is a streaming writer's placeholder (see below)


def _wav_declared_frames(path: Path) -> int | None:
    """Frames per channel that a RIFF/WAVE file's ``data`` chunk declares (None: not a plain RIFF WAVE file, a
    streaming placeholder size, or no ``fmt `` before ``data``).  libsndfile clips the count to what the file holds
    without a word, so a truncated file would otherwise decode as a shorter, valid one."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            for _ in range(64):  # a WAV file has a handful of chunks; give up on anything stranger
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                    f.seek(size - len(fmt) + (size & 1), 1)
                elif cid == b"data":
                    # writers that stream a WAV of unknown length leave a placeholder size: 0, or one of 2 GiB or
                    # more (0xFFFFFFFF; Linphone's recordings and ring tones declare 0x7FFFF000); such a file holds
                    # what was written, not a truncated whole
                    if not block_align or size == 0 or size >= _STREAMING_WAV_SIZE:
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None
    return None


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header (no decoding)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioDecodeError(f"{path}: cannot read audio header ({e})") from e
    return info.frames / info.samplerate


# ---------------------------------------------------------------------- resampling on the device
# A polyphase windowed-sinc resampler in torch, for resampling batches of waveforms where the model runs (the
# Tagger's file path on a GPU decodes at the file's own rate in its workers and resamples here).  For the rate
# change L/M (in lowest terms), output sample k sits at input time k*M/L; output samples q*L + r (phase r = 0..L-1)
# read the input around q*M + r*M/L: the input frames of ``taps`` samples every M samples (a strided view),
# times the (taps, L) matrix of the L phase filters, give the output L samples at a time (one matrix product,
# in chunks that bound the gathered frames' memory).  The filter is a sinc low-pass (cut-off just below the lower of the two Nyquist
# frequencies) under a Kaiser window; outputs are aligned with the input (no delay) and there are
# round(n * L / M) of them, as soxr gives.  Accuracy against soxr (HQ) is in tests/test_audio.py.

RESAMPLE_ZEROS = 48  # zero crossings of the sinc on each side (at the cut-off rate): sets the transition width
RESAMPLE_ROLLOFF = 0.945  # cut-off as a fraction of the lower Nyquist frequency (the mel bank ends at 14 kHz of 16)
RESAMPLE_BETA = 12.0  # Kaiser window beta (stop-band attenuation around 120 dB)
RESAMPLE_MAX_WEIGHTS = 1 << 22  # filters above this many taps in all (odd rate pairs): use soxr instead
RESAMPLE_CHUNK = 1 << 26  # at most this many input samples gathered into filter frames at once (256 MB)

_FILTERS: dict[tuple, torch.Tensor] = {}


def _rates(orig_sr: int, target_sr: int) -> tuple[int, int]:
    g = math.gcd(int(orig_sr), int(target_sr))
    return int(target_sr) // g, int(orig_sr) // g


def _filter_geometry(up: int, down: int) -> tuple[float, int, int]:
    """(cut-off in cycles per input sample x 2, half-width in input samples, taps per phase)."""
    cutoff = min(1.0, up / down) * RESAMPLE_ROLLOFF
    half = int(math.ceil(RESAMPLE_ZEROS / cutoff))
    return cutoff, half, 2 * half + down + 1


def device_resampler_fits(orig_sr: int, target_sr: int) -> bool:
    """Whether :func:`resample_torch`'s filter bank for this rate pair is of a sensible size."""
    up, down = _rates(orig_sr, target_sr)
    return up * _filter_geometry(up, down)[2] <= RESAMPLE_MAX_WEIGHTS


def _polyphase_filters(up: int, down: int, device: torch.device) -> torch.Tensor:
    key = (up, down, str(device))
    w = _FILTERS.get(key)
    if w is None:
        cutoff, half, taps = _filter_geometry(up, down)
        # phase r, tap m reads input sample q*down + m - half; its weight is h(r*down/up + half - m)
        t = (np.arange(up, dtype=np.float64)[:, None] * down / up + half) - np.arange(taps, dtype=np.float64)[None]
        window = np.where(np.abs(t) <= half, np.i0(RESAMPLE_BETA * np.sqrt(np.clip(1 - (t / half) ** 2, 0, 1))), 0.0)
        h = cutoff * np.sinc(cutoff * t) * window / np.i0(RESAMPLE_BETA)
        w = _FILTERS[key] = torch.from_numpy(h.astype(np.float32)).to(device)[:, None, :]
    return w


def resampled_length(samples: int, orig_sr: int, target_sr: int) -> int:
    """Samples out of :func:`resample` and :func:`resample_torch` for ``samples`` in: ``round(samples * target /
    orig)``."""
    up, down = _rates(orig_sr, target_sr)
    return (samples * up + down // 2) // down


def resample_torch(x: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample float waveforms ``(..., samples)`` from ``orig_sr`` to ``target_sr`` on their device (float32,
    no TF32), with a polyphase windowed-sinc filter; ``round(samples * target / orig)`` samples out, aligned with
    the input.  Matches :func:`resample` (soxr) to about -100 dB on band-limited audio (tests)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return x
    up, down = _rates(orig_sr, target_sr)
    _, half, taps = _filter_geometry(up, down)
    lead, n = x.shape[:-1], x.shape[-1]
    n_out = resampled_length(n, orig_sr, target_sr)
    blocks = -(-n_out // up)  # output blocks of `up` samples; block q reads input from q*down - half
    right = max(0, (blocks - 1) * down + taps - half - n)
    w = _polyphase_filters(up, down, x.device)[:, 0].T  # (taps, phases)
    rows = F.pad(x.reshape(-1, n).float(), (half, right))
    frames = rows.unfold(-1, taps, down)  # (batch, blocks, taps): block q = input q*down - half ...
    per = max(1, RESAMPLE_CHUNK // max(1, frames.shape[0] * taps))  # blocks per matmul: bounds the unfolded copy
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False  # full float32 products (TF32 would cost ~60 dB)
        with torch.autocast(x.device.type, enabled=False):
            y = torch.cat([frames[:, b0 : min(b0 + per, blocks)] @ w for b0 in range(0, blocks, per)], 1)  # (batch, blocks, phases)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return y.reshape(*lead, -1)[..., :n_out]
