"""Loop-free selective scan for tracing and export (ONNX, TorchScript).

The chunked PyTorch scan decides at run time, from the data, whether to split a block; a trace would freeze
those decisions.  This scan has a fixed, data-independent graph: it solves ``h_t = a_t h_{t-1} + b_t``
hierarchically: blocks of 4 steps in closed form (``h = exp(E) * cumsum(exp(-E) * b)``), then the same
recurrence over the blocks' end states, recursively, then each block adds its decayed incoming state.  The
log-decay of one step (or one block, at the upper levels) is clamped at -15 nats, so ``exp(-E) <= e^60`` never
overflows float32; the clamp changes a state contribution of at most ``e^-15 ~ 3e-7`` of its size.
It is the scan backend "blocked" (:mod:`audiomamba.ops.selective_scan`), which ``backend="auto"`` picks only inside
:func:`audiomamba.ops.export_mode`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audiomamba.ops.scan_torch import effective_delta

_BLOCK = 4
_MIN_LOG_DECAY = -15.0

__all__ = ["selective_scan_blocked"]


def _linear_recurrence(log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h_t = exp(log_a_t) h_{t-1} + b_t`` with ``h_{-1} = 0`` along dim -2 of ``(..., T, n)`` tensors."""
    log_a = torch.clamp(log_a, min=_MIN_LOG_DECAY)
    length = log_a.shape[-2]
    if length <= _BLOCK:
        e = torch.cumsum(log_a, dim=-2)
        return torch.exp(e) * torch.cumsum(torch.exp(-e) * b, dim=-2)
    pad = (-length) % _BLOCK
    if pad:  # decay 0 and input 0 after the end: the earlier outputs do not change
        log_a = F.pad(log_a, (0, 0, 0, pad))
        b = F.pad(b, (0, 0, 0, pad))
    lead, n = log_a.shape[:-2], log_a.shape[-1]
    blocks = (length + pad) // _BLOCK
    la = log_a.reshape(*lead, blocks, _BLOCK, n)
    e = torch.cumsum(la, dim=-2)
    decay = torch.exp(e)
    local = decay * torch.cumsum(torch.exp(-e) * b.reshape(*lead, blocks, _BLOCK, n), dim=-2)
    # (narrow/pad rather than [..., i, :] indexing: the ONNX tracer mis-exports some ellipsis slices)
    last = len(lead) + 1  # the within-block axis
    ends = _linear_recurrence(e.narrow(last, _BLOCK - 1, 1).squeeze(last), local.narrow(last, _BLOCK - 1, 1).squeeze(last))
    incoming = F.pad(ends, (0, 0, 1, 0)).narrow(len(lead), 0, blocks)  # state entering each block
    h = local + decay * incoming.unsqueeze(last)
    return h.reshape(*lead, blocks * _BLOCK, n).narrow(len(lead), 0, length)


def selective_scan_blocked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Selective scan with the contract of :func:`audiomamba.ops.selective_scan`, loop-free (see module doc)."""
    batch, channels, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    e = channels // groups
    f32 = torch.float32
    delta = effective_delta(delta, delta_bias, delta_softplus)
    uf = u.to(f32)
    d4 = delta.reshape(batch, groups, e, length)
    log_a = d4.unsqueeze(-1) * A.to(f32).reshape(1, groups, e, 1, state)  # (b, g, e, T, n)
    bt = B.to(f32).transpose(-1, -2).unsqueeze(2)  # (b, g, 1, T, n)
    bu = (d4 * uf.reshape(batch, groups, e, length)).unsqueeze(-1) * bt
    h = _linear_recurrence(log_a, bu)
    y = (h * C.to(f32).transpose(-1, -2).unsqueeze(2)).sum(-1).reshape(batch, channels, length)
    if D is not None:
        y = y + D.to(f32)[:, None] * uf
    return y.to(u.dtype)
