"""Launch code of the Triton selective scan (kernels: :mod:`audiomamba.ops.triton.scan_kernels`).

Entry points, the scan backend "triton" of :mod:`audiomamba.ops.selective_scan`:

- :func:`cross_selective_scan_triton` (SS2D): cross-scan + selective scan + cross-merge of a ``(B, E, H, W)``
  map, the four directions in one launch, every operand read in place through its strides.
- :func:`selective_scan_triton` (plain): ``u, delta (B, G*E, L)``, ``B, C (B, G, N, L)``, every group forwards.

This module lays the operands out as ``(batch, stream, channel, h, w)`` views, picks the compile-time flags and
the grid, splits long streams into segments (:func:`audiomamba.ops.plan_segments`), and wraps forward and backward
for autograd: eager calls take an ``autograd.Function`` (less host time per call), ``torch.compile`` sees the
``torch.library`` custom ops ``audiomamba::selective_scan_fwd`` / ``_bwd`` (one opaque node with a shape
function, so whole models compile without graph breaks).  Warps per program, segments and the 64-bit offset
threshold come from :class:`audiomamba.ops.ScanConfig`.

Triton is optional: importing this module without it raises ImportError, which :mod:`audiomamba.ops` catches.
"""

from __future__ import annotations

import os

import torch
import triton

from audiomamba.ops.config import get_scan_config, plan_segments
from audiomamba.ops.triton.scan_kernels import CHUNK, scan_bwd_kernel, scan_fwd_kernel, sum4_kernel

__all__ = [
    "SUPPORTED_DTYPES",
    "MAX_STATE",
    "supports",
    "selective_scan_triton",
    "cross_selective_scan_triton",
    "selective_scan_fwd_op",
    "selective_scan_bwd_op",
    "n_chunks",
]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_STATE = 16

# ---------------------------------------------------------------------------------------------- launch


def _config(kind: str) -> tuple[int, int]:
    """(BLOCK_E, num_warps) of the "fwd" or "bwd" kernel: one channel per thread, so a program covers 32 channels
    per warp (``ScanConfig.triton_fwd_warps`` / ``triton_bwd_warps``)."""
    cfg = get_scan_config()
    warps = cfg.triton_fwd_warps if kind == "fwd" else cfg.triton_bwd_warps
    return 32 * warps, warps


def n_chunks(h: int, w: int, cross: bool) -> int:
    """Chunks of the longest stream of an ``h x w`` map: rows of w steps, and with ``cross`` columns of h steps
    (each line padded to whole chunks); a plain scan of length L is ``n_chunks(1, L, False)``."""
    rows = h * triton.cdiv(w, CHUNK)
    return max(rows, w * triton.cdiv(h, CHUNK)) if cross else rows


def _s5(t: torch.Tensor) -> tuple[int, ...]:
    """The five strides of a (B, K, rows, H, W) operand view."""
    if t.dim() != 5:
        raise ValueError(f"internal: expected a 5-d view, got {tuple(t.shape)}")
    return tuple(t.stride())


def unmasked(E: int, H: int, W: int, block_e: int, cross: bool) -> bool:
    """Whether a kernel with channel blocks of ``block_e`` scans E channels over an ``H x W`` map with no padding
    channel or step anywhere (whole channel blocks, lines of whole chunks), so it drops every mask (EVEN)."""
    return E % block_e == 0 and W % CHUNK == 0 and (H % CHUNK == 0 or not cross)


def _flags(A, D, bias, softplus: bool, cross: bool, shape, block_e: int, tensors) -> dict:
    """Compile-time flags.  EVEN: :func:`unmasked`; I64: 64-bit offsets, only when a tensor spans
    ``ScanConfig.i64_span`` (2^31) elements."""
    _, _, E, H, W = shape
    even = unmasked(E, H, W, block_e, cross)
    span = max(sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())) + 1 for t in tensors if t is not None)
    return dict(N=A.shape[1], CROSS=cross, SOFTPLUS=softplus, HAS_D=D is not None, HAS_BIAS=bias is not None,
                EVEN=even, I64=span >= get_scan_config().i64_span)


def _fwd(x5, d5, B5, C5, y5, A, D, bias, softplus: bool, save: bool, cross: bool):
    """Run the forward on (B, K, rows, H, W) views (x5 may have a zero K stride); returns the saved chunk states.

    With S > 1 segments (:func:`audiomamba.ops.plan_segments`) each stream is split into S runs of whole chunks,
    S times the threads for a latency-bound walk: a first launch scans every segment from a zero state and keeps its step-size sum and end
    state per channel; the second starts each segment from the state its predecessors carry in (h <- exp(A sum
    delta) h + h_end, in order) and writes y.  The inputs are read twice."""
    batch, K, E, H, W = d5.shape
    be, warps = _config("fwd")
    n_eb, ncmax = triton.cdiv(E, be), n_chunks(H, W, cross)
    segs = plan_segments(batch * K * E, ncmax)
    hs = torch.empty(batch, K, E, ncmax, A.shape[1], device=A.device, dtype=torch.float32) if save else None
    sm = torch.empty(batch, K, E, segs, A.shape[1] + 1, device=A.device, dtype=torch.float32) if segs > 1 else A
    flags = _flags(A, D, bias, softplus, cross, d5.shape, be, (x5, d5, y5, hs, sm))
    args = (x5, d5, A, B5, C5, A if D is None else D, A if bias is None else bias, y5, hs if save else A, sm,
            *_s5(x5), *_s5(d5), *_s5(B5), *_s5(y5), E, H, W, ncmax, n_eb, segs)
    grid = (batch * n_eb * segs, K)
    if segs > 1:
        scan_fwd_kernel[grid](*args, BLOCK_E=be, SAVE=False, SUMMARY=True, num_warps=warps, **flags)
    scan_fwd_kernel[grid](*args, BLOCK_E=be, SAVE=save, SUMMARY=False, num_warps=warps, **flags)
    return hs


def _bwd(x5, d5, B5, C5, dy5, du5, dd5, dB5, dC5, A, D, bias, hs, softplus: bool, cross: bool):
    """Backward of :func:`_fwd`: du5 laid out like y, dd5 like d5, dB5/dC5 (float32, zeroed) like B5; returns
    dA, dD, dbias (float32, None where D / bias are absent)."""
    batch, K, E, H, W = d5.shape
    if dd5.stride() != d5.stride() or dB5.stride() != B5.stride() or dC5.stride() != B5.stride():
        raise ValueError("internal: gradient buffers must be laid out like their inputs")
    be, warps = _config("bwd")
    n_eb = triton.cdiv(E, be)
    dA = torch.zeros_like(A)
    dD = torch.zeros(A.shape[0], device=A.device, dtype=torch.float32)
    dbias = torch.zeros_like(dD)
    scan_bwd_kernel[(batch * n_eb, K)](
        x5, d5, A, B5, C5, A if D is None else D, A if bias is None else bias, hs, dy5, du5, dd5, dA, dB5, dC5,
        dD, dbias, *_s5(x5), *_s5(d5), *_s5(B5), *_s5(du5), *_s5(dy5), E, H, W, hs.shape[3], n_eb,
        BLOCK_E=be, num_warps=warps, **_flags(A, D, bias, softplus, cross, d5.shape, be, (x5, d5, du5, dy5, hs)),
        WARP_RED=warp_reduce(A.shape[1]),
    )
    return dA, (dD if D is not None else None), (dbias if bias is not None else None)


def warp_reduce(n_state: int) -> bool:
    """Whether the backward sums the B and C gradients with its warp reduce-scatter (4 < N <= 16): PTX shuffles,
    so compiled kernels only, not Triton's CPU interpreter (``TRITON_INTERPRET=1``), which takes ``tl.sum``."""
    return 4 < n_state <= 16 and os.environ.get("TRITON_INTERPRET", "0") != "1"


def _sum4(y4: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out (B, E, H, W) <- the sum of y4 (4, B, H, W, E) over its first axis, in float32."""
    _, b, h, w, E = y4.shape
    total, BLOCK = b * h * w * E, 1024
    sum4_kernel[(triton.cdiv(total, BLOCK),)](y4, out, E, h, w, total, out.stride(0), out.stride(1), out.stride(2),
                                              out.stride(3), BLOCK=BLOCK, num_warps=4)
    return out


def _non_overlapping(t: torch.Tensor) -> bool:
    """Whether no two elements of t share memory (a permutation of a contiguous layout, possibly with gaps, as
    for a slice of a wider row)."""
    reach = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda p: p[1]):
        if size > 1:
            if stride < reach:
                return False
            reach = stride * size
    return True


def _channels_last(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` non-overlapping with unit stride on ``dim`` (a copy in that memory order when it is not), so that a
    scan step's loads are one coalesced row of channels."""
    if t.stride(dim) == 1 and _non_overlapping(t):
        return t
    order = [i for i in range(t.dim()) if i != dim] + [dim]
    inverse = sorted(range(t.dim()), key=order.__getitem__)
    return t.permute(order).contiguous().permute(inverse)


def _like(t: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor with t's shape and strides (contiguous when t's elements overlap); unlike
    ``empty_like``, it keeps the strides of a slice of wider rows (delta, a view of the projection output)."""
    if _non_overlapping(t):
        return torch.empty_strided(t.shape, t.stride(), device=t.device, dtype=t.dtype)
    return torch.empty(t.shape, device=t.device, dtype=t.dtype)


def _cross_views(x, delta, B, C):
    b, E, h, w = x.shape
    x5 = _channels_last(x, 1).unsqueeze(1).expand(b, 4, E, h, w)
    if B.stride() != C.stride() or not (_non_overlapping(B) and _non_overlapping(C)):  # one set of strides for both
        B, C = B.contiguous(), C.contiguous()
    return x5, _channels_last(delta, 2), B, C


def _cross_fwd(x, delta, A, B, C, D, bias, softplus: bool, save: bool):
    b, E, h, w = x.shape
    x5, d5, B5, C5 = _cross_views(x, delta, B, C)
    y4 = torch.empty(4, b, h, w, E, device=x.device, dtype=x.dtype)
    hs = _fwd(x5, d5, B5, C5, y4.permute(1, 0, 4, 2, 3), A, D, bias, softplus, save, cross=True)
    return _sum4(y4, torch.empty_like(x)), hs


def _cross_bwd(dy, x, delta, A, B, C, D, bias, hs, softplus: bool):
    b, E, h, w = x.shape
    # B and C compact here: their float32 gradient buffers take B's strides, and B's strides as a slice of the
    # projection's rows would span the whole rows (~400 MB each for tiny_v2's stage 0 at batch 64)
    x5, d5, B5, C5 = _cross_views(x, delta, B.contiguous(), C.contiguous())
    dy5 = _channels_last(dy.to(x.dtype), 1).unsqueeze(1).expand(b, 4, E, h, w)
    du4 = torch.empty(4, b, h, w, E, device=x.device, dtype=x.dtype)
    dd5 = _like(d5)
    dB5, dC5 = torch.zeros_like(B5, dtype=torch.float32), torch.zeros_like(C5, dtype=torch.float32)
    dA, dD, dbias = _bwd(x5, d5, B5, C5, dy5, du4.permute(1, 0, 4, 2, 3), dd5, dB5, dC5, A, D, bias, hs, softplus,
                         cross=True)
    ddelta = dd5 if dd5.stride() == delta.stride() else _like(delta).copy_(dd5)
    # dB, dC as empty_like(B / C) (the shape function's strides), cast from the float32 sums
    return (_sum4(du4, torch.empty_like(x)), ddelta, dA, torch.empty_like(B).copy_(dB5), torch.empty_like(C).copy_(dC5),
            dD, dbias)


def _plain_views(u, delta, B, C):
    """(B, G*E, L) / (B, G, N, L) -> (B, G, rows, 1, L) views."""
    b, channels, L = u.shape
    G = B.shape[1]
    v = lambda t: t.view(b, G, t.shape[1] // G if t.dim() == 3 else t.shape[2], 1, L)  # noqa: E731
    return v, v(u), v(delta), v(B), v(C)


def _plain_fwd(u, delta, A, B, C, D, bias, softplus: bool, save: bool):
    v, u5, d5, B5, C5 = _plain_views(u, delta, B, C)
    y = torch.empty_like(u)
    hs = _fwd(u5, d5, B5, C5, v(y), A, D, bias, softplus, save, cross=False)
    return y, hs


def _plain_bwd(dy, u, delta, A, B, C, D, bias, hs, softplus: bool):
    v, u5, d5, B5, C5 = _plain_views(u, delta, B, C)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dB = torch.zeros(B.shape, device=u.device, dtype=torch.float32)
    dC = torch.zeros_like(dB)
    dA, dD, dbias = _bwd(u5, d5, B5, C5, v(dy.to(u.dtype).contiguous()), v(du), v(ddelta), v(dB), v(dC), A, D, bias,
                         hs, softplus, cross=False)
    return du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias


# Custom operators, so that torch.compile sees one opaque node per scan (no graph break) with a shape function,
# and autograd calls the backward kernel (eager calls take _ScanFunction below: less host time per call).
# ``cross`` picks SS2D's four-direction mode (x: (B, E, H, W)) or the plain grouped scan (u: (B, G*E, L)).  The
# saved chunk states travel as a second output (empty when no gradient is needed); absent D / delta_bias
# gradients are empty tensors.

_EMPTY = (0,)


@torch.library.custom_op("audiomamba::selective_scan_fwd", mutates_args=())
def selective_scan_fwd_op(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, bias: torch.Tensor | None, softplus: bool, cross: bool, save: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    y, hs = (_cross_fwd if cross else _plain_fwd)(u, delta, A, B, C, D, bias, softplus, save)
    return y, (hs if save else u.new_empty(_EMPTY, dtype=torch.float32))


@selective_scan_fwd_op.register_fake
def _(u, delta, A, B, C, D, bias, softplus, cross, save):
    if cross:
        b, E, h, w = u.shape
        K, nc = 4, n_chunks(h, w, True)
    else:
        b, K, L = u.shape[0], B.shape[1], u.shape[2]
        E, nc = u.shape[1] // K, n_chunks(1, L, False)
    hs_shape = (b, K, E, nc, A.shape[1]) if save else _EMPTY
    return torch.empty_like(u), u.new_empty(hs_shape, dtype=torch.float32)


@torch.library.custom_op("audiomamba::selective_scan_bwd", mutates_args=())
def selective_scan_bwd_op(
    dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, bias: torch.Tensor | None, hs: torch.Tensor, softplus: bool, cross: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = (_cross_bwd if cross else _plain_bwd)(dy, u, delta, A, B, C, D, bias, hs, softplus)
    return tuple(g if g is not None else A.new_empty(_EMPTY) for g in grads)


@selective_scan_bwd_op.register_fake
def _(dy, u, delta, A, B, C, D, bias, hs, softplus, cross):
    opt = lambda t: torch.empty_like(t, dtype=torch.float32) if t is not None else A.new_empty(_EMPTY)  # noqa: E731
    return (torch.empty_like(u), _like(delta) if cross else torch.empty_like(delta), torch.empty_like(A),
            torch.empty_like(B), torch.empty_like(C), opt(D), opt(bias))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, bias, softplus, cross, save = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, bias, output[1])
    ctx.flags = (softplus, cross)


def _backward(ctx, dy, _dhs):
    u, delta, A, B, C, D, bias, hs = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dbias = selective_scan_bwd_op(dy, u, delta, A, B, C, D, bias, hs, *ctx.flags)
    return (du, ddelta, dA, dB, dC, (dD if D is not None else None), (dbias if bias is not None else None),
            None, None, None)


torch.library.register_autograd("audiomamba::selective_scan_fwd", _backward, setup_context=_setup_context)


class _ScanFunction(torch.autograd.Function):
    """Eager autograd around the same forward and backward as the custom ops.  A custom op's dispatch costs more
    host time per call (``bench/dev/launch_overhead.py``; figures in ``docs/kernels.md``) and eager batch-64
    inference is host-bound, so eager calls take this path and ``torch.compile`` the custom op."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, bias, softplus, cross, save):
        y, hs = (_cross_fwd if cross else _plain_fwd)(u, delta, A, B, C, D, bias, softplus, save)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, bias, hs)
        ctx.flags = (softplus, cross)
        return y

    @staticmethod
    def backward(ctx, dy):
        softplus, cross = ctx.flags
        grads = (_cross_bwd if cross else _plain_bwd)(dy, *ctx.saved_tensors, softplus)
        return (*grads, None, None, None)


def _scan(u, delta, A, B, C, D, bias, softplus: bool, cross: bool) -> torch.Tensor:
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C, D, bias))
    if torch.compiler.is_compiling():
        return selective_scan_fwd_op(u, delta, A, B, C, D, bias, softplus, cross, save)[0]
    return _ScanFunction.apply(u, delta, A, B, C, D, bias, softplus, cross, save)


# ---------------------------------------------------------------------------------------------- entry points


def _f32(t):
    return None if t is None else t.to(torch.float32).contiguous()


def supports(x, delta, A, B, C, D=None, delta_bias=None) -> bool:
    """Whether the kernels take these tensors: all on one CUDA device, float32/float16/bfloat16, d_state
    1..MAX_STATE, a scan of at least one step.  ``x`` is the plain scan's ``u (B, G*E, L)`` or the cross-scan's
    ``(B, E, H, W)`` map."""
    main = [t for t in (x, delta, A, B, C, D, delta_bias) if t is not None]
    if not all(t.is_cuda for t in main):
        return False
    dev = x.device
    if any(t.device != dev for t in main) or any(t.dtype not in SUPPORTED_DTYPES for t in main):
        return False
    steps = 1
    for size in x.shape[2:]:
        steps *= size
    return 1 <= A.shape[1] <= MAX_STATE and steps >= 1


def _check_state(state: int) -> None:
    if not (1 <= state <= MAX_STATE):
        raise ValueError(f"the Triton selective scan takes d_state 1..{MAX_STATE}, got {state}")


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Plain-mode selective scan on the GPU (contract of :func:`audiomamba.ops.selective_scan`)."""
    _check_state(A.shape[1])
    # Non-contiguous inputs are copied (never read with wrong strides); B and C keep their dtype.
    return _scan(
        u.contiguous(), delta.contiguous(), _f32(A), B.contiguous(), C.contiguous(), _f32(D), _f32(delta_bias),
        bool(delta_softplus), cross=False,
    )


def cross_selective_scan_triton(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Cross-scan + selective scan + cross-merge on the GPU (contract of
    :func:`audiomamba.ops.cross_selective_scan`)."""
    _check_state(A.shape[1])
    # x, delta, B and C keep their layout (channels-last x and delta are the fast ones; others are copied inside)
    return _scan(x, delta, _f32(A), B, C, _f32(D), _f32(delta_bias), bool(delta_softplus), cross=True)
