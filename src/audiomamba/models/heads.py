"""Heads on the last stage's feature map: HTS-AT's token-semantic head and a pooled linear head.

Both take the channels-last map ``(B, F, T, C)`` whose rows are frequency and columns time (the fold layout
is regrouped into this form before the head), and return ``(clip_logits, step_logits or None, embedding)``
where ``step_logits`` is ``(B, classes, T)``, one per time column.
"""

from __future__ import annotations

import torch
from torch import nn

from audiomamba.models.layers import LayerNorm

__all__ = ["TokenSemanticHead", "FineSteps", "LinearHead", "TransformerBlocks", "logits_to_scores"]


def logits_to_scores(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """The one activation of every output: a sigmoid per class for multi-label models, a softmax over the class
    axis (the last) for single-label ones.  Clip ``(..., C)`` and framewise ``(..., frames, C)`` logits alike."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


class TokenSemanticHead(nn.Module):
    """HTS-AT's token-semantic CAM head: LayerNorm, then a ``(freq_rows x 3)`` convolution that collapses the
    frequency rows into per-time-step class logits; clip logits are their mean over time."""

    def __init__(self, dim: int, num_classes: int, freq_rows: int = 2) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.tscam_conv = nn.Conv2d(dim, num_classes, kernel_size=(freq_rows, 3), padding=(0, 1))
        self.freq_rows = freq_rows

    def forward(self, x: torch.Tensor, valid_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.shape[1] != self.freq_rows:
            raise ValueError(f"token-semantic head expects {self.freq_rows} frequency rows, got map {tuple(x.shape)}")
        x = self.norm(x).permute(0, 3, 1, 2)  # (B, C, F, T)
        steps = valid_steps or x.shape[-1]
        embedding = x[..., :steps].mean(dim=(2, 3))
        step_logits = self.tscam_conv(x).flatten(2)  # (B, classes, T)
        return step_logits[..., :steps].mean(-1), step_logits, embedding


class FineSteps(nn.Module):
    """Finer time steps for the token-semantic head: a correction to its step logits, upsampled onto an earlier
    stage's time grid, read from that stage's map ``(B, rows, steps, C)``.  LayerNorm, a ``(rows x 3)``
    convolution to ``hidden`` channels, GELU, and a ``(1 x 3)`` convolution to the classes.  The last one starts at
    zero, so a model given fine steps starts out as the coarse model it is initialised from (the same clip
    logits; framewise logits the same in fold layout and, in native layout, up to the corners of the linear
    interpolation at the coarse step centres), and the frame loss teaches the correction where within a coarse
    step a sound starts and stops."""

    def __init__(self, dim: int, num_classes: int, rows: int, hidden: int = 256) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.mix = nn.Conv2d(dim, hidden, kernel_size=(rows, 3), padding=(0, 1))
        self.act = nn.GELU()
        self.out = nn.Conv2d(hidden, num_classes, kernel_size=(1, 3), padding=(0, 1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage map ``(B, rows, steps, C)`` -> logit corrections ``(B, classes, steps)``."""
        if x.shape[1] != self.rows:
            raise ValueError(f"fine steps expect {self.rows} frequency rows, got map {tuple(x.shape)}")
        x = self.norm(x).permute(0, 3, 1, 2)  # (B, C, rows, steps)
        return self.out(self.act(self.mix(x))).flatten(2)


class LinearHead(nn.Module):
    """LayerNorm, average pool over all tokens, Linear: clip logits only (no framewise output)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, valid_steps: int | None = None) -> tuple[torch.Tensor, None, torch.Tensor]:
        x = self.norm(x)[:, :, : valid_steps or x.shape[2]]
        embedding = x.mean(dim=(1, 2))
        return self.head(embedding), None, embedding


class TransformerBlocks(nn.Module):
    """Pre-norm self-attention blocks over the last stage's tokens (the paper's "extra transformer" ablation)."""

    def __init__(self, dim: int, depth: int, head_dim: int = 32) -> None:
        super().__init__()
        heads = max(1, dim // head_dim)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, t, c = x.shape
        tokens = x.reshape(b, f * t, c)
        for blk in self.blocks:
            tokens = blk(tokens)
        return tokens.reshape(b, f, t, c)
