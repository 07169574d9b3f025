"""Triton selective-scan kernels: forward and backward, and VMamba's cross-scan / cross-merge around them.

One kernel pair scans "streams".  Each thread owns one channel of one stream and walks it sequentially (the
recurrence ``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t`` is one FMA per step and state), so the scan needs
no cross-thread combine; T = 8 steps form a chunk, unrolled, with the next two chunks' loads in flight while one
is computed.  A warp covers 32 channels: with channels-last operands (unit channel stride), each step's loads
are one coalesced row.  Every operand is read through its strides as a ``(batch, stream, channel, h, w)``
view, so no layout copy is needed:

- :func:`cross_selective_scan_triton` (SS2D): the four directions of a ``(B, E, H, W)`` map in one launch:
  k0 walks rows, k1 columns (by index arithmetic on the same map, no transposed copy), k2 and k3 the same
  backwards (from the last position with negated strides, so one loop body serves all four).  A chunk never
  spans two lines (the last chunk of a line is padded with identity steps).  Each direction writes its output
  on the grid; a small kernel sums the four in float32.
- :func:`selective_scan_triton` (plain): ``u, delta (B, G*E, L)``, ``B, C (B, G, N, L)``, every group forwards.

State and arithmetic are float32 whatever the input dtype; softplus(delta + delta_bias) (a cheap log1p series,
relative error < 1e-6) and the D skip are fused.  The forward saves each chunk's starting state (N floats per
channel and chunk) when a gradient is needed; the backward walks the chunks in reverse, recomputes the chunk's
states from the saved start and runs the adjoint ``dh_t = C_t dy_t + a_{t+1} dh_{t+1}`` back through them:
memory stays linear in the length.  Gradients of B and C (shared by a stream's channels) are summed across the
warp and added with relaxed float32 atomics (the default acquire-release ones put a memory fence and an L1
flush around every add, which serialised the backward's loads); those of A, D and delta_bias are summed per
program and added once.
Launches with whole channel blocks and chunks (the models' maps) compile without masks.  The forward can split
each stream into segments scanned in parallel (``_SEGMENTS``; a summary pass, then a pass that carries the
state across segments): more threads for a latency-bound walk, at the cost of reading the inputs twice.  It
splits only launches with few, long streams (batch 1, long files), where it is 2-19x faster; a full batch
runs unsplit.

History and measurements: ``docs/triton-notes.md``.  Triton is optional: importing this module without it
raises ImportError, which the package catches.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_STATE = 16


LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x LOG2E): A is scaled once per program, not per element
CHUNK = 8  # scan steps per chunk (unrolled; the next chunks' loads are in flight while one is computed)
T = tl.constexpr(CHUNK)


# Integer arguments are not specialised: Triton would otherwise compile one variant per stage of a model (a size
# or stride of 1, or divisible by 16, is a separate variant), each taking seconds to compile, for no better code:
# every load is one element per thread, so divisibility cannot widen it.  A model then compiles one forward and one
# backward per flag set (bench/compile_time.py).
_INTS = ["sx_b", "sx_k", "sx_e", "sx_h", "sx_w", "sd_b", "sd_k", "sd_e", "sd_h", "sd_w", "sbc_b", "sbc_k", "sbc_n",
         "sbc_h", "sbc_w", "sy_b", "sy_k", "sy_e", "sy_h", "sy_w", "E", "H", "W", "NCMAX", "n_eb"]


@triton.jit
def _softplus(x):
    """softplus(x) = max(x, 0) + log1p(exp(-|x|)) in ~16 instructions, relative error < 1e-6: log1p(z) for
    z in (0, 1] is 2 atanh(s) with s = z / (2 + z) <= 1/3, an odd series in s (terms to s^13; the next is
    < 2e-8).  Triton's accurate log is a ~25-instruction polynomial and its IEEE division ~10 more, per element;
    the division here is the approximate one (2 ulp)."""
    z = tl.exp2(-tl.abs(x) * LOG2E)
    s = tl.fdiv(z, 2.0 + z)
    s2 = s * s
    p = s2 * (1.0 / 13.0) + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return tl.maximum(x, 0.0) + 2.0 * s * p


@triton.jit
def _delta(raw, bias, valid, SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN: tl.constexpr):
    """One step's step sizes (BLOCK_E,), 0 at a padding step (so that it is the identity)."""
    if HAS_BIAS:
        raw = raw + bias
    if SOFTPLUS:
        raw = _softplus(raw)
    if EVEN:
        return raw
    return tl.where(valid, raw, 0.0)


@triton.jit
def _program(A_ptr, D_ptr, bias_ptr, E, H, W, n_eb, S, N: tl.constexpr, BLOCK_E: tl.constexpr,
             CROSS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """This program's batch b (int64), segment sg of S, stream k, stream count K, channel block e and mask,
    parameter rows ch, scan geometry (col: the stream walks columns; rev: it walks backwards; O lines of I steps
    each) and parameters: A * log2(e) as a tuple of N (BLOCK_E,) columns, D and delta_bias (zeros where
    absent)."""
    pid = tl.program_id(0)
    k = tl.program_id(1)
    sg = pid % S
    pid = pid // S
    b = (pid // n_eb).to(tl.int64)
    e = (pid % n_eb) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = k * E + e
    A2 = ()
    for n in tl.static_range(N):
        A2 = A2 + (tl.load(A_ptr + ch * N + n, mask=emask, other=0.0) * LOG2E,)
    Dv = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=emask, other=0.0)
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=emask, other=0.0)
    col = (k % 2 == 1) & CROSS
    rev = (k >= 2) & CROSS
    O = tl.where(col, W, H)
    I = tl.where(col, H, W)
    return b, sg, k, tl.num_programs(1), e, emask, ch, col, rev, O, I, A2, Dv, bias


@triton.jit
def _stream(sb, sk, sh, sw, b, k, col, rev, O, I, I64: tl.constexpr):
    """Stream k of batch b of an operand with strides (sb, sk, ., sh, sw): the offset of its first step and its
    (line, step) strides.  A backward stream (k2, k3) is its forward twin (k0, k1) started at the last position
    with both strides negated, so one loop body serves all four directions (two bodies, one per direction,
    doubled the kernel's code and made Triton's coalescing pass, quadratic in it, take seconds per variant)."""
    lo, st = tl.where(col, sw, sh), tl.where(col, sh, sw)
    if I64:  # one return for both variants: compiled Triton rejects returns of different types (the interpreter not)
        lo, st = lo.to(tl.int64), st.to(tl.int64)
    start = b * sb + k * sk + tl.where(rev, (O - 1) * lo + (I - 1) * st, 0)
    sign = tl.where(rev, -1, 1)
    return start, lo * sign, st * sign


@triton.jit
def _chan(e, se, I64: tl.constexpr):
    """Per-channel offsets (32-bit unless a tensor spans 2^31 elements: one integer add and one wide multiply-add
    per load)."""
    if I64:  # one return for both variants (see _stream)
        e = e.to(tl.int64)
    return e * se


@triton.jit
def _operand(ptr, sb, sk, se, sh, sw, b, k, e, col, rev, O, I, I64: tl.constexpr):
    """Stream k of batch b of a (B, K, channels, H, W) operand: its pointer to the first step, the per-channel
    offset vector and the (line, step) strides."""
    start, lo, st = _stream(sb, sk, sh, sw, b, k, col, rev, O, I, I64)
    return ptr + start, _chan(e, se, I64), lo, st


@triton.jit
def _chunk(c, NC, nci, I64: tl.constexpr):
    """Scan chunk c -> (line o, first step i0 in the line, chunk exists).  A chunk never spans two lines (the
    last one of a line is padded), so that its positions are o * line_stride + (i0 + t) * step_stride."""
    cc = tl.minimum(tl.maximum(c, 0), NC - 1)  # a prefetch past either end reloads a real chunk (no mask needed)
    o = cc // nci
    i0 = (cc - o * nci) * T
    if I64:
        o, i0 = o.to(tl.int64), i0.to(tl.int64)
    return o, i0, (c < NC) & (c >= 0)


@triton.jit
def _rows(e, E, ok):
    """Channel mask of a step that exists when ``ok``: one vector compare (``vector & scalar`` masks come out
    as integers in Triton's CPU interpreter)."""
    return e < tl.where(ok, E, 0)


@triton.jit
def _ld(p, m, EVEN: tl.constexpr):
    """Load, masked unless the launch has no padding (EVEN: whole channel blocks and chunks)."""
    if EVEN:
        return tl.load(p)
    return tl.load(p, mask=m, other=0.0)


@triton.jit
def _st(p, v, m, EVEN: tl.constexpr):
    if EVEN:
        tl.store(p, v)
    else:
        tl.store(p, v, mask=m)


@triton.jit
def _rows_of(p, eo, lo, st, e, E, o, i0, ok, I, EVEN: tl.constexpr):
    """A chunk's T (BLOCK_E,) rows of one per-channel operand (line stride lo, step stride st), 0 outside the
    map."""
    rs = ()
    for t in tl.static_range(T):
        rs = rs + (_ld(p + (eo + (o * lo + (i0 + t) * st)), _rows(e, E, ok & (i0 + t < I)), EVEN),)
    return rs


@triton.jit
def _states_of(p, s_n, lo, st, o, i0, ok, I, N: tl.constexpr, EVEN: tl.constexpr):
    """A chunk's B or C: T tuples of N float32 scalars, 0 outside the map."""
    rs = ()
    for t in tl.static_range(T):
        v = ()
        for n in tl.static_range(N):
            v = v + (_ld(p + (n * s_n + o * lo + (i0 + t) * st), ok & (i0 + t < I), EVEN).to(tl.float32),)
        rs = rs + (v,)
    return rs


@triton.jit
def _load(x_p, d_p, B_p, C_p, ex, ed, xo, xi, do_, di, bo, bi, s_n, e, E, c, NC, nci, I, N: tl.constexpr,
          EVEN: tl.constexpr, I64: tl.constexpr):
    """Chunk c's inputs: u and raw-delta rows and, for N <= 4, the B and C scalars, its line and first step.
    Loading B and C here, ahead of the chunk's stores and atomics, keeps their latency off the per-step path (a
    load cannot move above a store that might alias it)."""
    o, i0, ok = _chunk(c, NC, nci, I64)
    us = _rows_of(x_p, ex, xo, xi, e, E, o, i0, ok, I, EVEN)
    ds = _rows_of(d_p, ed, do_, di, e, E, o, i0, ok, I, EVEN)
    bs = ()
    cs = ()
    if N <= 4:
        bs = _states_of(B_p, s_n, bo, bi, o, i0, ok, I, N, EVEN)
        cs = _states_of(C_p, s_n, bo, bi, o, i0, ok, I, N, EVEN)
    return us, ds, bs, cs, o, i0, ok


@triton.jit
def _state(p, bs, j, n, s_n, lo, st, o, i, valid, N: tl.constexpr, EVEN: tl.constexpr):
    """B or C of state n at the chunk's j-th scan step: preloaded (N <= 4) or loaded now."""
    if N <= 4:
        return bs[j][n]
    return _ld(p + (n * s_n + o * lo + i * st), valid, EVEN).to(tl.float32)


@triton.jit
def _fwd_body(x_p, d_p, B_p, C_p, y_p, hs_p, sm_p, ex, ed, ey, xo, xi, do_, di, bo, bi, yo, yi, s_n, e, E, emask, O,
              I, sg, S, A2, Dv, bias, N: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr,
              HAS_BIAS: tl.constexpr, SAVE: tl.constexpr, SUMMARY: tl.constexpr, EVEN: tl.constexpr,
              I64: tl.constexpr):
    """Segment sg of S of the stream (a run of whole chunks).  SUMMARY: scan it from a zero state and store, per
    channel, the sum of its step sizes (the segment's decay is exp(A * that sum)) and its end state; no output.
    Otherwise the segment starts from the state the earlier segments' summaries carry into it, and writes y."""
    nci = (I + T - 1) // T
    NC = O * nci
    per = (NC + S - 1) // S
    c_lo = sg * per
    c_hi = tl.minimum(c_lo + per, NC)
    h = ()
    for n in tl.static_range(N):
        h = h + (tl.zeros(Dv.shape, dtype=tl.float32),)
    if not SUMMARY:
        for sp in range(0, sg):  # carry in: h <- exp(A sum(delta)) h + h_end, segment by segment (none for S = 1)
            dsum = _ld(sm_p + sp * (N + 1), emask, EVEN)
            hn = ()
            for n in tl.static_range(N):
                hn = hn + (tl.exp2(dsum * A2[n]) * h[n] + _ld(sm_p + sp * (N + 1) + 1 + n, emask, EVEN),)
            h = hn
    sdl = tl.zeros(Dv.shape, dtype=tl.float32)  # SUMMARY: the segment's sum of step sizes
    # software pipelining by hand: two chunks' loads are in flight while one is computed (the scan is
    # latency-bound: one thread per channel, so there are few threads for the bytes in flight)
    nxt = _load(x_p, d_p, B_p, C_p, ex, ed, xo, xi, do_, di, bo, bi, s_n, e, E, c_lo, NC, nci, I, N, EVEN, I64)
    nxt2 = _load(x_p, d_p, B_p, C_p, ex, ed, xo, xi, do_, di, bo, bi, s_n, e, E, c_lo + 1, NC, nci, I, N, EVEN, I64)
    for c in range(c_lo, c_hi):
        us, ds, bs, cs, o, i0, ok = nxt
        nxt = nxt2
        nxt2 = _load(x_p, d_p, B_p, C_p, ex, ed, xo, xi, do_, di, bo, bi, s_n, e, E, c + 2, NC, nci, I, N, EVEN, I64)
        if SAVE:  # the chunk's starting state, for the backward
            for n in tl.static_range(N):
                _st(hs_p + c * N + n, h[n], emask, EVEN)
        for j in tl.static_range(T):
            i = i0 + j
            valid = i < I
            u = us[j].to(tl.float32)
            dl = _delta(ds[j].to(tl.float32), bias, valid, SOFTPLUS, HAS_BIAS, EVEN)
            dlu = dl * u
            hn = ()
            if SUMMARY:
                sdl += dl
                for n in tl.static_range(N):
                    Bn = _state(B_p, bs, j, n, s_n, bo, bi, o, i, valid, N, EVEN)
                    hn = hn + (tl.exp2(dl * A2[n]) * h[n] + dlu * Bn,)
            else:
                y = Dv * u
                for n in tl.static_range(N):
                    Bn = _state(B_p, bs, j, n, s_n, bo, bi, o, i, valid, N, EVEN)
                    Cn = _state(C_p, cs, j, n, s_n, bo, bi, o, i, valid, N, EVEN)
                    st = tl.exp2(dl * A2[n]) * h[n] + dlu * Bn
                    y += st * Cn
                    hn = hn + (st,)
                _st(y_p + (ey + (o * yo + i * yi)), y.to(y_p.dtype.element_ty), _rows(e, E, valid), EVEN)
            h = hn
    if SUMMARY:
        _st(sm_p + sg * (N + 1), sdl, emask, EVEN)
        for n in tl.static_range(N):
            _st(sm_p + sg * (N + 1) + 1 + n, h[n], emask, EVEN)


@triton.jit(do_not_specialize=_INTS + ["S"])
def _scan_fwd_kernel(
    x_ptr, d_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr, hs_ptr, sm_ptr,
    sx_b, sx_k, sx_e, sx_h, sx_w, sd_b, sd_k, sd_e, sd_h, sd_w, sbc_b, sbc_k, sbc_n, sbc_h, sbc_w,
    sy_b, sy_k, sy_e, sy_h, sy_w,
    E, H, W, NCMAX, n_eb, S,
    N: tl.constexpr, BLOCK_E: tl.constexpr, CROSS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE: tl.constexpr, SUMMARY: tl.constexpr,
    EVEN: tl.constexpr, I64: tl.constexpr,
):
    """Grid (batch x channel blocks, streams).  Each thread owns one channel of one stream and walks it
    sequentially; every operand is read through its strides ((b, k, channel, h, w); channels-last inputs make
    each step's loads one coalesced row).  SS2D's four directions (CROSS) run in one launch: k0 rows, k1
    columns, k2/k3 the same backwards.  Grid axis 0 also splits each stream into S segments (see _fwd)."""
    b, sg, k, K, e, emask, ch, col, rev, O, I, A2, Dv, bias = _program(A_ptr, D_ptr, bias_ptr, E, H, W, n_eb, S, N,
                                                                        BLOCK_E, CROSS, HAS_D, HAS_BIAS)
    x_p, ex, xo, xi = _operand(x_ptr, sx_b, sx_k, sx_e, sx_h, sx_w, b, k, e, col, rev, O, I, I64)
    d_p, ed, do_, di = _operand(d_ptr, sd_b, sd_k, sd_e, sd_h, sd_w, b, k, e, col, rev, O, I, I64)
    y_p, ey, yo, yi = _operand(y_ptr, sy_b, sy_k, sy_e, sy_h, sy_w, b, k, e, col, rev, O, I, I64)
    bc, bo, bi = _stream(sbc_b, sbc_k, sbc_h, sbc_w, b, k, col, rev, O, I, I64)  # B and C share strides
    hs_p = hs_ptr + ((b * K + k) * E + e) * NCMAX * N  # (B, K, E, NCMAX, N)
    sm_p = sm_ptr + ((b * K + k) * E + e) * S * (N + 1)  # (B, K, E, S, 1 + N)
    _fwd_body(x_p, d_p, B_ptr + bc, C_ptr + bc, y_p, hs_p, sm_p, ex, ed, ey, xo, xi, do_, di, bo, bi, yo, yi, sbc_n, e,
              E, emask, O, I, sg, S, A2, Dv, bias, N, SOFTPLUS, HAS_D, HAS_BIAS, SAVE, SUMMARY, EVEN, I64)


@triton.jit
def _bwd_body(x_p, d_p, B_p, C_p, dy_p, du_p, dd_p, dB_p, dC_p, hs_p, ex, ed, eg, eu, xo, xi, do_, di, bo, bi, go,
              gi, uo, ui,
              s_n, e, E, emask, O, I, A2, Dv, bias, N: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr,
              HAS_BIAS: tl.constexpr, EVEN: tl.constexpr, I64: tl.constexpr):
    """Chunks in reverse scan order: each recomputes its states from the saved start, then walks the adjoint
    back through them.  ``q = a_{t+1} dh_{t+1}`` carries the adjoint from the later step; d(delta) is laid out
    like delta (strides do_, di), du like y (uo, ui), dy has its own (go, gi).  Returns the block's dA (a
    tuple of N), dD and dbias sums."""
    nci = (I + T - 1) // T
    NC = O * nci
    zero = tl.zeros(Dv.shape, dtype=tl.float32)
    q = ()
    dA = ()
    for n in tl.static_range(N):
        q = q + (zero,)
        dA = dA + (zero,)
    dD = zero
    dbias = zero
    nxt = _load(x_p, d_p, B_p, C_p, ex, ed, xo, xi, do_, di, bo, bi, s_n, e, E, NC - 1, NC, nci, I, N, EVEN, I64)
    nxt_dy = _rows_of(dy_p, eg, go, gi, e, E, nxt[4], nxt[5], nxt[6], I, EVEN)
    for cc in range(NC):
        c = NC - 1 - cc
        us, ds, bs, cs, o, i0, ok = nxt
        dys = nxt_dy
        nxt = _load(x_p, d_p, B_p, C_p, ex, ed, xo, xi, do_, di, bo, bi, s_n, e, E, c - 1, NC, nci, I, N, EVEN, I64)
        nxt_dy = _rows_of(dy_p, eg, go, gi, e, E, nxt[4], nxt[5], nxt[6], I, EVEN)
        # recompute the states before each step (scan order), from the chunk's saved start
        h = ()
        for n in tl.static_range(N):
            h = h + (_ld(hs_p + c * N + n, emask, EVEN),)
        hp = ()
        dls = ()  # step sizes, kept for the adjoint (softplus once per step)
        for j in tl.static_range(T):
            i = i0 + j
            valid = i < I
            hp = hp + (h,)
            dl = _delta(ds[j].to(tl.float32), bias, valid, SOFTPLUS, HAS_BIAS, EVEN)
            dls = dls + (dl,)
            dlu = dl * us[j].to(tl.float32)
            hn = ()
            for n in tl.static_range(N):
                Bn = _state(B_p, bs, j, n, s_n, bo, bi, o, i, valid, N, EVEN)
                hn = hn + (tl.exp2(dl * A2[n]) * h[n] + dlu * Bn,)
            h = hn
        # the adjoint, against the scan order; for N <= 4 the B / C gradient atomics wait for the chunk's end
        red = ()
        for jj in tl.static_range(T):  # reverse scan order: scan-order index T - 1 - jj
            i = i0 + (T - 1 - jj)
            valid = i < I
            m = _rows(e, E, valid)
            u = us[T - 1 - jj].to(tl.float32)
            raw = ds[T - 1 - jj].to(tl.float32)
            if HAS_BIAS:
                raw = raw + bias
            dl = dls[T - 1 - jj]
            dlu = dl * u
            dy = dys[T - 1 - jj].to(tl.float32)
            sB = zero
            sA = zero
            qn = ()
            dAn = ()
            for n in tl.static_range(N):
                off = n * s_n + o * bo + i * bi
                Bn = _state(B_p, bs, T - 1 - jj, n, s_n, bo, bi, o, i, valid, N, EVEN)
                Cn = _state(C_p, cs, T - 1 - jj, n, s_n, bo, bi, o, i, valid, N, EVEN)
                a = tl.exp2(dl * A2[n])
                h = a * hp[T - 1 - jj][n] + dlu * Bn
                dh = dy * Cn + q[n]
                qq = a * dh
                qh = qq * hp[T - 1 - jj][n]  # dh_t a_t h_{t-1}
                dAn = dAn + (dA[n] + qh * dl,)
                qn = qn + (qq,)
                sB += dh * Bn
                sA += qh * A2[n]
                # padding channels and steps hold zeros (u, dy and delta are 0 there), so the sums need no mask
                gB, gC = tl.sum(dh * dlu, axis=0), tl.sum(h * dy, axis=0)
                if N <= 4:
                    red = red + ((off, valid, gB, gC),)
                else:
                    tl.atomic_add(dB_p + off, gB, mask=valid, sem="relaxed")
                    tl.atomic_add(dC_p + off, gC, mask=valid, sem="relaxed")
            q = qn
            dA = dAn
            ddl = u * sB + sA / LOG2E
            if SOFTPLUS:  # softplus' = sigmoid
                ddl = tl.fdiv(ddl, 1.0 + tl.exp2(-raw * LOG2E))
            if not EVEN:
                ddl = tl.where(m, ddl, 0.0)
            du = dl * sB + Dv * dy
            dD += dy * u
            dbias += ddl
            _st(dd_p + (ed + (o * do_ + i * di)), ddl.to(dd_p.dtype.element_ty), m, EVEN)
            _st(du_p + (eu + (o * uo + i * ui)), du.to(du_p.dtype.element_ty), m, EVEN)
        if N <= 4:
            for r in tl.static_range(T * N):
                tl.atomic_add(dB_p + red[r][0], red[r][2], mask=red[r][1], sem="relaxed")
                tl.atomic_add(dC_p + red[r][0], red[r][3], mask=red[r][1], sem="relaxed")
    return dA, dD, dbias


@triton.jit(do_not_specialize=_INTS + ["sg_b", "sg_k", "sg_e", "sg_h", "sg_w"])
def _scan_bwd_kernel(
    x_ptr, d_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr, du_ptr, dd_ptr, dA_ptr, dB_ptr, dC_ptr,
    dD_ptr, dbias_ptr,
    sx_b, sx_k, sx_e, sx_h, sx_w, sd_b, sd_k, sd_e, sd_h, sd_w, sbc_b, sbc_k, sbc_n, sbc_h, sbc_w,
    sy_b, sy_k, sy_e, sy_h, sy_w, sg_b, sg_k, sg_e, sg_h, sg_w,
    E, H, W, NCMAX, n_eb,
    N: tl.constexpr, BLOCK_E: tl.constexpr, CROSS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN: tl.constexpr, I64: tl.constexpr,
):
    """Backward of :func:`_scan_fwd_kernel`, same grid.  du is laid out like y (strides sy_*), ddelta like
    delta, dB/dC (float32) like B/C and dy has its own strides (sg_*); dA, dD and dbias are summed per program
    and added once."""
    b, _, k, K, e, emask, ch, col, rev, O, I, A2, Dv, bias = _program(A_ptr, D_ptr, bias_ptr, E, H, W, n_eb, 1, N,
                                                                       BLOCK_E, CROSS, HAS_D, HAS_BIAS)
    x_p, ex, xo, xi = _operand(x_ptr, sx_b, sx_k, sx_e, sx_h, sx_w, b, k, e, col, rev, O, I, I64)
    d0, do_, di = _stream(sd_b, sd_k, sd_h, sd_w, b, k, col, rev, O, I, I64)  # delta and its gradient
    du_p, eu, uo, ui = _operand(du_ptr, sy_b, sy_k, sy_e, sy_h, sy_w, b, k, e, col, rev, O, I, I64)
    dy_p, eg, go, gi = _operand(dy_ptr, sg_b, sg_k, sg_e, sg_h, sg_w, b, k, e, col, rev, O, I, I64)
    bc, bo, bi = _stream(sbc_b, sbc_k, sbc_h, sbc_w, b, k, col, rev, O, I, I64)  # B, C and their gradients
    hs_p = hs_ptr + ((b * K + k) * E + e) * NCMAX * N
    dA, dD, dbias = _bwd_body(x_p, d_ptr + d0, B_ptr + bc, C_ptr + bc, dy_p, du_p, dd_ptr + d0, dB_ptr + bc,
                              dC_ptr + bc, hs_p, ex, _chan(e, sd_e, I64), eg, eu, xo, xi, do_, di, bo, bi, go, gi, uo,
                              ui, sbc_n, e, E, emask, O, I, A2, Dv, bias, N, SOFTPLUS, HAS_D, HAS_BIAS, EVEN, I64)
    for n in tl.static_range(N):
        tl.atomic_add(dA_ptr + ch * N + n, dA[n], mask=emask, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + ch, dD, mask=emask, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias, mask=emask, sem="relaxed")


@triton.jit
def _sum4_kernel(y_ptr, out_ptr, E, H, W, total, so_b, so_e, so_h, so_w, BLOCK: tl.constexpr):
    """out (any strides) = the sum over k of y (4, B, H, W, E) in float32: the four directions' outputs, all
    written in grid order, merged."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = idx < total
    acc = tl.load(y_ptr + idx, mask=m, other=0.0).to(tl.float32)
    for kk in tl.static_range(1, 4):
        acc += tl.load(y_ptr + kk * total + idx, mask=m, other=0.0).to(tl.float32)
    e = idx % E
    p = idx // E
    w = p % W
    p = p // W
    h = p % H
    b = p // H
    tl.store(out_ptr + b * so_b + e * so_e + h * so_h + w * so_w, acc.to(out_ptr.dtype.element_ty), mask=m)



# ---------------------------------------------------------------------------------------------- launch


_CONFIG_OVERRIDE: dict[str, int] | None = None  # {"fwd"|"bwd": num_warps}, for sweeps
# forward segments per stream (see _fwd); None: the rule of _segments.  H200, 2026-12-01 (docs/benchmarks.md): the
# rule makes batch-1 latency 1.5-3.6x shorter and a 10-minute pass 2.2-6.5x; at batch 64 it keeps S = 1, where
# S = 2..8 were 4-40% slower
_SEGMENTS: int | None = None
_SEGMENT_WALKERS = 24576  # the rule: split streams until about this many (batch, direction, channel) walks run
_MIN_SEGMENT_CHUNKS = 4  # ... but keep at least this many chunks in a segment
_I64_SPAN = 2**31  # tensors spanning this many elements switch the kernels to 64-bit offsets (tests lower it)


def _config(kind: str) -> tuple[int, int]:
    """(BLOCK_E, num_warps): one channel per thread, so a program covers 32 channels per warp."""
    # bench/dev/scan_sweep.py --channels-last on an H100 (2026-11-24, tiny_v2 stage 0): forward 2 warps 0.85 ms vs 1 warp
    # 0.93; backward 1 warp (the most programs: the backward is the more latency-bound)
    warps = (_CONFIG_OVERRIDE or {}).get(kind, 2 if kind == "fwd" else 1)
    return 32 * warps, warps


def _n_chunks(h: int, w: int, cross: bool) -> int:
    """Chunks of the longest stream: rows of w steps, and with ``cross`` columns of h steps (each line padded
    to whole chunks)."""
    rows = h * triton.cdiv(w, CHUNK)
    return max(rows, w * triton.cdiv(h, CHUNK)) if cross else rows


def _s5(t: torch.Tensor) -> tuple[int, ...]:
    """The five strides of a (B, K, rows, H, W) operand view."""
    if t.dim() != 5:
        raise ValueError(f"internal: expected a 5-d view, got {tuple(t.shape)}")
    return tuple(t.stride())


def _flags(A, D, bias, softplus: bool, cross: bool, shape, block_e: int, tensors) -> dict:
    """Compile-time flags.  EVEN: no padding channel or step anywhere (whole channel blocks, lines of whole
    chunks), so the kernels drop every mask; I64: 64-bit offsets, only when a tensor spans 2^31 elements."""
    _, _, E, H, W = shape
    even = E % block_e == 0 and W % CHUNK == 0 and (H % CHUNK == 0 or not cross)
    span = max(sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())) + 1 for t in tensors if t is not None)
    return dict(N=A.shape[1], CROSS=cross, SOFTPLUS=softplus, HAS_D=D is not None, HAS_BIAS=bias is not None,
                EVEN=even, I64=span >= _I64_SPAN)


def _segments(walks: int, n_chunks: int) -> int:
    """Segments per stream for a forward of ``walks`` (batch x direction x channel) streams of ``n_chunks``
    chunks: ``_SEGMENTS``, or with ``_SEGMENTS = None`` enough to reach ``_SEGMENT_WALKERS`` walks (a batch of one
    long file has 1/64 of a batch's walks, each 64 times as long)."""
    if _SEGMENTS is not None:
        return max(1, min(_SEGMENTS, n_chunks))
    return max(1, min(triton.cdiv(_SEGMENT_WALKERS, walks), n_chunks // _MIN_SEGMENT_CHUNKS))


def _fwd(x5, d5, B5, C5, y5, A, D, bias, softplus: bool, save: bool, cross: bool):
    """Run the forward on (B, K, rows, H, W) views (x5 may have a zero K stride); returns the saved chunk states.

    With ``_SEGMENTS`` = S > 1 each stream is split into S runs of whole chunks, S times the threads for a
    latency-bound walk: a first launch scans every segment from a zero state and keeps its step-size sum and end
    state per channel; the second starts each segment from the state its predecessors carry in (h <- exp(A sum
    delta) h + h_end, in order) and writes y.  The inputs are read twice."""
    batch, K, E, H, W = d5.shape
    be, warps = _config("fwd")
    n_eb, ncmax = triton.cdiv(E, be), _n_chunks(H, W, cross)
    segs = _segments(batch * K * E, ncmax)
    hs = torch.empty(batch, K, E, ncmax, A.shape[1], device=A.device, dtype=torch.float32) if save else None
    sm = torch.empty(batch, K, E, segs, A.shape[1] + 1, device=A.device, dtype=torch.float32) if segs > 1 else A
    flags = _flags(A, D, bias, softplus, cross, d5.shape, be, (x5, d5, y5, hs, sm))
    args = (x5, d5, A, B5, C5, A if D is None else D, A if bias is None else bias, y5, hs if save else A, sm,
            *_s5(x5), *_s5(d5), *_s5(B5), *_s5(y5), E, H, W, ncmax, n_eb, segs)
    grid = (batch * n_eb * segs, K)
    if segs > 1:
        _scan_fwd_kernel[grid](*args, BLOCK_E=be, SAVE=False, SUMMARY=True, num_warps=warps, **flags)
    _scan_fwd_kernel[grid](*args, BLOCK_E=be, SAVE=save, SUMMARY=False, num_warps=warps, **flags)
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
    _scan_bwd_kernel[(batch * n_eb, K)](
        x5, d5, A, B5, C5, A if D is None else D, A if bias is None else bias, hs, dy5, du5, dd5, dA, dB5, dC5,
        dD, dbias, *_s5(x5), *_s5(d5), *_s5(B5), *_s5(du5), *_s5(dy5), E, H, W, hs.shape[3], n_eb,
        BLOCK_E=be, num_warps=warps, **_flags(A, D, bias, softplus, cross, d5.shape, be, (x5, d5, du5, dy5, hs)),
    )
    return dA, (dD if D is not None else None), (dbias if bias is not None else None)


def _sum4(y4: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out (B, E, H, W) <- the sum of y4 (4, B, H, W, E) over its first axis, in float32."""
    _, b, h, w, E = y4.shape
    total, BLOCK = b * h * w * E, 1024
    _sum4_kernel[(triton.cdiv(total, BLOCK),)](y4, out, E, h, w, total, out.stride(0), out.stride(1), out.stride(2),
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
# ``cross`` picks SS2D's four-direction mode (x: (B, E, H, W)) or the plain grouped scan (u: (B, G*E, L)).  The saved chunk states travel as a second
# output (empty when no gradient is needed); absent D / delta_bias gradients are empty tensors.

_EMPTY = (0,)


@torch.library.custom_op("audiomamba::selective_scan_fwd", mutates_args=())
def _scan_fwd_op(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, bias: torch.Tensor | None, softplus: bool, cross: bool, save: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    y, hs = (_cross_fwd if cross else _plain_fwd)(u, delta, A, B, C, D, bias, softplus, save)
    return y, (hs if save else u.new_empty(_EMPTY, dtype=torch.float32))


@_scan_fwd_op.register_fake
def _(u, delta, A, B, C, D, bias, softplus, cross, save):
    if cross:
        b, E, h, w = u.shape
        K, nc = 4, _n_chunks(h, w, True)
    else:
        b, K, L = u.shape[0], B.shape[1], u.shape[2]
        E, nc = u.shape[1] // K, _n_chunks(1, L, False)
    hs_shape = (b, K, E, nc, A.shape[1]) if save else _EMPTY
    return torch.empty_like(u), u.new_empty(hs_shape, dtype=torch.float32)


@torch.library.custom_op("audiomamba::selective_scan_bwd", mutates_args=())
def _scan_bwd_op(
    dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, bias: torch.Tensor | None, hs: torch.Tensor, softplus: bool, cross: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = (_cross_bwd if cross else _plain_bwd)(dy, u, delta, A, B, C, D, bias, hs, softplus)
    return tuple(g if g is not None else A.new_empty(_EMPTY) for g in grads)


@_scan_bwd_op.register_fake
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
    du, ddelta, dA, dB, dC, dD, dbias = _scan_bwd_op(dy, u, delta, A, B, C, D, bias, hs, *ctx.flags)
    return (du, ddelta, dA, dB, dC, (dD if D is not None else None), (dbias if bias is not None else None),
            None, None, None)


torch.library.register_autograd("audiomamba::selective_scan_fwd", _backward, setup_context=_setup_context)


class _ScanFunction(torch.autograd.Function):
    """Eager autograd around the same forward and backward as the custom ops.  The custom op's dispatch costs
    80-190 us of host time per call on the H100 host (``bench/dev/launch_overhead.py``) and eager batch-64
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
        return _scan_fwd_op(u, delta, A, B, C, D, bias, softplus, cross, save)[0]
    return _ScanFunction.apply(u, delta, A, B, C, D, bias, softplus, cross, save)


# ---------------------------------------------------------------------------------------------- entry points


def _f32(t):
    return None if t is None else t.to(torch.float32).contiguous()


def _supported(tensors, state: int) -> bool:
    main = [t for t in tensors if t is not None]
    if not main or not all(t.is_cuda for t in main):
        return False
    dev = main[0].device
    if any(t.device != dev for t in main):
        return False
    if any(t.dtype not in SUPPORTED_DTYPES for t in main):
        return False
    return 1 <= state <= MAX_STATE


def _check_state(state: int) -> None:
    if not (1 <= state <= MAX_STATE):
        raise ValueError(f"the Triton selective scan takes d_state 1..{MAX_STATE}, got {state}")


def supports_selective_scan(u, delta, A, B, C, D=None, delta_bias=None) -> bool:
    """Predicate for the dispatcher: CUDA tensors of float32/16/bf16, d_state 1..16, length >= 1."""
    return _supported((u, delta, A, B, C, D, delta_bias), A.shape[1]) and u.shape[-1] >= 1


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Plain-mode selective scan on the GPU (contract of :func:`audiomamba.ops.selective_scan`)."""
    _check_state(A.shape[1])
    # Non-contiguous inputs are copied (never read with wrong strides); B and C keep their dtype.
    return _scan(
        u.contiguous(), delta.contiguous(), _f32(A), B.contiguous(), C.contiguous(), _f32(D), _f32(delta_bias),
        bool(delta_softplus), cross=False,
    )


def supports_cross_selective_scan(x, delta, A, B, C, D=None, delta_bias=None) -> bool:
    return _supported((x, delta, A, B, C, D, delta_bias), A.shape[1]) and x.shape[-1] * x.shape[-2] >= 1


def cross_selective_scan_triton(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Cross-scan + selective scan + cross-merge on the GPU (contract of
    :func:`audiomamba.ops.cross_selective_scan`)."""
    _check_state(A.shape[1])
    # x, delta, B and C keep their layout (channels-last x and delta are the fast ones; others are copied inside)
    return _scan(x, delta, _f32(A), B, C, _f32(D), _f32(delta_bias), bool(delta_softplus), cross=True)
