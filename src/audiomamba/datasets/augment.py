"""Batch-level augmentation: mixup (spectrogram or waveform), the label-mixing variants, CutMix.

Partners follow the model's convention: example i is mixed with example ``B-1-i`` (the batch reversed), so a
``lam`` vector from :func:`sample_lambda` can go straight to ``model(..., mixup_lambda=lam)`` (spectrogram
mixup, HTS-AT) or to :func:`mix_waves`.  Randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sample_lambda", "mix_waves", "mix_targets", "cutmix"]


def sample_lambda(batch: int, alpha: float, prob: float, gen: torch.Generator) -> torch.Tensor:
    """(B,) mixing weights ~ Beta(alpha, alpha), 1.0 (no mixing) for examples not picked (probability ``prob``)."""
    if alpha <= 0:
        return torch.ones(batch)
    u = torch.rand(batch, 2, generator=gen)
    lam = torch.tensor([_beta(alpha, gen) for _ in range(batch)], dtype=torch.float32)
    return torch.where(u[:, 0] < prob, lam, torch.ones_like(lam))


def _beta(alpha: float, gen: torch.Generator) -> float:
    """Beta(alpha, alpha) from two gammas (Marsaglia-Tsang with torch's generator; alpha < 1 boosted)."""
    def gamma(a: float) -> float:
        boost = 1.0
        if a < 1:
            boost = float(torch.rand((), generator=gen)) ** (1.0 / a)
            a += 1.0
        d = a - 1.0 / 3
        c = 1.0 / (9 * d) ** 0.5
        while True:
            x = float(torch.randn((), generator=gen))
            v = (1 + c * x) ** 3
            if v <= 0:
                continue
            u = float(torch.rand((), generator=gen))
            if math.log(max(u, 1e-300)) < 0.5 * x * x + d - d * v + d * math.log(v):
                return d * v * boost
    a, b = gamma(alpha), gamma(alpha)
    return a / (a + b) if a + b > 0 else 0.5


def mix_waves(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x.flip(0)


def mix_targets(y: torch.Tensor, lam: torch.Tensor, mode: str = "mix") -> torch.Tensor:
    """``mix``: ``lam*y + (1-lam)*y_partner`` (HTS-AT); ``max``: the union of both label sets (label-mixing
    variant for multi-label data, where both sounds are present).  ``y``: ``(B, classes)`` clip targets or
    ``(B, classes, steps)`` frame targets."""
    lam = lam.view(-1, *([1] * (y.dim() - 1)))
    if mode == "max":
        mixed = torch.maximum(y, y.flip(0))
        return torch.where(lam < 1, mixed, y)
    lam = lam.to(y.dtype)
    return lam * y + (1 - lam) * y.flip(0)


def cutmix(x: torch.Tensor, alpha: float, prob: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Time CutMix on waveforms: replace a random segment of example i by the same segment of its partner;
    returns the new batch and ``lam`` = the fraction of each example kept."""
    b, n = x.shape
    out = x.clone()
    lam = torch.ones(b)
    for i in range(b):
        if float(torch.rand((), generator=gen)) >= prob:
            continue
        cut = 1.0 - _beta(alpha, gen)
        length = int(n * cut)
        if length <= 0:
            continue
        start = int(torch.randint(0, n - length + 1, (), generator=gen))
        out[i, start: start + length] = x[b - 1 - i, start: start + length]
        lam[i] = 1.0 - length / n
    return out, lam
