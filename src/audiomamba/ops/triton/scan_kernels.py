"""Triton kernels of the selective scan: forward, backward, and the merge of SS2D's four directions.

Launched by :mod:`audiomamba.ops.triton.scan`, which computes their grids, strides and flags.

One kernel pair scans "streams".  Each thread owns one channel of one stream and walks it sequentially (the
recurrence ``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t`` is one FMA per step and state), so the scan needs
no cross-thread combine; ``CHUNK`` = 8 steps form a chunk, unrolled, with the next two chunks' loads in flight
while one is computed.  A warp covers 32 channels: with channels-last operands (unit channel stride), each
step's loads are one coalesced row.  Every operand is read through its strides as a
``(batch, stream, channel, h, w)`` view, so no layout copy is needed.  In SS2D's cross mode (``CROSS``) the four
directions of a ``(B, E, H, W)`` map run in one launch: k0 walks rows, k1 columns (by index arithmetic on the
same map, no transposed copy), k2 and k3 the same backwards (from the last position with negated strides, so one
loop body serves all four).  A chunk never spans two lines (the last chunk of a line is padded with identity
steps).  Each direction writes its output on the grid; :func:`sum4_kernel` sums the four in float32.

State and arithmetic are float32 whatever the input dtype; softplus(delta + delta_bias) (a cheap log1p series,
relative error < 1e-6) and the D skip are fused.  The forward saves each chunk's starting state (N floats per
channel and chunk) when a gradient is needed; the backward walks the chunks in reverse, recomputes the chunk's
states from the saved start and runs the adjoint ``dh_t = C_t dy_t + a_{t+1} dh_{t+1}`` back through them:
memory stays linear in the length.  Gradients of B and C (shared by a stream's channels) are summed across the
warp and added with relaxed float32 atomics (the default acquire-release ones put a memory fence and an L1
flush around every add, which serialises the backward's loads); those of A, D and delta_bias are summed per
program and added once.  Launches with whole channel blocks and chunks (``EVEN``) compile without masks.  The
forward can split each stream into ``S`` segments scanned in parallel (``SUMMARY``: a pass that keeps each
segment's step-size sum and end state; then a pass that carries the state across segments).

Design notes and measurements: ``docs/kernels.md``.
"""

from __future__ import annotations

import triton
import triton.language as tl

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
def _step_states(p, s_n, lo, st, o, i, valid, N: tl.constexpr, EVEN: tl.constexpr):
    """B or C at one scan step: a tuple of N float32 scalars, loaded together (the backward's N > 4 path)."""
    v = ()
    for n in tl.static_range(N):
        v = v + (_ld(p + (n * s_n + o * lo + i * st), valid, EVEN).to(tl.float32),)
    return v


@triton.jit
def _shfl_xor(v, s: tl.constexpr):
    """float32 v of the lane whose index differs from this one's in bit s (PTX ``shfl.sync.bfly``; the lane offset
    is a register operand, so one asm string serves every level).  Triton has no warp shuffle of its own; its
    ``tl.sum`` reduces one value at a time."""
    r = tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, $2, 0x1f, 0xffffffff;", "=r,r,r",
                                  [v.to(tl.int32, bitcast=True), tl.full(v.shape, s, tl.int32)],
                                  dtype=tl.int32, is_pure=True, pack=1)
    return r.to(tl.float32, bitcast=True)


@triton.jit
def _halve(vals, lane, s: tl.constexpr):
    """One level of a warp's reduce-scatter: ``vals`` is a tuple of 2s per-lane partial sums; each lane keeps
    the half chosen by bit s of its lane index (the lower half where it is 0), plus its partner's same half."""
    hi = (lane & s) != 0
    out = ()
    for j in tl.static_range(s):
        send = tl.where(hi, vals[j], vals[j + s])
        out = out + (tl.where(hi, vals[j + s], vals[j]) + _shfl_xor(send, s),)
    return out


@triton.jit
def _warp_reduce_scatter(vals, lane):
    """32 per-lane partial sums (a tuple of 32 (BLOCK_E,) tensors, one element per thread) -> lane l holds the
    sum over its warp's 32 lanes of value l.  31 shuffles and adds in five levels, where reducing each value on
    its own (``tl.sum``) takes 5 x 32; each lane then adds its one sum with a single atomic instruction for the
    warp, in place of 32."""
    return _halve(_halve(_halve(_halve(_halve(vals, lane, 16), lane, 8), lane, 4), lane, 2), lane, 1)[0]


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
def scan_fwd_kernel(
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
    columns, k2/k3 the same backwards.  Grid axis 0 also splits each stream into S segments (see _fwd_body)."""
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
              s_n, e, E, emask, O, I, A2, Dv, bias, N: tl.constexpr, BLOCK_E: tl.constexpr, SOFTPLUS: tl.constexpr,
              HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN: tl.constexpr, I64: tl.constexpr,
              WARP_RED: tl.constexpr):
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
        # the adjoint, against the scan order; for N <= 4 the B / C gradient atomics wait for the chunk's end.
        # For N > 4 a step's B and C are loaded together, ahead of the previous step's atomics: a load cannot move
        # above an atomic that might alias it, so loading them state by state between the atomics exposed the
        # load latency 2N times per step instead of once.
        red = ()
        if N > 4:
            nbc = (_step_states(B_p, s_n, bo, bi, o, i0 + T - 1, i0 + T - 1 < I, N, EVEN),
                   _step_states(C_p, s_n, bo, bi, o, i0 + T - 1, i0 + T - 1 < I, N, EVEN))
        for jj in tl.static_range(T):  # reverse scan order: scan-order index T - 1 - jj
            i = i0 + (T - 1 - jj)
            valid = i < I
            if N > 4:
                bj, cj = nbc
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
            gBs = ()
            gCs = ()
            for n in tl.static_range(N):
                off = n * s_n + o * bo + i * bi
                if N > 4:
                    Bn = bj[n]
                    Cn = cj[n]
                else:
                    Bn = bs[T - 1 - jj][n]
                    Cn = cs[T - 1 - jj][n]
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
                if WARP_RED:  # per-lane partial sums, reduced below for all states at once
                    gBs = gBs + (dh * dlu,)
                    gCs = gCs + (h * dy,)
                else:
                    gB, gC = tl.sum(dh * dlu, axis=0), tl.sum(h * dy, axis=0)
                    if N <= 4:
                        red = red + ((off, valid, gB, gC),)
                    else:
                        gBs = gBs + (gB,)
                        gCs = gCs + (gC,)
            if N > 4:
                if jj < T - 1:  # the next step's B and C, issued before this step's atomics
                    i_n = i0 + (T - 2 - jj)
                    nbc = (_step_states(B_p, s_n, bo, bi, o, i_n, i_n < I, N, EVEN),
                           _step_states(C_p, s_n, bo, bi, o, i_n, i_n < I, N, EVEN))
                if WARP_RED:  # slots 0-15: B's states (zero past N), 16-31: C's; lane l adds slot l
                    vals = gBs
                    for n in tl.static_range(N, 16):
                        vals = vals + (zero,)
                    vals = vals + gCs
                    for n in tl.static_range(N, 16):
                        vals = vals + (zero,)
                    lane = tl.arange(0, BLOCK_E) % 32
                    sn = lane % 16
                    p = tl.where(lane < 16, dB_p, dC_p) + (sn * s_n + o * bo + i * bi)
                    tl.atomic_add(p, _warp_reduce_scatter(vals, lane), mask=(sn < N) & valid, sem="relaxed")
                else:
                    for n in tl.static_range(N):
                        off = n * s_n + o * bo + i * bi
                        tl.atomic_add(dB_p + off, gBs[n], mask=valid, sem="relaxed")
                        tl.atomic_add(dC_p + off, gCs[n], mask=valid, sem="relaxed")
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
def scan_bwd_kernel(
    x_ptr, d_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr, du_ptr, dd_ptr, dA_ptr, dB_ptr, dC_ptr,
    dD_ptr, dbias_ptr,
    sx_b, sx_k, sx_e, sx_h, sx_w, sd_b, sd_k, sd_e, sd_h, sd_w, sbc_b, sbc_k, sbc_n, sbc_h, sbc_w,
    sy_b, sy_k, sy_e, sy_h, sy_w, sg_b, sg_k, sg_e, sg_h, sg_w,
    E, H, W, NCMAX, n_eb,
    N: tl.constexpr, BLOCK_E: tl.constexpr, CROSS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, EVEN: tl.constexpr, I64: tl.constexpr,
    WARP_RED: tl.constexpr,
):
    """Backward of :func:`scan_fwd_kernel`, same grid.  du is laid out like y (strides sy_*), ddelta like
    delta, dB/dC (float32) like B/C and dy has its own strides (sg_*); dA, dD and dbias are summed per program
    and added once.  WARP_RED (4 < N <= 16, compiled kernels only: it uses PTX warp shuffles): a step's B and C
    gradients, all states, in one warp reduce-scatter and one atomic instruction."""
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
                              ui, sbc_n, e, E, emask, O, I, A2, Dv, bias, N, BLOCK_E, SOFTPLUS, HAS_D, HAS_BIAS,
                              EVEN, I64, WARP_RED)
    for n in tl.static_range(N):
        tl.atomic_add(dA_ptr + ch * N + n, dA[n], mask=emask, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + ch, dD, mask=emask, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias, mask=emask, sem="relaxed")


@triton.jit
def sum4_kernel(y_ptr, out_ptr, E, H, W, total, so_b, so_e, so_h, so_w, BLOCK: tl.constexpr):
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
