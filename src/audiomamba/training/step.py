"""The pieces of one training step: the batch's random generator, mixup / CutMix, the losses (clip, and frame
against strong labels), the tensor-only forward a CUDA graph records, and the record of the step losses.
:class:`audiomamba.training.trainer.Trainer` puts them together."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiomamba.datasets.augment import cutmix, mix_targets, mix_waves, sample_lambda
from audiomamba.training.config import AugmentConfig

__all__ = ["batch_generator", "MixedBatch", "mix_batch", "tagging_loss", "frame_targets", "frame_loss", "LossLog",
           "AudioMambaLogits", "check_graphable"]


def batch_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The generator of a micro-batch's augmentation draws: a function of the run's seed and the batch's place
    (optimiser step, micro-batch of the epoch, rank), so a resumed run draws the same as an uninterrupted one."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, step, micro, rank]).integers(0, 2**62)))


class MixedBatch(NamedTuple):
    """:func:`mix_batch`'s result: the waveforms (mixed for CutMix and waveform mixup), the mixed clip targets,
    for spectrogram mixup the ``(B,)`` weights the model mixes its spectrograms with (else None), and the mixed
    frame targets and their clip mask (None without frame targets)."""

    wave: torch.Tensor
    target: torch.Tensor
    mixup_lambda: torch.Tensor | None
    frame_target: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None


def mix_batch(wave: torch.Tensor, target: torch.Tensor, aug: AugmentConfig, gen: torch.Generator,
              frame_target: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None) -> MixedBatch:
    """CutMix, then mixup, as ``aug`` asks (each example mixed with its partner in the reversed batch).

    ``frame_target`` ``(B, classes, steps)`` (:func:`frame_targets`) and ``frame_mask`` ``(B,)`` (the clips that
    have them) are mixed as the clip targets are; a mixed example keeps its frame targets only when its partner
    has them too.  CutMix cannot take frame targets (it moves sounds without their steps' targets): ValueError.
    The weights are drawn on the host from ``gen``."""
    mixup_lambda = None
    if frame_target is not None and aug.cutmix_prob > 0:
        raise ValueError("CutMix does not move frame targets: augment.cutmix_prob must be 0 with frame targets")
    # lam lives in pageable host memory: non_blocking keeps its copy from waiting for the queued GPU work
    if aug.cutmix_prob > 0:
        wave, lam = cutmix(wave, aug.cutmix_alpha, aug.cutmix_prob, gen)
        target = mix_targets(target, lam.to(target.device, non_blocking=True), "mix")
    if aug.mixup != "none" and wave.shape[0] > 1:
        lam = sample_lambda(wave.shape[0], aug.mixup_alpha, aug.mixup_prob, gen).to(wave.device, non_blocking=True)
        target = mix_targets(target, lam, aug.mixup_targets)
        if frame_target is not None:
            frame_target = mix_targets(frame_target, lam, aug.mixup_targets)
            frame_mask = torch.where(lam < 1, frame_mask & frame_mask.flip(0), frame_mask)
        if aug.mixup == "wave":
            wave = mix_waves(wave, lam)
        else:
            mixup_lambda = lam
    return MixedBatch(wave, target, mixup_lambda, frame_target, frame_mask)


def tagging_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Binary cross-entropy per class (multi-label), or cross-entropy against the targets normalised to sum to
    one (single-label; soft after mixup)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target / target.sum(1, keepdim=True).clamp_min(1e-8))


def frame_targets(events: torch.Tensor, num_classes: int, steps: int, span: float = 1.0) -> torch.Tensor:
    """Strong labels rasterised onto a model's time steps: ``(B, num_classes, steps)`` soft targets in [0, 1].

    ``events`` ``(B, E, 3)``: rows ``(class, onset, offset)`` with times as fractions of the clip, class -1 for
    padding (:func:`audiomamba.datasets.loader.batch_events`).  Step ``j`` covers ``[j, j + 1) * span / steps``
    of the clip (``span``: the fraction the steps cover together, :meth:`AudioMamba.step_grid
    <audiomamba.models.audiomamba.AudioMamba.step_grid>`), cut to the clip's end (the part beyond it is
    padding).  A step's target for a class is the fraction of that part covered by the class's events: their
    overlaps summed, which is the covered fraction because a class's rows do not overlap (the loader merges
    them; overlapping rows would count twice, up to 1).  Tensor operations only, on the events' device."""
    edges = torch.arange(steps + 1, device=events.device, dtype=events.dtype) * (span / steps)
    lo, hi = edges[:-1].clamp(max=1.0), edges[1:].clamp(max=1.0)
    on, off = events[..., 1:2], events[..., 2:3]  # (B, E, 1)
    overlap = (torch.minimum(off, hi) - torch.maximum(on, lo)).clamp_min(0) / (hi - lo).clamp_min(1e-6)  # (B, E, T)
    cls = events[..., 0].long()
    onehot = F.one_hot(cls.clamp_min(0), num_classes).to(events.dtype) * (cls >= 0).unsqueeze(-1)  # (B, E, C)
    return torch.einsum("bec,bet->bct", onehot, overlap).clamp(0.0, 1.0)


def frame_loss(step_logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of per-step logits ``(B, classes, steps)`` against :func:`frame_targets`, averaged
    over the clips of ``mask`` ``(B,)`` (those with strong labels), their classes and steps; 0 when the mask is
    empty.  No host synchronisation."""
    bce = F.binary_cross_entropy_with_logits(step_logits, target, reduction="none").mean(dim=(1, 2))
    m = mask.to(bce.dtype)
    return (bce * m).sum() / m.sum().clamp_min(1.0)


class LossLog:
    """Training losses per optimiser step, read from the device one step late: reading a loss waits for the
    kernels that computed it, and reading it at once would leave the GPU idle while the host prepares the next
    step.  :meth:`flush` reads everything (before a checkpoint, a log line that must be exact, or the end)."""

    def __init__(self) -> None:
        self._micro: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None
        self.losses: list[float] = []  # one mean per completed optimiser step
        self.average: float | None = None  # exponential moving average of ``losses``

    def add(self, loss: torch.Tensor) -> None:
        """One micro-batch's loss (a 0-d tensor)."""
        self._micro.append(loss.detach().float())

    def end_step(self) -> None:
        """Close an optimiser step: its mean becomes pending; the previous step's is read."""
        mean = self._micro[0] if len(self._micro) == 1 else torch.stack(self._micro).mean()
        self._micro = []
        self.flush()
        self._pending = mean

    def flush(self) -> None:
        """Read the pending step's loss, if any, into :attr:`losses` and :attr:`average`."""
        if self._pending is not None:
            v = float(self._pending)
            self._pending = None
            self.losses.append(v)
            self.average = v if self.average is None else 0.9 * self.average + 0.1 * v


class AudioMambaLogits(nn.Module):
    """``(wave[, mixup_lambda]) -> clip logits`` of an Audio Mamba model in training, or with ``steps=True``
    ``(clip logits, step logits)`` (the valid steps, for the frame loss): the tensor-only forward a CUDA graph
    records.  The waveform's finiteness check (a host sync) is left to the data loader, which checks every
    decoded clip."""

    def __init__(self, model: nn.Module, steps: bool = False) -> None:
        super().__init__()
        self.model, self.steps = model, steps

    def forward(self, wave: torch.Tensor,
                *mixup_lambda: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        lam = mixup_lambda[0] if mixup_lambda else None
        out = self.model(wave, mixup_lambda=lam, check_finite=False)
        return (out.logits, out.step_logits) if self.steps else out.logits


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
