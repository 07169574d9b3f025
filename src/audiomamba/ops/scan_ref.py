"""Sequential reference of the selective scan: one step at a time, as the recurrence is written.

Slow but obviously right; tests compare the fast implementations against it (run in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Selective scan by the sequential recurrence (see :func:`audiomamba.ops.selective_scan`).

    Computes in ``float64`` when any input is float64, else in float32; returns ``u``'s dtype.
    """
    dtype = torch.float64 if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype) else torch.float32
    batch, channels, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # Each group of channels (one scan direction) shares its B and C.
    B = B.repeat_interleave(channels // groups, dim=1)  # (batch, channels, state, length)
    C = C.repeat_interleave(channels // groups, dim=1)
    h = u.new_zeros(batch, channels, state)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, channels, 0)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    return y
