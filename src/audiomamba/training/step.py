"""Pieces of one training step that are specific to Audio Mamba."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AudioMambaLogits", "check_graphable"]


class AudioMambaLogits(nn.Module):
    """``(wave[, mixup_lambda]) -> clip logits`` of an Audio Mamba model in training: the tensor-only forward a
    CUDA graph records.  The waveform's finiteness check (a host sync) is left to the data loader, which checks
    every decoded clip."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor, *mixup_lambda: torch.Tensor) -> torch.Tensor:
        lam = mixup_lambda[0] if mixup_lambda else None
        return self.model(wave, mixup_lambda=lam, check_finite=False).logits


def check_graphable(model: nn.Module, samples: int) -> None:
    """Raise ``ValueError`` if a training forward of ``samples``-long clips draws randomness on the host."""
    from audiomamba.models.audiomamba import FOLD_FRAMES

    frames = model.frontend.num_frames(samples)
    if model.layout == "fold" and frames > FOLD_FRAMES:
        raise ValueError(
            f"train.cuda_graph: fold-layout training crops clips longer than {FOLD_FRAMES} frames at a random "
            f"position chosen on the host, which a CUDA graph would freeze; these clips have {frames} frames. "
            "Use data.clip_seconds <= 10.24 (at 32 kHz), model.layout: native, or train.cuda_graph: false"
        )
