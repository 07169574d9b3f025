"""Triton selective-scan kernels: forward and backward, and VMamba's cross-scan / cross-merge around them.

One kernel pair scans "streams": a stream is one ``(batch, group)`` pair of a ``(B, G, E, L)`` layout, scanned
forwards or, with ``REV``, backwards.  Chunks are always loaded at ascending addresses (``REV`` takes them from the
end and scans each with ``reverse=True``), so Triton can prove contiguity and vectorise the loads and the
in-thread part of the scan (``bench/sass_stats.py``: ~1.5x fewer SASS instructions per element than descending
addresses).  Per program: one stream and
``BLOCK_E`` channels.  Time is cut into chunks of ``T`` steps; for each state ``n`` a chunk is a
``(BLOCK_E, T)`` register tile solved with ``tl.associative_scan`` on the pairs ``(a, b)`` of
``h_t = a_t h_{t-1} + b_t`` and joined to the carried state.  The tile's fast axis is the position axis, which
is contiguous in memory, so every load is coalesced.  State and arithmetic are float32 whatever the input
dtype; softplus(delta + delta_bias) and the D skip are fused.  The forward saves each chunk's starting state
(``N`` floats per channel and chunk) when a gradient is needed; the backward walks the chunks in reverse,
recomputes the chunk's states from the saved start and runs the adjoint ``dh_t = C_t dy_t + a_{t+1} dh_{t+1}``
as a reverse scan: memory stays linear in the length.  Gradients of B and C (shared by a group's channels) go
through float32 atomics; those of A, D and delta_bias are summed per program and added once.

Two entry points:

- :func:`selective_scan_triton` (plain): ``u, delta (B, G*E, L)``, ``B, C (B, G, N, L)``: one launch, every
  group scanned forwards.
- :func:`cross_selective_scan_triton` (SS2D): the map ``x (B, E, H, W)`` is read in place by the two row
  directions (k0 forwards, k2 backwards) and from one transposed copy by the two column directions (k1, k3):
  two layouts instead of VMamba's four materialised sequences.  Each direction writes its output in the layout
  it read (no flips); a small merge kernel sums the four onto the grid in float32 (it transposes the column
  half on the fly) and serves the backward's input gradient too.

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
CHUNK = 8  # steps per chunk: one 16-byte vector of a 16-bit input per thread
T = tl.constexpr(CHUNK)


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
def _delta(raw, bias, valid, SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Step sizes of a (BLOCK_E, T) chunk, 0 at padding positions (so that a padding step is the identity)."""
    if HAS_BIAS:
        raw = raw + bias[:, None]
    if SOFTPLUS:
        raw = _softplus(raw)
    return tl.where(valid[None, :], raw, 0.0)


@triton.jit
def _chunk(c, L, REV: tl.constexpr):
    """Memory positions of scan chunk c, always ascending (so loads vectorise); for REV the chunks are taken
    from the end and walked backwards.  Positions outside [0, L) are masked."""
    if REV:
        pos = L - (c + 1) * T + tl.arange(0, T)
    else:
        pos = c * T + tl.arange(0, T)
    return pos, (pos >= 0) & (pos < L)


@triton.jit
def _unpack(x):
    """The T = 8 columns of an (R, 8) tile (free when the 8 sit in one thread: register renaming)."""
    R: tl.constexpr = x.shape[0]
    ev, od = tl.split(tl.reshape(x, (R, 4, 2)))
    e0, e1 = tl.split(tl.reshape(ev, (R, 2, 2)))
    o0, o1 = tl.split(tl.reshape(od, (R, 2, 2)))
    c0, c4 = tl.split(e0)
    c2, c6 = tl.split(e1)
    c1, c5 = tl.split(o0)
    c3, c7 = tl.split(o1)
    return c0, c1, c2, c3, c4, c5, c6, c7


@triton.jit
def _pack(c0, c1, c2, c3, c4, c5, c6, c7):
    """Inverse of :func:`_unpack`: eight (R,) columns -> an (R, 8) tile."""
    ev = tl.join(tl.join(c0, c4), tl.join(c2, c6))
    od = tl.join(tl.join(c1, c5), tl.join(c3, c7))
    t = tl.join(ev, od)  # (R, 2, 2, 2): t[r, i, j, l] = column 4i + 2j + l, so row-major order is column order
    return tl.reshape(t, (t.shape[0], 8))


@triton.jit
def _base(p0, p1, s0b, s0g, s1b, s1g, b, k, CROSS: tl.constexpr):
    """Address of stream k's operand for batch b: side 0 (grid order, slot k) or, for SS2D's column directions
    (odd k), side 1 (the column-major copy, slot k // 2)."""
    p = p0 + b * s0b + k * s0g
    if CROSS:
        if k % 2 == 1:
            p = p1 + b * s1b + (k // 2) * s1g
    return p


@triton.jit
def _program(A_ptr, D_ptr, bias_ptr, E, n_eb, N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr,
             HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """This program's batch b (int64), stream k, stream count K, channel block e and its mask, parameter rows,
    and the block's parameters: A * log2(e) (BLOCK_E, NP), D and delta_bias (BLOCK_E,; zeros where absent)."""
    pid = tl.program_id(0)
    k = tl.program_id(1)
    b = (pid // n_eb).to(tl.int64)
    e = (pid % n_eb) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    nn = tl.arange(0, NP)
    ch = k * E + e
    A = tl.load(A_ptr + ch[:, None] * N + nn[None, :], mask=emask[:, None] & (nn < N)[None, :], other=0.0)
    Dv = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=emask, other=0.0)
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=emask, other=0.0)
    return b, k, tl.num_programs(1), e, emask, ch, A * LOG2E, Dv, bias


@triton.jit
def _load(u_p, d_p, B_p, C_p, rows, emask, c, L, NP: tl.constexpr, N: tl.constexpr, REV: tl.constexpr):
    """Chunk c's tiles: u and raw delta (BLOCK_E, T), B and C (NP, T), their positions and validity."""
    pos, valid = _chunk(c, L, REV)
    m2 = emask[:, None] & valid[None, :]
    nn = tl.arange(0, NP)
    mn = (nn < N)[:, None] & valid[None, :]
    u = tl.load(u_p + rows[:, None] + pos[None, :], mask=m2, other=0.0)
    dl = tl.load(d_p + rows[:, None] + pos[None, :], mask=m2, other=0.0)
    Bt = tl.load(B_p + nn[:, None] * L + pos[None, :], mask=mn, other=0.0)
    Ct = tl.load(C_p + nn[:, None] * L + pos[None, :], mask=mn, other=0.0)
    return u, dl, Bt, Ct, pos, valid, m2


@triton.jit
def _step(h, u, dl, Bc, Cc, A2, Dv, HAS_D: tl.constexpr):
    """One scan step for a block of channels: h <- exp(dl A) h + dl u B;  y = C . h (+ D u)."""
    h = tl.exp2(dl[:, None] * A2) * h + (dl * u)[:, None] * Bc[None, :]
    y = tl.sum(h * Cc[None, :], axis=1)
    if HAS_D:
        y += Dv * u
    return h, y


@triton.jit
def _fwd_body(u_p, d_p, B_p, C_p, y_p, hs_p, rows, emask, A2, Dv, bias, L, NC,
              N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, REV: tl.constexpr,
              SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE: tl.constexpr):
    nn = tl.arange(0, NP)
    h = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    # software pipelining by hand: the next chunk's loads are issued before this chunk is computed (chunk NC
    # is fully masked, so the last prefetch touches no memory)
    nxt = _load(u_p, d_p, B_p, C_p, rows, emask, 0, L, NP, N, REV)
    for c in range(NC):
        u, dl, Bt, Ct, pos, valid, m2 = nxt
        nxt = _load(u_p, d_p, B_p, C_p, rows, emask, c + 1, L, NP, N, REV)
        u = u.to(tl.float32)
        dl = _delta(dl.to(tl.float32), bias, valid, SOFTPLUS, HAS_BIAS)
        if SAVE:  # the chunk's starting state, for the backward
            tl.store(hs_p + c * N + nn[None, :], h, mask=emask[:, None] & (nn < N)[None, :])
        u0, u1, u2, u3, u4, u5, u6, u7 = _unpack(u)
        d0, d1, d2, d3, d4, d5, d6, d7 = _unpack(dl)
        B0, B1, B2, B3, B4, B5, B6, B7 = _unpack(Bt.to(tl.float32))
        C0, C1, C2, C3, C4, C5, C6, C7 = _unpack(Ct.to(tl.float32))
        if REV:
            h, y7 = _step(h, u7, d7, B7, C7, A2, Dv, HAS_D)
            h, y6 = _step(h, u6, d6, B6, C6, A2, Dv, HAS_D)
            h, y5 = _step(h, u5, d5, B5, C5, A2, Dv, HAS_D)
            h, y4 = _step(h, u4, d4, B4, C4, A2, Dv, HAS_D)
            h, y3 = _step(h, u3, d3, B3, C3, A2, Dv, HAS_D)
            h, y2 = _step(h, u2, d2, B2, C2, A2, Dv, HAS_D)
            h, y1 = _step(h, u1, d1, B1, C1, A2, Dv, HAS_D)
            h, y0 = _step(h, u0, d0, B0, C0, A2, Dv, HAS_D)
        else:
            h, y0 = _step(h, u0, d0, B0, C0, A2, Dv, HAS_D)
            h, y1 = _step(h, u1, d1, B1, C1, A2, Dv, HAS_D)
            h, y2 = _step(h, u2, d2, B2, C2, A2, Dv, HAS_D)
            h, y3 = _step(h, u3, d3, B3, C3, A2, Dv, HAS_D)
            h, y4 = _step(h, u4, d4, B4, C4, A2, Dv, HAS_D)
            h, y5 = _step(h, u5, d5, B5, C5, A2, Dv, HAS_D)
            h, y6 = _step(h, u6, d6, B6, C6, A2, Dv, HAS_D)
            h, y7 = _step(h, u7, d7, B7, C7, A2, Dv, HAS_D)
        y = _pack(y0, y1, y2, y3, y4, y5, y6, y7)
        tl.store(y_p + rows[:, None] + pos[None, :], y.to(y_p.dtype.element_ty), mask=m2)


@triton.jit
def _scan_fwd_kernel(
    u_ptr, u2_ptr, d_ptr, d2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, A_ptr, D_ptr, bias_ptr, y_ptr, hs_ptr,
    su_b, su_g, su2_b, su2_g, sd_b, sd_g, sd2_b, sd2_g, sbc_b, sbc_g, sbc2_b, sbc2_g, sy_b, sy_g,
    E, L, NC, n_eb,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, CROSS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE: tl.constexpr,
):
    """Grid (batch x channel blocks, streams).  Each thread owns one channel and walks its stream sequentially,
    T steps per chunk; SS2D's four directions (CROSS) run in the same launch: k >= 2 backwards."""
    b, k, K, e, emask, ch, A2, Dv, bias = _program(A_ptr, D_ptr, bias_ptr, E, n_eb, N, NP, BLOCK_E, HAS_D, HAS_BIAS)
    rows = e.to(tl.int64) * L
    u_p = _base(u_ptr, u2_ptr, su_b, su_g, su2_b, su2_g, b, k, CROSS)
    d_p = _base(d_ptr, d2_ptr, sd_b, sd_g, sd2_b, sd2_g, b, k, CROSS)
    B_p = _base(B_ptr, B2_ptr, sbc_b, sbc_g, sbc2_b, sbc2_g, b, k, CROSS)
    C_p = _base(C_ptr, C2_ptr, sbc_b, sbc_g, sbc2_b, sbc2_g, b, k, CROSS)
    y_p = y_ptr + b * sy_b + k * sy_g
    hs_p = hs_ptr + (((b * K + k) * E + e) * NC * N)[:, None]  # (B, K, E, NC, N)
    if CROSS:
        if k >= 2:
            _fwd_body(u_p, d_p, B_p, C_p, y_p, hs_p, rows, emask, A2, Dv, bias, L, NC, N, NP, BLOCK_E, True,
                      SOFTPLUS, HAS_D, HAS_BIAS, SAVE)
        else:
            _fwd_body(u_p, d_p, B_p, C_p, y_p, hs_p, rows, emask, A2, Dv, bias, L, NC, N, NP, BLOCK_E, False,
                      SOFTPLUS, HAS_D, HAS_BIAS, SAVE)
    else:
        _fwd_body(u_p, d_p, B_p, C_p, y_p, hs_p, rows, emask, A2, Dv, bias, L, NC, N, NP, BLOCK_E, False,
                  SOFTPLUS, HAS_D, HAS_BIAS, SAVE)


@triton.jit
def _advance(h, u, dl, Bc, A2):
    return tl.exp2(dl[:, None] * A2) * h + (dl * u)[:, None] * Bc[None, :]


@triton.jit
def _bstep(q, dA, hp, u, dl, dy, Bc, Cc, A2):
    """Adjoint of one step, walked against the scan order.  ``q = a_{t+1} dh_{t+1}`` enters from the later
    step and leaves as ``a_t dh_t``; ``hp`` is the state before the step.  Returns the new q and dA
    accumulator, this step's d(delta) (before softplus'), du (without the D term) and dB, dC (summed over the
    block's channels)."""
    a = tl.exp2(dl[:, None] * A2)
    dlu = (dl * u)[:, None]
    h = a * hp + dlu * Bc[None, :]
    dh = dy[:, None] * Cc[None, :] + q
    q = a * dh
    qh = q * hp  # dh_t a_t h_{t-1}
    dA += qh * dl[:, None]
    s = tl.sum(dh * Bc[None, :], axis=1)
    ddl = u * s + tl.sum(qh * (A2 / LOG2E), axis=1)
    return q, dA, ddl, dl * s, tl.sum(dh * dlu, axis=0), tl.sum(h * dy[:, None], axis=0)


@triton.jit
def _bwd_body(u_p, d_p, B_p, C_p, dy_p, du_p, dd_p, dB_p, dC_p, hs_p, rows, emask, A2, Dv, bias, L, NC,
              N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, REV: tl.constexpr,
              SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Chunks in reverse scan order; each recomputes its states from the saved start, then walks the adjoint
    back through them.  Returns the block's dA (BLOCK_E, NP), dD and dbias (BLOCK_E,) sums."""
    nn = tl.arange(0, NP)
    nmask = nn < N
    q = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    dA = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    dD = tl.zeros((BLOCK_E,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    nxt = _load(u_p, d_p, B_p, C_p, rows, emask, NC - 1, L, NP, N, REV)
    nxt_dy = tl.load(dy_p + rows[:, None] + nxt[4][None, :], mask=nxt[6], other=0.0)
    for cc in range(NC):
        c = NC - 1 - cc
        u, dl_raw, Bt, Ct, pos, valid, m2 = nxt
        dy = nxt_dy
        nxt = _load(u_p, d_p, B_p, C_p, rows, emask, c - 1, L, NP, N, REV)
        nxt_dy = tl.load(dy_p + rows[:, None] + nxt[4][None, :], mask=nxt[6], other=0.0)
        u, dy, dl_raw = u.to(tl.float32), dy.to(tl.float32), dl_raw.to(tl.float32)
        dl = _delta(dl_raw, bias, valid, SOFTPLUS, HAS_BIAS)
        h0 = tl.load(hs_p + c * N + nn[None, :], mask=emask[:, None] & nmask[None, :], other=0.0)
        u0, u1, u2, u3, u4, u5, u6, u7 = _unpack(u)
        d0, d1, d2, d3, d4, d5, d6, d7 = _unpack(dl)
        g0, g1, g2, g3, g4, g5, g6, g7 = _unpack(dy)
        B0, B1, B2, B3, B4, B5, B6, B7 = _unpack(Bt.to(tl.float32))
        C0, C1, C2, C3, C4, C5, C6, C7 = _unpack(Ct.to(tl.float32))
        if REV:  # scan order 7 -> 0: recompute the states before each step, then the adjoint 0 -> 7
            p7 = h0
            p6 = _advance(p7, u7, d7, B7, A2)
            p5 = _advance(p6, u6, d6, B6, A2)
            p4 = _advance(p5, u5, d5, B5, A2)
            p3 = _advance(p4, u4, d4, B4, A2)
            p2 = _advance(p3, u3, d3, B3, A2)
            p1 = _advance(p2, u2, d2, B2, A2)
            p0 = _advance(p1, u1, d1, B1, A2)
            q, dA, e0, f0, b0, k0 = _bstep(q, dA, p0, u0, d0, g0, B0, C0, A2)
            q, dA, e1, f1, b1, k1 = _bstep(q, dA, p1, u1, d1, g1, B1, C1, A2)
            q, dA, e2, f2, b2, k2 = _bstep(q, dA, p2, u2, d2, g2, B2, C2, A2)
            q, dA, e3, f3, b3, k3 = _bstep(q, dA, p3, u3, d3, g3, B3, C3, A2)
            q, dA, e4, f4, b4, k4 = _bstep(q, dA, p4, u4, d4, g4, B4, C4, A2)
            q, dA, e5, f5, b5, k5 = _bstep(q, dA, p5, u5, d5, g5, B5, C5, A2)
            q, dA, e6, f6, b6, k6 = _bstep(q, dA, p6, u6, d6, g6, B6, C6, A2)
            q, dA, e7, f7, b7, k7 = _bstep(q, dA, p7, u7, d7, g7, B7, C7, A2)
        else:
            p0 = h0
            p1 = _advance(p0, u0, d0, B0, A2)
            p2 = _advance(p1, u1, d1, B1, A2)
            p3 = _advance(p2, u2, d2, B2, A2)
            p4 = _advance(p3, u3, d3, B3, A2)
            p5 = _advance(p4, u4, d4, B4, A2)
            p6 = _advance(p5, u5, d5, B5, A2)
            p7 = _advance(p6, u6, d6, B6, A2)
            q, dA, e7, f7, b7, k7 = _bstep(q, dA, p7, u7, d7, g7, B7, C7, A2)
            q, dA, e6, f6, b6, k6 = _bstep(q, dA, p6, u6, d6, g6, B6, C6, A2)
            q, dA, e5, f5, b5, k5 = _bstep(q, dA, p5, u5, d5, g5, B5, C5, A2)
            q, dA, e4, f4, b4, k4 = _bstep(q, dA, p4, u4, d4, g4, B4, C4, A2)
            q, dA, e3, f3, b3, k3 = _bstep(q, dA, p3, u3, d3, g3, B3, C3, A2)
            q, dA, e2, f2, b2, k2 = _bstep(q, dA, p2, u2, d2, g2, B2, C2, A2)
            q, dA, e1, f1, b1, k1 = _bstep(q, dA, p1, u1, d1, g1, B1, C1, A2)
            q, dA, e0, f0, b0, k0 = _bstep(q, dA, p0, u0, d0, g0, B0, C0, A2)
        ddl = _pack(e0, e1, e2, e3, e4, e5, e6, e7)
        du = _pack(f0, f1, f2, f3, f4, f5, f6, f7)
        if HAS_D:
            du += Dv[:, None] * dy
            dD += tl.sum(dy * u, axis=1)
        if SOFTPLUS:  # softplus' = sigmoid
            ddl = tl.fdiv(ddl, 1.0 + tl.exp2(-(dl_raw + bias[:, None]) * LOG2E))
        ddl = tl.where(m2, ddl, 0.0)
        dbias += tl.sum(ddl, axis=1)
        tl.store(dd_p + rows[:, None] + pos[None, :], ddl.to(dd_p.dtype.element_ty), mask=m2)
        tl.store(du_p + rows[:, None] + pos[None, :], du.to(du_p.dtype.element_ty), mask=m2)
        mn = nmask[:, None] & valid[None, :]
        tl.atomic_add(dB_p + nn[:, None] * L + pos[None, :], _pack(b0, b1, b2, b3, b4, b5, b6, b7), mask=mn)
        tl.atomic_add(dC_p + nn[:, None] * L + pos[None, :], _pack(k0, k1, k2, k3, k4, k5, k6, k7), mask=mn)
    return dA, dD, dbias


@triton.jit
def _scan_bwd_kernel(
    u_ptr, u2_ptr, d_ptr, d2_ptr, B_ptr, B2_ptr, C_ptr, C2_ptr, A_ptr, D_ptr, bias_ptr, hs_ptr,
    dy_ptr, dy2_ptr, du_ptr, dd_ptr, dd2_ptr, dA_ptr, dB_ptr, dB2_ptr, dC_ptr, dC2_ptr, dD_ptr, dbias_ptr,
    su_b, su_g, su2_b, su2_g, sd_b, sd_g, sd2_b, sd2_g, sbc_b, sbc_g, sbc2_b, sbc2_g, sy_b, sy_g,
    sdy_b, sdy_g, sdy2_b, sdy2_g,
    E, L, NC, n_eb,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, CROSS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """Backward of :func:`_scan_fwd_kernel`, same grid.  du is laid out like y, ddelta like delta and dB/dC
    (float32) like B/C; dA, dD and dbias are summed per program and added once."""
    b, k, K, e, emask, ch, A2, Dv, bias = _program(A_ptr, D_ptr, bias_ptr, E, n_eb, N, NP, BLOCK_E, HAS_D, HAS_BIAS)
    rows = e.to(tl.int64) * L
    u_p = _base(u_ptr, u2_ptr, su_b, su_g, su2_b, su2_g, b, k, CROSS)
    d_p = _base(d_ptr, d2_ptr, sd_b, sd_g, sd2_b, sd2_g, b, k, CROSS)
    dd_p = _base(dd_ptr, dd2_ptr, sd_b, sd_g, sd2_b, sd2_g, b, k, CROSS)
    B_p = _base(B_ptr, B2_ptr, sbc_b, sbc_g, sbc2_b, sbc2_g, b, k, CROSS)
    C_p = _base(C_ptr, C2_ptr, sbc_b, sbc_g, sbc2_b, sbc2_g, b, k, CROSS)
    dB_p = _base(dB_ptr, dB2_ptr, sbc_b, sbc_g, sbc2_b, sbc2_g, b, k, CROSS)
    dC_p = _base(dC_ptr, dC2_ptr, sbc_b, sbc_g, sbc2_b, sbc2_g, b, k, CROSS)
    dy_p = _base(dy_ptr, dy2_ptr, sdy_b, sdy_g, sdy2_b, sdy2_g, b, k, CROSS)
    du_p = du_ptr + b * sy_b + k * sy_g
    hs_p = hs_ptr + (((b * K + k) * E + e) * NC * N)[:, None]
    if CROSS:
        if k >= 2:
            dA, dD, dbias = _bwd_body(u_p, d_p, B_p, C_p, dy_p, du_p, dd_p, dB_p, dC_p, hs_p, rows, emask, A2, Dv,
                                      bias, L, NC, N, NP, BLOCK_E, True, SOFTPLUS, HAS_D, HAS_BIAS)
        else:
            dA, dD, dbias = _bwd_body(u_p, d_p, B_p, C_p, dy_p, du_p, dd_p, dB_p, dC_p, hs_p, rows, emask, A2, Dv,
                                      bias, L, NC, N, NP, BLOCK_E, False, SOFTPLUS, HAS_D, HAS_BIAS)
    else:
        dA, dD, dbias = _bwd_body(u_p, d_p, B_p, C_p, dy_p, du_p, dd_p, dB_p, dC_p, hs_p, rows, emask, A2, Dv,
                                  bias, L, NC, N, NP, BLOCK_E, False, SOFTPLUS, HAS_D, HAS_BIAS)
    nn = tl.arange(0, NP)
    tl.atomic_add(dA_ptr + ch[:, None] * N + nn[None, :], dA, mask=emask[:, None] & (nn < N)[None, :])
    if HAS_D:
        tl.atomic_add(dD_ptr + ch, dD, mask=emask)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias, mask=emask)


@triton.jit
def _merge_kernel(y_ptr, out_ptr, E, H, W, n_tw, TH: tl.constexpr, TW: tl.constexpr):
    """out[b, e, h, w] = y0[h, w] + y2[h, w] + y1[w, h] + y3[w, h] for y ``(B, 4, E, L)`` (odd k column-major),
    summed in float32.  One program per (batch * channel, tile of TH x TW grid cells)."""
    be = tl.program_id(0).to(tl.int64)
    pid = tl.program_id(1)
    th = (pid // n_tw) * TH + tl.arange(0, TH)
    tw = (pid % n_tw) * TW + tl.arange(0, TW)
    L = H * W
    k_stride = E * L
    base = ((be // E) * 4 * E + be % E) * L  # direction 0 of this (batch, channel)
    m = (th < H)[:, None] & (tw < W)[None, :]
    rows = th[:, None] * W + tw[None, :]
    acc = tl.load(y_ptr + base + rows, mask=m, other=0.0).to(tl.float32)
    acc += tl.load(y_ptr + base + 2 * k_stride + rows, mask=m, other=0.0).to(tl.float32)
    cols = tw[:, None] * H + th[None, :]  # a (TW, TH) tile: contiguous along h for the column-major directions
    mt = (tw < W)[:, None] & (th < H)[None, :]
    ct = tl.load(y_ptr + base + k_stride + cols, mask=mt, other=0.0).to(tl.float32)
    ct += tl.load(y_ptr + base + 3 * k_stride + cols, mask=mt, other=0.0).to(tl.float32)
    acc += tl.trans(ct)
    tl.store(out_ptr + be * L + rows, acc.to(out_ptr.dtype.element_ty), mask=m)


# ---------------------------------------------------------------------------------------------- launch


_CONFIG_OVERRIDE: dict[str, int] | None = None  # {"fwd"|"bwd": num_warps}, for sweeps


def _config(kind: str, state: int, channels: int) -> tuple[int, int]:
    """(BLOCK_E, num_warps): one channel per thread, so a program covers 32 channels per warp."""
    if _CONFIG_OVERRIDE is not None and kind in _CONFIG_OVERRIDE:
        warps = _CONFIG_OVERRIDE[kind]
    else:
        warps = 1  # the most programs, for the few channels of a small batch
    return 32 * warps, warps


def _sg(t: torch.Tensor) -> tuple[int, int]:
    """Batch and group strides of a (B, G, rows, L) operand whose rows are contiguous with stride L."""
    if t.stride(3) != 1 or t.stride(2) != t.shape[3]:
        raise ValueError(f"internal: rows must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")
    return t.stride(0), t.stride(1)


def _pair(p: tuple[torch.Tensor, torch.Tensor]) -> tuple:
    """A kernel operand: side 0 and side 1 tensors, then their (batch, group) strides."""
    return (*p, *_sg(p[0]), *_sg(p[1]))


class _Streams:
    """The operands of one launch, each a pair (side 0, side 1) of ``(B, G, rows, L)`` views: plain mode scans
    the G groups of side 0 forwards (side 1 repeats side 0); cross mode scans SS2D's four directions, k0/k2
    (rows) from side 0 slot k and k1/k3 (columns) from side 1 slot k // 2, with k >= 2 backwards."""

    def __init__(self, u, delta, B, C, cross: bool, n_streams: int):
        self.u, self.delta, self.B, self.C, self.cross, self.K = u, delta, B, C, cross, n_streams

    def flags(self, A, D, bias, softplus):
        N = A.shape[1]
        return dict(N=N, NP=triton.next_power_of_2(N), CROSS=self.cross, SOFTPLUS=softplus,
                    HAS_D=D is not None, HAS_BIAS=bias is not None)


def _fwd(s: _Streams, y: torch.Tensor, A, D, bias, softplus: bool, save: bool):
    """Run the forward into ``y`` ((B, K, E, L), stream-major); returns the saved chunk states (or None)."""
    batch, _, E, L = s.delta[0].shape
    be, warps = _config("fwd", A.shape[1], E)
    NC, n_eb = triton.cdiv(L, CHUNK), triton.cdiv(E, be)
    hs = torch.empty(batch, s.K, E, NC, A.shape[1], device=A.device, dtype=torch.float32) if save else None
    _scan_fwd_kernel[(batch * n_eb, s.K)](
        s.u[0], s.u[1], s.delta[0], s.delta[1], s.B[0], s.B[1], s.C[0], s.C[1],
        A, A if D is None else D, A if bias is None else bias, y, hs if save else A,
        *_sg(s.u[0]), *_sg(s.u[1]), *_sg(s.delta[0]), *_sg(s.delta[1]), *_sg(s.B[0]), *_sg(s.B[1]), *_sg(y),
        E, L, NC, n_eb, BLOCK_E=be, SAVE=save, num_warps=warps, **s.flags(A, D, bias, softplus),
    )
    return hs


def _bwd(s: _Streams, dy, du, ddelta, dB, dC, A, D, bias, hs, softplus: bool):
    """Backward of :func:`_fwd`: dy a pair like u (any batch/group strides), du like y, ddelta a pair laid out
    like delta, dB/dC (float32) pairs like B/C; returns dA, dD, dbias (float32, None where D / bias are absent)."""
    batch, _, E, L = s.delta[0].shape
    be, warps = _config("bwd", A.shape[1], E)
    NC, n_eb = triton.cdiv(L, CHUNK), triton.cdiv(E, be)
    for g, ref in ((ddelta, s.delta), (dB, s.B), (dC, s.C)):
        if any(_sg(g[i]) != _sg(ref[i]) for i in (0, 1)):
            raise ValueError("internal: gradient buffers must be laid out like their inputs")
    dA = torch.zeros_like(A)
    dD = torch.zeros(A.shape[0], device=A.device, dtype=torch.float32)
    dbias = torch.zeros_like(dD)
    _scan_bwd_kernel[(batch * n_eb, s.K)](
        s.u[0], s.u[1], s.delta[0], s.delta[1], s.B[0], s.B[1], s.C[0], s.C[1],
        A, A if D is None else D, A if bias is None else bias, hs,
        dy[0], dy[1], du, ddelta[0], ddelta[1], dA, dB[0], dB[1], dC[0], dC[1], dD, dbias,
        *_sg(s.u[0]), *_sg(s.u[1]), *_sg(s.delta[0]), *_sg(s.delta[1]), *_sg(s.B[0]), *_sg(s.B[1]), *_sg(du),
        *_sg(dy[0]), *_sg(dy[1]),
        E, L, NC, n_eb, BLOCK_E=be, num_warps=warps, **s.flags(A, D, bias, softplus),
    )
    return dA, (dD if D is not None else None), (dbias if bias is not None else None)


def _merge(y4: torch.Tensor, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 4, E, L) per-direction outputs (odd directions column-major) -> (B, E, H, W) in ``dtype``."""
    batch, _, E, _ = y4.shape
    out = torch.empty(batch, E, h, w, device=y4.device, dtype=dtype)
    TH, TW = min(32, triton.next_power_of_2(h)), min(32, triton.next_power_of_2(w))
    n_tw = triton.cdiv(w, TW)
    _merge_kernel[(batch * E, triton.cdiv(h, TH) * n_tw)](y4, out, E, h, w, n_tw, TH=TH, TW=TW, num_warps=4)
    return out


def _t(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> contiguous (..., W, H)."""
    return x.transpose(-1, -2).contiguous()


def _split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid (B, 4, R, H, W) -> (B, 4, R, L) with rows in grid order, and the odd directions' (B, 2, R, L)
    column-major copy."""
    b, _, r, h, w = t.shape
    return t.reshape(b, 4, r, h * w), _t(t[:, 1::2]).view(b, 2, r, h * w)


def _shared(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, E, H, W), read by all four directions: in place (rows) and one transposed copy (columns), as
    (B, 4, E, L) / (B, 2, E, L) views with a zero group stride."""
    b, E, h, w = x.shape
    L = h * w
    return x.reshape(b, 1, E, L).expand(b, 4, E, L), _t(x).view(b, 1, E, L).expand(b, 2, E, L)


def _cross_fwd(x, delta, A, B, C, D, bias, softplus: bool, save: bool):
    b, E, h, w = x.shape
    s = _Streams(_shared(x), _split(delta), _split(B), _split(C), cross=True, n_streams=4)
    y4 = torch.empty(b, 4, E, h * w, device=x.device, dtype=x.dtype)
    hs = _fwd(s, y4, A, D, bias, softplus, save)
    return _merge(y4, h, w, x.dtype), hs


def _cross_bwd(dy, x, delta, A, B, C, D, bias, hs, softplus: bool):
    b, E, h, w = x.shape
    N, L = A.shape[1], h * w
    s = _Streams(_shared(x), _split(delta), _split(B), _split(C), cross=True, n_streams=4)
    du4 = torch.empty(b, 4, E, L, device=x.device, dtype=x.dtype)
    new = lambda rows, dt, fill: tuple(  # noqa: E731  (grid-order and column-major gradient buffers)
        (torch.zeros if fill else torch.empty)(b, k, rows, L, device=x.device, dtype=dt) for k in (4, 2)
    )
    dd, dBp, dCp = new(E, delta.dtype, False), new(N, torch.float32, True), new(N, torch.float32, True)
    dA, dD, dbias = _bwd(s, _shared(dy.to(x.dtype).contiguous()), du4, dd, dBp, dCp, A, D, bias, hs, softplus)

    def to_grid(pair, rows, dtype):  # odd directions back from column-major onto the grid
        g = pair[0].view(b, 4, rows, h, w)
        g[:, 1::2] = pair[1].view(b, 2, rows, w, h).transpose(-1, -2)
        return g.to(dtype)

    return (_merge(du4, h, w, x.dtype), to_grid(dd, E, delta.dtype), dA, to_grid(dBp, N, B.dtype),
            to_grid(dCp, N, C.dtype), dD, dbias)


def _plain_streams(u, delta, B, C) -> tuple[_Streams, object]:
    b, channels, L = u.shape
    G = B.shape[1]
    v = lambda t: t.view(b, G, channels // G, L)  # noqa: E731
    return _Streams((v(u), v(u)), (v(delta), v(delta)), (B, B), (C, C), cross=False, n_streams=G), v


def _plain_fwd(u, delta, A, B, C, D, bias, softplus: bool, save: bool):
    s, v = _plain_streams(u, delta, B, C)
    y = torch.empty_like(u)
    hs = _fwd(s, v(y), A, D, bias, softplus, save)
    return y, hs


def _plain_bwd(dy, u, delta, A, B, C, D, bias, hs, softplus: bool):
    s, v = _plain_streams(u, delta, B, C)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dB = torch.zeros(B.shape, device=u.device, dtype=torch.float32)
    dC = torch.zeros_like(dB)
    dyv = v(dy.to(u.dtype).contiguous())
    dA, dD, dbias = _bwd(s, (dyv, dyv), v(du), (v(ddelta), v(ddelta)), (dB, dB), (dC, dC), A, D, bias, hs, softplus)
    return du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias


# Custom operators, so that torch.compile and CUDA graphs see one opaque node per scan (no graph break) with
# a shape function, and autograd calls the backward kernel.  ``cross`` picks SS2D's four-direction mode
# (x: (B, E, H, W)) or the plain grouped scan (u: (B, G*E, L)).  The saved chunk states travel as a second
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
        K, L = 4, h * w
    else:
        b, K, L = u.shape[0], B.shape[1], u.shape[2]
        E = u.shape[1] // K
    hs_shape = (b, K, E, triton.cdiv(L, CHUNK), A.shape[1]) if save else _EMPTY
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
    return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
            torch.empty_like(C), opt(D), opt(bias))


def _setup_context(ctx, inputs, output):
    u, delta, A, B, C, D, bias, softplus, cross, save = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, bias, output[1])
    ctx.flags = (softplus, cross)


def _backward(ctx, dy, _dhs):
    u, delta, A, B, C, D, bias, hs = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dbias = _scan_bwd_op(dy, u, delta, A, B, C, D, bias, hs, *ctx.flags)
    return du, ddelta, dA, dB, dC, (dD if D is not None else None), (dbias if bias is not None else None), None, None, None


torch.library.register_autograd("audiomamba::selective_scan_fwd", _backward, setup_context=_setup_context)


def _scan(u, delta, A, B, C, D, bias, softplus: bool, cross: bool) -> torch.Tensor:
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C, D, bias))
    return _scan_fwd_op(u, delta, A, B, C, D, bias, softplus, cross, save)[0]


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
    return _scan(
        x.contiguous(), delta.contiguous(), _f32(A), B.contiguous(), C.contiguous(), _f32(D), _f32(delta_bias),
        bool(delta_softplus), cross=True,
    )
