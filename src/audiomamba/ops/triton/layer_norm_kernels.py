"""Triton kernels of the LayerNorm over the last axis, forward and backward, for many short rows.

Launched by :mod:`audiomamba.ops.triton.layer_norm`.  A program normalises a block of rows held as one 2-D tile,
so every load is a wide coalesced read; the statistics are float32 whatever the input dtype, and the output is
written in the dtype of ``y``.  The backward writes dx row-blockwise and sums dweight / dbias per program into
its own row of a ``(programs, C)`` float32 buffer, which the launcher folds (no atomics: the column sums are
deterministic).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, M, C, sx, sy, eps,
                  BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr):
    """A block of BLOCK_M rows of C channels as one (BLOCK_M, BLOCK_C) tile: y in y's dtype, and each row's mean
    and 1/std (float32) for the backward."""
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
def ln_bwd_kernel(dy_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, M, C, sdy, sx, sdx,
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
