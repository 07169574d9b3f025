"""Chunked selective scan in pure PyTorch: the CPU path and the GPU fallback.

The diagonal linear recurrence ``h_t = a_t h_{t-1} + b_t`` (``a_t = exp(delta_t A)``, ``b_t = delta_t B_t u_t``)
is solved in two levels, with no Python loop over time steps:

1. The sequence is cut into blocks of ``sub`` steps (``ScanConfig.torch_block``).  Inside every block at once (one
   vectorised computation over the whole chunk) the state reached from a zero start is, in closed form::

       E_t   = A * sum_{0<s<=t} delta_s          (log of the decay since the block's first step, <= 0)
       loc_t = exp(E_t) * sum_{s<=t} exp(-E_s) b_s

   A is constant in time, so ``E`` needs a cumulative sum of ``delta`` only.
2. A short sequential pass over the blocks carries the state from one block to the next
   (``H_j = exp(A * sum_block delta) H_{j-1} + loc_end_j``), and every step adds its block's incoming state,
   decayed: ``h_t = loc_t + exp(E_t + delta_0 A) H_{j-1}``.

This is exact and costs O(length) work.  ``exp(-E)`` overflows float32 once a block decays by more than
~88 nats; if any block of a chunk would exceed ``_MAX_DECAY``, that chunk is solved again with blocks half as
long (down to single steps, which are always safe), so results stay exact for any input.

Memory: the sequence is processed in chunks of about ``ScanConfig.torch_chunk_elements`` state values; under
autograd each chunk is checkpointed (the backward recomputes it), so memory stays linear in the length.  State is float32 whatever
the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from audiomamba.ops.config import get_scan_config

# Largest decay (in nats) a block may accumulate; exp(60) ~ 1e26 leaves float32 headroom for exp(-E) * b.
_MAX_DECAY = 60.0


def _solve_chunk(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor, sub: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk. u, delta: (b, k, e, T) float32, delta after softplus, T a multiple of ``sub``;
    A: (k, e, n); B, C: (b, k, n, T); h0: (b, k, e, n). Returns (y (b, k, e, T), h_end (b, k, e, n))."""
    b, k, e, T = u.shape
    n = A.shape[-1]
    m = T // sub
    d = delta.view(b, k, e, m, sub)
    cd = torch.cumsum(d, dim=-1)
    excl = cd - d[..., :1]  # delta summed since each block's first step, that step excluded
    if sub > 1 and float((excl[..., -1].detach().amax(dim=-1, keepdim=True) * -A.detach()).max()) > _MAX_DECAY:
        return _solve_chunk(u, delta, A, B, C, h0, sub // 2)
    Ab = A[:, :, None, None, :]  # (k, e, 1, 1, n)
    log_decay = excl.unsqueeze(-1) * Ab  # (b, k, e, m, sub, n), <= 0
    decay = torch.exp(log_decay)
    Bb = B.view(b, k, n, m, sub).permute(0, 1, 3, 4, 2).unsqueeze(2)  # (b, k, 1, m, sub, n)
    bu = (d * u.view(b, k, e, m, sub)).unsqueeze(-1) * Bb
    # exp(-E) rather than 1 / exp(E): the gradient of a division squares exp(E), which underflows to 0 (and
    # the gradient to NaN) for decays beyond ~44 nats.
    loc = decay * torch.cumsum(bu * torch.exp(-log_decay), dim=-2)
    # Carry the state across blocks: a short loop over blocks on (b, k, e, n) tensors.
    block_decay = torch.exp(cd[..., -1].unsqueeze(-1) * A[:, :, None, :])  # (b, k, e, m, n)
    carries = []
    h = h0
    for j in range(m):
        carries.append(h)
        h = block_decay[..., j, :] * h + loc[..., j, -1, :]
    incoming = torch.stack(carries, dim=3) * torch.exp(d[..., 0].unsqueeze(-1) * A[:, :, None, :])  # (b, k, e, m, n)
    hs = loc + decay * incoming.unsqueeze(-2)
    Cb = C.view(b, k, n, m, sub).permute(0, 1, 3, 4, 2).unsqueeze(2)
    y = (hs * Cb).sum(-1).view(b, k, e, T)
    return y, h


def effective_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    """``softplus(delta + delta_bias)`` (each part optional) in float32: the step sizes the scans use."""
    dt = delta.to(torch.float32)
    if delta_bias is not None:
        dt = dt + delta_bias.to(torch.float32)[:, None]
    return F.softplus(dt) if softplus else dt


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    block: int | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Two-level chunked selective scan (see :func:`audiomamba.ops.selective_scan` for the contract).

    ``block``: steps solved in closed form at once; ``chunk``: steps per checkpointed chunk (a multiple of
    ``block``).  Defaults: ``ScanConfig.torch_block``, and chunks of about ``ScanConfig.torch_chunk_elements``
    state values (:func:`audiomamba.ops.get_scan_config`).
    """
    batch, channels, length = u.shape
    groups, state = B.shape[1], A.shape[1]
    e = channels // groups
    f32 = torch.float32
    cfg = get_scan_config()
    block = cfg.torch_block if block is None else block
    use_ckpt = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C))
    dt = effective_delta(delta, delta_bias, delta_softplus)
    # Pad to whole blocks with delta = 0 and u = 0: the state passes through unchanged; outputs are cropped.
    pad = (-length) % block
    uf = F.pad(u.to(f32), (0, pad)).view(batch, groups, e, length + pad)
    dt = F.pad(dt, (0, pad)).view(batch, groups, e, length + pad)
    Bf, Cf = F.pad(B.to(f32), (0, pad)), F.pad(C.to(f32), (0, pad))
    Af = A.to(f32).view(groups, e, state)
    if chunk is None:
        chunk = max(1, cfg.torch_chunk_elements // max(1, batch * channels * state))
    chunk = max(block, chunk // block * block)
    h = uf.new_zeros(batch, groups, e, state)
    ys = []
    for t0 in range(0, length + pad, chunk):
        sl = slice(t0, t0 + chunk)
        args = (uf[..., sl], dt[..., sl], Af, Bf[..., sl], Cf[..., sl], h, block)
        y, h = checkpoint(_solve_chunk, *args, use_reentrant=False) if use_ckpt else _solve_chunk(*args)
        ys.append(y)
    y = torch.cat(ys, dim=-1)[..., :length].reshape(batch, channels, length)
    if D is not None:
        y = y + D.to(f32)[:, None] * u.to(f32)
    return y.to(u.dtype)
