"""Fused CPU kernel for SS2D's cross-scan + selective scan + cross-merge (inference only), with numba.

The PyTorch scan materialises ``(channels, steps, state)`` tensors and is bound by memory traffic on a CPU.  This
kernel works channels-last: one job owns a block of consecutive channels of one example (see :func:`_blocking`)
and walks the grid in each of the four directions' orders (index arithmetic, no reordered copies), keeping the
block's ``(state, channels)`` state in L1 and updating it with SIMD instructions across the channels, a tile of
tokens at a time.  The exponential is a polynomial (see :func:`exp2_f32`) so that LLVM vectorises it; the softplus of
``delta`` and, when ``delta`` comes as SS2D's rank-R factors with their projection (``delta_proj``), the ``dt``
projection happen inside the kernel, so the ``(B, 4, E, H, W)`` delta tensor is never built; the four directions
are summed into the output as they finish.

It is the scan backend "cpu" (:mod:`audiomamba.ops.selective_scan`).  It has no autograd: ``backend="auto"``
takes it only for CPU tensors when no gradient is needed, outside tracing and export, and the PyTorch path
serves everything else (and every call when numba is not installed).  numba compiles it on first use (some
seconds; cached on disk where the package directory is writable).  It runs on
``min(torch.get_num_threads(), numba's thread count)`` threads; its channel blocking is
``ScanConfig.cpu_blocks`` (:func:`audiomamba.ops.get_scan_config`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from audiomamba.ops.config import get_scan_config

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic
except ImportError:  # optional: the PyTorch path covers everything
    numba = None

__all__ = ["available", "supports", "cross_selective_scan_cpu", "token_rows"]


def available() -> bool:
    """Whether numba is installed (the kernel can run at all)."""
    return numba is not None


if numba is not None:
    # float32 constants: numba keeps float32 arithmetic in float32 only when every operand is float32.
    _F = np.float32
    _LOG2E, _MIN_EXP, _ONE, _TWO, _ZERO = _F(1 / math.log(2)), _F(-126.0), _F(1), _F(2), _F(0)
    # 2**f on [-1/2, 1/2]: its degree-6 Chebyshev interpolant in the power basis (relative error 1e-7 in float32).
    _EXP2_POLY = tuple(
        _F(c)
        for c in np.polynomial.Chebyshev.interpolate(lambda f: 2.0**f, 6, domain=[-0.5, 0.5])
        .convert(kind=np.polynomial.Polynomial)
        .coef
    )
    _INV_ODD = tuple(_F(1 / i) for i in range(1, 16, 2))  # atanh series: 1, 1/3, ..., 1/15
    _FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
    _JIT = dict(fastmath=_FASTMATH, error_model="numpy")  # numpy error model: no ZeroDivisionError branches

    @intrinsic
    def _pow2(typingctx, n):  # pragma: no cover - compiled
        """2**n for a float32 holding an integer in [-126, 127], built from the exponent bits."""
        if n != types.float32:
            return None

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
            return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

        return types.float32(types.float32), codegen

    @numba.njit(inline="always", **_JIT)
    def exp2_f32(z):  # pragma: no cover - compiled
        """2**z for float32 z <= 0 (2**-126 below -126): 2**round(z) from the exponent bits times the polynomial of
        the remainder in [-1/2, 1/2].  Relative error < 2e-7; vectorises (no libm call)."""
        z = max(z, _MIN_EXP)
        n = np.floor(z + _F(0.5))
        f = z - n
        p = _EXP2_POLY[6]
        p = p * f + _EXP2_POLY[5]
        p = p * f + _EXP2_POLY[4]
        p = p * f + _EXP2_POLY[3]
        p = p * f + _EXP2_POLY[2]
        p = p * f + _EXP2_POLY[1]
        p = p * f + _EXP2_POLY[0]
        return p * _pow2(n)

    @numba.njit(inline="always", **_JIT)
    def softplus_f32(x):  # pragma: no cover - compiled
        """log(1 + e^x) = max(x, 0) + log1p(w), w = e^-|x| in (0, 1]; log1p(w) = 2 atanh(s), s = w / (2 + w)
        <= 1/3, by its odd series to s^15 (truncation < 2e-9 relative)."""
        w = exp2_f32(-abs(x) * _LOG2E)
        s = w / (_TWO + w)
        s2 = s * s
        q = _INV_ODD[7]
        q = q * s2 + _INV_ODD[6]
        q = q * s2 + _INV_ODD[5]
        q = q * s2 + _INV_ODD[4]
        q = q * s2 + _INV_ODD[3]
        q = q * s2 + _INV_ODD[2]
        q = q * s2 + _INV_ODD[1]
        q = q * s2 + _ONE
        return max(x, _ZERO) + _TWO * s * q

    _U = np.uint64  # unsigned flat indices: numba adds no negative-index wraparound, so loads stay vector loads

    @numba.njit(**_JIT)
    def _tile(x, proj, out, toks, m, k, cb, n, rank, ps, pk, e, c0, softplus, a_l, w_l, d_l, b_l, dt, du, y, dA, h):  # pragma: no cover
        """``m`` consecutive tokens ``toks`` of direction ``k`` for the channel block at ``c0``.  Each stage is its own
        simple loop nest over (token, channel) so that LLVM vectorises it: dt, softplus, the decays exp(dt A) of
        the whole tile, then the sequential state update."""
        bc = _U(pk - 2 * n)  # B and C within a direction's row, after the dt values
        for t in range(m):
            row = toks[t] * _U(ps) + _U(k * pk)
            if rank > 0:  # low-rank dt projection: dt = bias + W_k @ proj[row : row + rank]
                for c in range(cb):
                    dt[t, c] = b_l[k, c]
                for i in range(rank):
                    f = proj[row + _U(i)]
                    for c in range(cb):
                        dt[t, c] += f * w_l[k, i, c]
            else:  # full delta: this block's channels of the row
                for c in range(cb):
                    dt[t, c] = proj[row + _U(c0 + c)] + b_l[k, c]
        if softplus:
            for t in range(m):
                for c in range(cb):
                    dt[t, c] = softplus_f32(dt[t, c])
        for t in range(m):
            xb = toks[t] * _U(e) + _U(c0)
            for c in range(cb):
                u = x[xb + _U(c)]
                du[t, c] = dt[t, c] * u
                y[t, c] = d_l[k, c] * u
        for t in range(m):
            for j in range(n):
                for c in range(cb):
                    dA[t, j, c] = exp2_f32(dt[t, c] * a_l[k, j, c])  # a_l holds A log2(e): exp(dt A)
        for t in range(m):
            row = toks[t] * _U(ps) + _U(k * pk) + bc
            for j in range(n):
                bj = proj[row + _U(j)]
                cj = proj[row + _U(n + j)]
                for c in range(cb):
                    hn = dA[t, j, c] * h[j, c] + du[t, c] * bj
                    h[j, c] = hn
                    y[t, c] += cj * hn
        for t in range(m):
            xb = toks[t] * _U(e) + _U(c0)
            if k == 0:
                for c in range(cb):
                    out[xb + _U(c)] = y[t, c]
            else:
                for c in range(cb):
                    out[xb + _U(c)] += y[t, c]

    @numba.njit(parallel=True, cache=True, **_JIT)
    def _kernel(x, proj, ps, pk, dtw, A, D, bias, softplus, height, width, cb, tile, out):  # pragma: no cover - compiled
        """x, out: flat (B, H*W, E) channels-last.  proj: flat; token t / direction k's row starts at
        ``t * ps + k * pk`` and holds [dt | B (n) | C (n)], dt being ``rank`` values, or all E channels when rank
        is 0.  dtw: (4, rank, E); A: (4, n, E); D, bias: (4, E).  E is a multiple of ``cb`` (channels per job);
        tokens go through :func:`_tile` ``tile`` at a time."""
        e = D.shape[1]
        n = A.shape[1]
        rank = dtw.shape[1]
        length = height * width
        batch = x.shape[0] // (length * e)
        nblk = e // cb
        for job in numba.prange(batch * nblk):
            b = job // nblk
            c0 = (job % nblk) * cb
            # This block's parameters, copied so that every index in the inner loops is a loop counter.
            a_l = np.empty((4, n, cb), np.float32)
            w_l = np.empty((4, rank, cb), np.float32)
            d_l = np.empty((4, cb), np.float32)
            b_l = np.empty((4, cb), np.float32)
            for k in range(4):
                for c in range(cb):
                    d_l[k, c] = D[k, c0 + c]
                    b_l[k, c] = bias[k, c0 + c]
                    for j in range(n):
                        a_l[k, j, c] = A[k, j, c0 + c]
                    for i in range(rank):
                        w_l[k, i, c] = dtw[k, i, c0 + c]
            h = np.empty((n, cb), np.float32)
            dt = np.empty((tile, cb), np.float32)
            du = np.empty((tile, cb), np.float32)
            y = np.empty((tile, cb), np.float32)
            dA = np.empty((tile, n, cb), np.float32)
            toks = np.empty(tile, np.uint64)
            for k in range(4):
                h[:] = 0
                # k0 rows (W fastest), k1 columns (H fastest), k2 / k3 their reverses: lines of a nested loop.
                n_out, n_in, s_out, s_in = (height, width, width, 1) if k % 2 == 0 else (width, height, 1, width)
                p0 = 0
                if k >= 2:
                    p0, s_out, s_in = length - 1, -s_out, -s_in
                m = 0
                for a in range(n_out):
                    for i in range(n_in):
                        toks[m] = _U(b * length + p0 + a * s_out + i * s_in)
                        m += 1
                        if m == tile:
                            _tile(x, proj, out, toks, m, k, cb, n, rank, ps, pk, e, c0, softplus, a_l, w_l, d_l, b_l,
                                  dt, du, y, dA, h)
                            m = 0
                if m > 0:
                    _tile(x, proj, out, toks, m, k, cb, n, rank, ps, pk, e, c0, softplus, a_l, w_l, d_l, b_l, dt, du,
                          y, dA, h)


def supports(x: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """True when the fused CPU kernel can run on these tensors: numba present, plain CPU tensors, no gradient
    needed, no tracing or compilation."""
    if numba is None or x.device.type != "cpu":
        return False
    all_t = (x,) + tuple(t for t in tensors if t is not None)
    # Tracing, export and compilation see tensor subclasses (fake/functional tensors) a numba call cannot read.
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or any(type(t) not in (torch.Tensor, torch.nn.Parameter) for t in all_t):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in all_t))


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy())


def _threads() -> int:
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _blocking(e: int, batch: int) -> tuple[int, int, int]:
    """(channels per job, tokens per tile, channel padding): the largest block of ``ScanConfig.cpu_blocks`` that
    divides ``e`` into jobs that share out evenly over the threads (or are many); else the smallest, with ``e``
    padded."""
    threads = _threads()
    blocks = get_scan_config().cpu_blocks
    for cb, tile in blocks:
        jobs = batch * (e // cb)
        if e % cb == 0 and (jobs % threads == 0 or jobs >= 8 * threads):
            return cb, tile, 0
    cb, tile = blocks[-1]
    return cb, tile, -e % cb


def _run(x: torch.Tensor, proj: np.ndarray, ps: int, pk: int, dtw: np.ndarray, A, D, bias, softplus: bool,
         blocking: tuple[int, int, int]) -> torch.Tensor:
    """Pads the channels of ``x (B, H, W, E)`` and the per-channel parameters as ``blocking`` says, runs the
    kernel, returns ``(B, H, W, E)`` float32."""
    b, hgt, wid, e = x.shape
    cb, tile, pad = blocking

    def per_channel(t: np.ndarray) -> np.ndarray:  # (..., E) -> (..., E + pad)
        return np.pad(t, [(0, 0)] * (t.ndim - 1) + [(0, pad)]) if pad else t

    xs = per_channel(_np(x))
    out = np.empty_like(xs)
    threads = _threads()
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    _kernel(xs.reshape(-1), proj.reshape(-1), ps, pk, per_channel(dtw), per_channel(A / np.float32(math.log(2))), per_channel(D),
            per_channel(bias), bool(softplus), hgt, wid, cb, tile, out.reshape(-1))
    return torch.from_numpy(out[..., :e] if pad else out)


def token_rows(delta: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The kernel's rows ``(B, H, W, 4, D + 2N)``, one per token and direction, ``[delta (D) | B (N) | C (N)]``,
    from grid-order ``(B, 4, ., H, W)`` operands.  A view when the three are adjacent slices of one such tensor
    (SS2D's projection output), else a copy."""
    rows = [t.permute(0, 3, 4, 1, 2) for t in (delta, B, C)]  # (B, H, W, 4, .)
    shape = rows[0].shape[:-1] + (sum(r.shape[-1] for r in rows),)
    strides = [1]  # of a contiguous tensor of that shape
    for size in reversed(shape[1:]):
        strides.insert(0, strides[0] * size)
    item = delta.element_size()
    adjacent = (
        delta.dtype == B.dtype == C.dtype
        and delta.untyped_storage().data_ptr() == B.untyped_storage().data_ptr() == C.untyped_storage().data_ptr()
        and B.data_ptr() == delta.data_ptr() + rows[0].shape[-1] * item
        and C.data_ptr() == B.data_ptr() + rows[1].shape[-1] * item
        and all(r.stride(i) == strides[i] for r in rows for i in range(5) if r.shape[i] > 1)
    )
    if adjacent:
        return rows[0].as_strided(shape, strides)
    return torch.cat(rows, dim=-1)


def cross_selective_scan_cpu(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool = True,
    delta_proj: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same contract as :func:`audiomamba.ops.cross_selective_scan` (float32 math, ``x``'s dtype out).

    ``delta`` is the full ``(B, 4, E, H, W)``, or with ``delta_proj (4, E, R)`` its rank-R factors
    ``(B, 4, R, H, W)``, projected inside the kernel.  Channels-last ``x`` (unit channel stride) is read in place,
    and so are ``delta``, ``B`` and ``C`` when they are adjacent slices of one ``(B, H, W, 4, R + 2N)`` tensor.
    """
    b, e, hgt, wid = x.shape
    k, n = delta.shape[1], A.shape[1]
    blocking = _blocking(e, b)
    if delta_proj is None:  # full delta: each row holds the (padded) channels of the direction's delta
        delta = F.pad(delta, (0, 0, 0, 0, 0, blocking[2]))
        dtw = np.zeros((k, 0, e), np.float32)
    else:
        dtw = _np(delta_proj.transpose(1, 2))  # (4, R, E)
    rows = token_rows(delta, B, C)
    pk = rows.shape[-1]
    zeros = torch.zeros(k, e)
    y = _run(x.permute(0, 2, 3, 1), _np(rows), k * pk, pk, dtw, _np(A.view(k, e, n).transpose(1, 2)),
             _np(D.view(k, e) if D is not None else zeros),
             _np(delta_bias.view(k, e) if delta_bias is not None else zeros), delta_softplus, blocking)
    return y.permute(0, 3, 1, 2).to(x.dtype)
