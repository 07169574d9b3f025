"""Chunked selective scan in pure PyTorch: the CPU path and the GPU fallback.

The sequence is cut into chunks of ``chunk`` steps.  Inside a chunk the diagonal linear recurrence
``h_t = a_t h_{t-1} + b_t`` (``a_t = exp(delta_t A)``) is solved in closed form with two cumulative sums::

    S_t = sum_{s<=t} delta_s A            (log of the decay since the chunk start, <= 0)
    E_t = S_t - S_0                       (the same, not counting the first step's own decay)
    h_t = exp(S_t) h_start + exp(E_t) * sum_{s<=t} exp(-E_s) b_s

which is exact, vectorised over the whole chunk, and costs O(length) work.  ``exp(-E_s)`` overflows float32
once a chunk decays by more than ~88 nats, so a chunk whose total decay exceeds ``_MAX_DECAY`` is split in two
(recursively, down to single steps, which are always safe): results stay exact for any input.

Memory: only one chunk's ``(batch, channels, chunk, state)`` tensors exist at a time.  Under autograd each
chunk is wrapped in activation checkpointing, so the backward recomputes the chunk and keeps only the chunk
boundary states: memory stays linear in the length.  State is float32 whatever the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Largest decay (in nats) a chunk may accumulate before it is split; exp(60) ~ 1e26 leaves float32 headroom.
_MAX_DECAY = 60.0
DEFAULT_CHUNK = 128


def _chunk_step(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve one chunk. u, delta: (b, k, e, t) float32 (delta already softplus'ed); A: (k, e, n);
    B, C: (b, k, n, t); h0: (b, k, e, n). Returns (y (b, k, e, t), h_end (b, k, e, n))."""
    # A is constant over time, so the log-decay E_t[n] = A[n] * (sum_{s<=t} delta_s - delta_0) needs a cumsum
    # of delta only, not of the (…, t, n) product.
    cd = torch.cumsum(delta, dim=-1) - delta[..., :1]
    length = delta.shape[-1]
    if length > 1 and float(-(cd[..., -1:] * A).detach().min()) > _MAX_DECAY:
        half = length // 2
        y1, h1 = _chunk_step(u[..., :half], delta[..., :half], A, B[..., :half], C[..., :half], h0)
        y2, h2 = _chunk_step(u[..., half:], delta[..., half:], A, B[..., half:], C[..., half:], h1)
        return torch.cat([y1, y2], dim=-1), h2
    logdecay = cd.unsqueeze(-1) * A.unsqueeze(-2)  # E: (b, k, e, t, n), in [-_MAX_DECAY, 0]
    decay = torch.exp(logdecay)  # exp(E), in (0, 1]
    bu = (delta * u).unsqueeze(-1) * B.transpose(-1, -2).unsqueeze(2)
    h0 = h0 * torch.exp(delta[..., 0:1] * A)  # the first step's own decay applies to the carried state only
    # exp(-E) rather than 1 / exp(E): the backward of a division squares the divisor, and exp(E)**2 underflows
    # float32 once E < -52 (NaN gradients); exp(-E) <= exp(_MAX_DECAY) stays finite.
    h = decay * (h0.unsqueeze(-2) + torch.cumsum(bu * torch.exp(-logdecay), dim=-2))
    y = (h * C.transpose(-1, -2).unsqueeze(2)).sum(-1)
    return y, h[..., -1, :]


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Chunked selective scan (see :func:`audiomamba.ops.selective_scan` for the contract)."""
    batch, channels, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    e = channels // groups
    f32 = torch.float32
    delta = delta.to(f32)
    if delta_bias is not None:
        delta = delta + delta_bias.to(f32)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    uf = u.to(f32).view(batch, groups, e, length)
    delta = delta.view(batch, groups, e, length)
    Af = A.to(f32).view(groups, e, state)
    Bf, Cf = B.to(f32), C.to(f32)
    h = uf.new_zeros(batch, groups, e, state)
    use_ckpt = torch.is_grad_enabled() and any(
        t.requires_grad for t in (u, delta, A, B, C) if t is not None
    )
    ys = []
    for t0 in range(0, length, chunk):
        sl = slice(t0, min(t0 + chunk, length))
        args = (uf[..., sl], delta[..., sl], Af, Bf[..., sl], Cf[..., sl], h)
        y, h = checkpoint(_chunk_step, *args, use_reentrant=False) if use_ckpt else _chunk_step(*args)
        ys.append(y)
    y = torch.cat(ys, dim=-1).reshape(batch, channels, length) if ys else uf.new_zeros(batch, channels, 0)
    if D is not None:
        y = y + D.to(f32)[:, None] * u.to(f32)
    return y.to(u.dtype)
