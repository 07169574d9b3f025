"""Launch code of the Triton LayerNorm (kernels: :mod:`audiomamba.ops.triton.layer_norm_kernels`).

Why our own: VMamba's norms run on 48..1536 channels over up to 262k tokens per batch, and PyTorch's CUDA kernel
gives each row its own thread block, far from copy bandwidth at these widths (figures in ``docs/kernels.md``).
The kernels normalise a tile of rows per program with float32 statistics and write the output straight in the
dtype its consumer wants (under autocast, the matmul that follows would cast a float32 output anyway).  This
module picks the tiles and grids and wraps the two kernels for autograd; :func:`audiomamba.ops.layer_norm`
dispatches to it on CUDA.  Reference: ``torch.nn.functional.layer_norm`` (tests compare against it in float64).

Triton is optional: importing this module without it raises ImportError, which :mod:`audiomamba.ops` catches.
"""

from __future__ import annotations

import functools

import torch
import triton

from audiomamba.ops.triton.layer_norm_kernels import ln_bwd_kernel, ln_fwd_kernel

__all__ = ["SUPPORTED_DTYPES", "MAX_CHANNELS", "supports", "layer_norm_triton", "row_blocks", "backward_programs"]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_CHANNELS = 8192  # one row per tile row: wider rows would need a loop over column blocks
_TILE = 4096  # elements per program tile (rows x padded channels)


def row_blocks(C: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_C, num_warps) of the kernels for rows of C channels: a tile of about ``_TILE`` elements."""
    block_c = triton.next_power_of_2(C)
    block_m = max(1, min(64, _TILE // block_c))
    return block_m, block_c, 4 if block_m * block_c <= 4096 else 8


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as (rows, C) with unit column stride (a copy only when the leading axes cannot be flattened)."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


@functools.cache
def backward_programs(device: torch.device) -> int:
    """The most programs the backward runs: 4 per SM (on the interpreter's CPU tensors, 4)."""
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def _forward(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
             out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd): y in out_dtype with x's shape (contiguous), float32 per-row statistics."""
    C = x.shape[-1]
    x2 = _rows(x)
    M = x2.shape[0]
    y = torch.empty(x.shape, device=x.device, dtype=out_dtype)
    stats = torch.empty(2, M, device=x.device, dtype=torch.float32)
    block_m, block_c, warps = row_blocks(C)
    ln_fwd_kernel[(triton.cdiv(M, block_m),)](
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
    block_m, block_c, warps = row_blocks(C)
    n_blocks = triton.cdiv(M, block_m)
    grid = min(n_blocks, backward_programs(x.device))
    partial = torch.empty(2, grid, C, device=x.device, dtype=torch.float32)  # per-program dweight, dbias
    ln_bwd_kernel[(grid,)](
        dy2, x2, mean if weight is None else weight, mean, rstd, dx, partial[0], partial[1], M, C, dy2.stride(0),
        x2.stride(0), C, n_blocks, BLOCK_M=block_m, BLOCK_C=block_c, HAS_W=weight is not None, num_warps=warps,
    )
    dw, db = partial.sum(1)
    return dx, dw, db


class _LayerNormFunction(torch.autograd.Function):
    """Autograd around the two kernels.  A plain ``autograd.Function`` rather than a ``torch.library`` custom op:
    a custom op's dispatch costs more host time per call (``bench/dev/launch_overhead.py``; figures in
    ``docs/kernels.md``), and eager batch-64 inference is host-bound; ``torch.compile`` takes PyTorch's
    LayerNorm instead (:func:`audiomamba.ops.layer_norm`), which inductor fuses itself."""

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
