"""Triton LayerNorm over the last axis, forward and backward, for many short rows.

Why our own: VMamba's norms run on 48..1536 channels over up to 262k tokens per batch, and PyTorch's CUDA
kernel gives each row its own thread block; at 96 channels it ran at about 1/8 of copy bandwidth and took a
third of tiny_v2's eager device time (``bench/results/gpu_2026-11-24_v7/profile_v7_tiny_v2_infer.txt``).
Here a program normalises a block of rows held as one 2-D tile, so every load is a wide coalesced read; the
statistics are float32 whatever the input dtype, and the output can be written straight in the dtype its
consumer wants (under autocast, the matmul that follows would cast a float32 output anyway).

The backward writes dx row-blockwise and sums dweight / dbias per program into a ``(programs, C)`` float32
buffer that one reduction folds (no atomics: the column sums are deterministic).  Reference:
``torch.nn.functional.layer_norm`` (tests compare against it in float64).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_CHANNELS = 8192  # one row per tile row: wider rows would need a loop over column blocks
_TILE = 4096  # elements per program tile (rows x padded channels)


@triton.jit
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, M, C, sx, sy, eps,
                   BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < M
    cmask = cols < C
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(x_ptr + rows[:, None] * sx + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    xc = tl.where(mask, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / C + eps)
    y = xc * rstd[:, None]
    if HAS_W:
        y = y * tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    if HAS_B:
        y = y + tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows[:, None] * sy + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=rmask)
    tl.store(rstd_ptr + rows, rstd, mask=rmask)


@triton.jit
def _ln_bwd_kernel(dy_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, M, C, sdy, sx, sdx,
                   n_blocks, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, HAS_W: tl.constexpr):
    """Each program takes row blocks pid, pid + grid, ...; dx per row, dweight / dbias summed into its own row
    of the (programs, C) buffers."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    cmask = cols < C
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32) if HAS_W else tl.where(cmask, 1.0, 0.0)
    dw = tl.zeros((BLOCK_C,), dtype=tl.float32)
    db = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for blk in range(pid, n_blocks, tl.num_programs(0)):
        rows = (blk * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # M < 2^31 rows; offsets in 64 bits
        rmask = rows < M
        mask = rmask[:, None] & cmask[None, :]
        x = tl.load(x_ptr + rows[:, None] * sx + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + rows[:, None] * sdy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + rows, mask=rmask, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=rmask, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        g = dy * w[None, :]
        c1 = tl.sum(xhat * g, axis=1) / C
        c2 = tl.sum(g, axis=1) / C
        dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
        tl.store(dx_ptr + rows[:, None] * sdx + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
    tl.store(dw_ptr + pid * C + cols, dw, mask=cmask)
    tl.store(db_ptr + pid * C + cols, db, mask=cmask)


def _blocks(C: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_C, num_warps) for rows of C channels."""
    block_c = triton.next_power_of_2(C)
    block_m = max(1, min(64, _TILE // block_c))
    return block_m, block_c, 4 if block_m * block_c <= 4096 else 8


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as (rows, C) with unit column stride (a copy only when the leading axes cannot be flattened)."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


@functools.cache
def _programs_cap(device: torch.device) -> int:
    """Backward programs: 4 per SM (on the interpreter's CPU tensors, 4)."""
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def _forward(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
             out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd): y in out_dtype with x's shape (contiguous), float32 per-row statistics."""
    C = x.shape[-1]
    x2 = _rows(x)
    M = x2.shape[0]
    y = torch.empty(x.shape, device=x.device, dtype=out_dtype)
    stats = torch.empty(2, M, device=x.device, dtype=torch.float32)
    block_m, block_c, warps = _blocks(C)
    _ln_fwd_kernel[(triton.cdiv(M, block_m),)](
        x2, stats if weight is None else weight, stats if bias is None else bias, y, stats[0], stats[1], M, C,
        x2.stride(0), C, eps, BLOCK_M=block_m, BLOCK_C=block_c, HAS_W=weight is not None, HAS_B=bias is not None,
        num_warps=warps,
    )
    return y, stats[0], stats[1]


def _backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, mean: torch.Tensor,
              rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx in x's dtype, dweight, dbias in float32)."""
    C = x.shape[-1]
    x2, dy2 = _rows(x), _rows(dy)
    M = x2.shape[0]
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    block_m, block_c, warps = _blocks(C)
    n_blocks = triton.cdiv(M, block_m)
    grid = min(n_blocks, _programs_cap(x.device))
    partial = torch.empty(2, grid, C, device=x.device, dtype=torch.float32)  # per-program dweight, dbias
    _ln_bwd_kernel[(grid,)](
        dy2, x2, mean if weight is None else weight, mean, rstd, dx, partial[0], partial[1], M, C, dy2.stride(0),
        x2.stride(0), C, n_blocks, BLOCK_M=block_m, BLOCK_C=block_c, HAS_W=weight is not None, num_warps=warps,
    )
    dw, db = partial.sum(1)
    return dx, dw, db


class _LayerNormFunction(torch.autograd.Function):
    """Autograd around the two kernels.  A plain ``autograd.Function`` rather than a ``torch.library`` custom op:
    the custom op's dispatch cost ~80-150 us of host time per call on the H100 host (``bench/dev/launch_overhead.py``),
    and eager batch-64 inference is host-bound; ``torch.compile`` takes PyTorch's LayerNorm instead
    (``ops/layer_norm.py``), which inductor fuses itself."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, out_dtype):
        y, mean, rstd = _forward(x, weight, bias, eps, out_dtype)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.param_dtypes = tuple(None if p is None else p.dtype for p in (weight, bias))
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dw, db = _backward(dy, x, weight, mean, rstd)
        w_dtype, b_dtype = ctx.param_dtypes
        return dx, None if w_dtype is None else dw.to(w_dtype), None if b_dtype is None else db.to(b_dtype), None, None


def supports(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    """CUDA (or interpreter) inputs of a supported dtype with 1..MAX_CHANNELS channels and at least one row."""
    params = [t for t in (weight, bias) if t is not None]
    return (x.dtype in SUPPORTED_DTYPES and 1 <= x.shape[-1] <= MAX_CHANNELS and x.numel() > 0
            and all(p.device == x.device and p.dtype in SUPPORTED_DTYPES for p in params))


def layer_norm_triton(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                      out_dtype: torch.dtype) -> torch.Tensor:
    """LayerNorm of x over its last axis with float32 statistics, written in ``out_dtype``; differentiable."""
    return _LayerNormFunction.apply(x, weight, bias, float(eps), out_dtype)
