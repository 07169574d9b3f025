"""AdamW parameter groups, learning-rate schedules and the EMA of weights."""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from audiomamba.training.config import OptimConfig

NO_DECAY_SUFFIXES = ("A_logs", "Ds", "bias")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on weights; none on biases, norms (1-d tensors), ``A_logs`` and ``Ds``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim <= 1 or leaf in NO_DECAY_SUFFIXES or name.endswith(NO_DECAY_SUFFIXES) or "norm" in name.lower():
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def htsat_factor(epoch: int, warmup: list[float], milestones: list[int]) -> float:
    """HTS-AT's per-epoch lr factor: ``warmup[e]`` for the first epochs, then ``warmup[-1]`` until
    ``milestones[0]``, ``warmup[-2]`` until ``milestones[1]``, ..., then ``max(warmup[0] * 0.98**epoch, 0.03)``."""
    if epoch < len(warmup):
        return warmup[epoch]
    pos = -1 - bisect.bisect_left(milestones, epoch)
    if pos < -len(warmup):
        return max(warmup[0] * (0.98 ** epoch), 0.03)
    return warmup[pos]


def lr_factor(cfg: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` (0-based)."""
    if cfg.schedule == "htsat":
        return htsat_factor(step // max(1, steps_per_epoch), cfg.htsat_warmup, cfg.htsat_milestones)
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                       for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow += (1 - decay) * (weights - shadow); integer buffers are copied.  Float32 tensors are updated
        with one multi-tensor lerp (a few launches instead of two per tensor: host time on a GPU)."""
        lerp_s, lerp_v = [], []
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype == s.dtype == torch.float32 and v.device == s.device:
                lerp_s.append(s)
                lerp_v.append(v.detach())
            elif v.is_floating_point():
                s.lerp_(v.detach().to(s.dtype), 1 - self.decay)
            else:
                s.copy_(v)
        if lerp_s:
            torch._foreach_lerp_(lerp_s, lerp_v, 1 - self.decay)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (in its own dtypes)."""
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})

    def state_dict(self) -> dict:
        """``{"decay", "shadow"}``."""
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output; each tensor goes to the device of the shadow it replaces (a
        checkpoint is read onto the CPU, the weights may be on a GPU)."""
        self.decay = float(state["decay"])
        self.shadow = {k: v.to(self.shadow[k].device, copy=True) for k, v in state["shadow"].items()}
