"""Features: the HTS-AT log-mel front end and SpecAugment.

Log-mel as in HTS-AT/PANNs (Audio Mamba, Lin & Hu, 2024, keeps HTS-AT's front end): centred STFT with reflect
padding and a periodic Hann window, power spectrogram, Slaney-style mel filterbank (librosa's default),
``10 * log10(max(x, 1e-10))``.  Written with torch ops (no torchaudio/librosa dependency) so that it runs,
exports and differentiates with the model.  One class, :class:`LogMel`, in two STFT forms (``torch.stft``, or a
strided conv1d over the windowed DFT basis that every exporter and runtime has) and with a blocked mode for
long inputs; the mel filterbank and the dB conversion are shared by all of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["FrontendConfig", "LogMel", "SpecAugment", "mel_filterbank"]


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3.0)
    log = 1000.0 * np.exp((m - 15.0) * (math.log(6.4) / 27.0))
    return np.where(m >= 15.0, log, lin)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, ``(n_fft // 2 + 1, n_mels)`` float64."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_freqs[None] - lo) / (mid - lo)
    falling = (hi - fft_freqs[None]) / (hi - mid)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))  # equal-area (Slaney) norm
    return weights.T


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel settings; the defaults are HTS-AT's for 32 kHz audio (10 ms hop, 32 ms window)."""

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0

    @classmethod
    def for_sample_rate(cls, sample_rate: int) -> "FrontendConfig":
        """HTS-AT's settings scaled to another rate: same 10 ms hop and ~32 ms window."""
        if sample_rate == 32000:
            return cls()
        n_fft = 2 ** round(math.log2(sample_rate * 0.032))
        return cls(sample_rate, n_fft, sample_rate // 100, 64, 50.0, min(14000.0, sample_rate / 2.0))

    def to_dict(self) -> dict:
        return asdict(self)


STFTS = ("torch", "conv")


class LogMel(nn.Module):
    """Waveform ``(B, samples)`` -> log-mel ``(B, frames, n_mels)`` in dB; ``frames = 1 + samples // hop``.

    ``stft="torch"`` (the model's) uses ``torch.stft``; ``stft="conv"`` (for export) reflect-pads and applies a
    strided ``conv1d`` whose kernels are the Hann-windowed DFT basis (cos and -sin rows): the same numbers up to
    float32 rounding of the DFT sums, with ops every exporter and runtime has.  ``forward(wave, block_frames=N)``
    computes an input of more than ``N`` frames in blocks of ``N`` frames, so that it never holds its whole STFT
    (the Tagger's mode for long files); blocks give the same frames as one pass.  Always computed in float32
    (also under autocast).
    """

    def __init__(self, cfg: FrontendConfig = FrontendConfig(), stft: str = "torch") -> None:
        super().__init__()
        if stft not in STFTS:
            raise ValueError(f"stft must be 'torch' or 'conv', got {stft!r}")
        self.cfg, self.stft = cfg, stft
        # on the CPU like mel_fb, whatever device the model is built on (.to() moves both): on the meta device of
        # a checkpoint's shape check, hann_window would run torch's Python reference kernels (importing dynamo)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True, device="cpu"), persistent=False)
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
        self.register_buffer("mel_fb", torch.from_numpy(fb).float(), persistent=False)
        if stft == "conv":
            bins = cfg.n_fft // 2 + 1
            angle = 2.0 * math.pi * np.arange(bins)[:, None] * np.arange(cfg.n_fft)[None, :] / cfg.n_fft
            w = torch.hann_window(cfg.n_fft, periodic=True, device="cpu").double().numpy()  # the window above
            basis = np.concatenate([w * np.cos(angle), -w * np.sin(angle)])  # (2 * bins, n_fft)
            self.register_buffer("dft_basis", torch.from_numpy(basis).float().unsqueeze(1), persistent=False)

    @property
    def min_samples(self) -> int:
        """Shortest input the centred STFT with reflect padding accepts."""
        return self.cfg.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.cfg.hop_length

    def forward(self, wave: torch.Tensor, block_frames: int | None = None) -> torch.Tensor:
        if self.stft == "conv":  # the export form: a traced graph runs in float32 and has no autocast to undo
            return self._log_mel(wave, block_frames)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._log_mel(wave.float(), block_frames)

    def _log_mel(self, wave: torch.Tensor, block_frames: int | None) -> torch.Tensor:
        frames = self.num_frames(wave.shape[-1])
        if block_frames is None or frames <= block_frames:
            return self._decibels(self._power(wave, centred=True))
        # the centred STFT's reflect padding once, then each block uncentred on its own span of samples
        half, hop = self.cfg.n_fft // 2, self.cfg.hop_length
        padded = nn.functional.pad(wave.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
        blocks = []
        for f0 in range(0, frames, block_frames):
            f1 = min(frames, f0 + block_frames)
            span = padded[:, f0 * hop : (f1 - 1) * hop + self.cfg.n_fft]
            blocks.append(self._decibels(self._power(span, centred=False)))
        return torch.cat(blocks, dim=1)

    def _power(self, wave: torch.Tensor, centred: bool) -> torch.Tensor:
        """Power spectrogram ``(B, n_fft // 2 + 1, frames)``; ``centred``: reflect-pad by half a window first."""
        cfg = self.cfg
        if self.stft == "torch":
            spec = torch.stft(wave, cfg.n_fft, cfg.hop_length, window=self.window, center=centred, pad_mode="reflect",
                              return_complex=True)
            return spec.real.square() + spec.imag.square()
        x = wave.unsqueeze(1)
        if centred:
            x = nn.functional.pad(x, (cfg.n_fft // 2, cfg.n_fft // 2), mode="reflect")
        spec = nn.functional.conv1d(x, self.dft_basis, stride=cfg.hop_length)  # (B, 2 * bins, frames)
        bins = cfg.n_fft // 2 + 1
        return spec[:, :bins].square() + spec[:, bins:].square()

    def _decibels(self, power: torch.Tensor) -> torch.Tensor:
        """Power ``(B, freq, frames)`` -> log-mel ``(B, frames, n_mels)`` in dB."""
        return 10.0 * torch.log10(torch.matmul(power.transpose(1, 2), self.mel_fb).clamp(min=1e-10))


class SpecAugment(nn.Module):
    """Zero ``time_stripes`` random time stripes (width < ``time_width``) and ``freq_stripes`` frequency
    stripes (width < ``freq_width``) per example, in training only.  Input ``(B, frames, mels)``."""

    def __init__(self, time_width: int = 64, time_stripes: int = 2, freq_width: int = 8, freq_stripes: int = 2) -> None:
        super().__init__()
        self.time_width, self.time_stripes = time_width, time_stripes
        self.freq_width, self.freq_stripes = freq_width, freq_stripes

    def _mask(self, batch: int, size: int, width: int, stripes: int, device: torch.device) -> torch.Tensor:
        """(batch, size) bool: True where some stripe covers the position."""
        width = min(width, size)
        w = torch.randint(0, width, (batch, stripes, 1), device=device)
        start = (torch.rand(batch, stripes, 1, device=device) * (size - w + 1)).long()
        pos = torch.arange(size, device=device)
        return ((pos >= start) & (pos < start + w)).any(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        b, t, f = x.shape
        drop = self._mask(b, t, self.time_width, self.time_stripes, x.device)[:, :, None]
        drop = drop | self._mask(b, f, self.freq_width, self.freq_stripes, x.device)[:, None, :]
        return x.masked_fill(drop, 0.0)
