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


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) applied first, then (a2, b2):  h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # log1p(exp(x)) without losing small values (Goldberg's log1p trick), linear above 20
    z = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + z
    lp = tl.where(w == 1.0, z, tl.log(w) * z / (w - 1.0))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _column(m, sel):
    """Column ``n`` of a (BLOCK_E, NP) register tile, ``sel = (arange(NP) == n)[None, :]``."""
    return tl.sum(tl.where(sel, m, 0.0), axis=1)


@triton.jit
def _chunk(c, L, T: tl.constexpr, REV: tl.constexpr):
    """Memory positions of scan chunk c, always ascending (so loads vectorise); for REV the chunks are taken
    from the end and scanned with ``reverse=True``.  Positions outside [0, L) are masked."""
    if REV:
        pos = L - (c + 1) * T + tl.arange(0, T)
    else:
        pos = c * T + tl.arange(0, T)
    return pos, (pos >= 0) & (pos < L)


@triton.jit
def _next(pos, valid, L, REV: tl.constexpr):
    """Positions of the next scan step (one lower for REV) and their validity."""
    if REV:
        return pos - 1, valid & (pos >= 1)
    return pos + 1, valid & (pos + 1 < L)


@triton.jit
def _delta(raw, bias, SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr):
    if HAS_BIAS:
        raw = raw + bias[:, None]
    if SOFTPLUS:
        return _softplus(raw)
    return raw


@triton.jit
def _program(A_ptr, D_ptr, bias_ptr, E, n_eb, p0, N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr,
             HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """This program's batch b (int64), group g, group count G, channel block e, its mask and parameter rows,
    and the block's parameters: A (BLOCK_E, NP), D and delta_bias (BLOCK_E,; zeros where absent)."""
    pid = tl.program_id(0)
    g = tl.program_id(1)
    b = (pid // n_eb).to(tl.int64)
    e = (pid % n_eb) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    nn = tl.arange(0, NP)
    ch = p0 + g * E + e
    A = tl.load(A_ptr + ch[:, None] * N + nn[None, :], mask=emask[:, None] & (nn < N)[None, :], other=0.0)
    Dv = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=emask, other=0.0)
    bias = tl.zeros((BLOCK_E,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=emask, other=0.0)
    return b, g, tl.num_programs(1), e, emask, ch, A, Dv, bias


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr, hs_ptr,
    su_b, su_g, sd_b, sd_g, sbc_b, sbc_g, sy_b, sy_g,
    E, L, NC, n_eb, p0,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, REV: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE: tl.constexpr,
):
    b, g, G, e, emask, ch, A, Dv, bias = _program(A_ptr, D_ptr, bias_ptr, E, n_eb, p0, N, NP, BLOCK_E, HAS_D, HAS_BIAS)
    nn = tl.arange(0, NP)
    ts = tl.arange(0, T)
    e64 = e.to(tl.int64) * L
    u_row = b * su_b + g * su_g + e64
    d_row = b * sd_b + g * sd_g + e64
    y_row = b * sy_b + g * sy_g + e64
    bc_base = b * sbc_b + g * sbc_g
    hs_row = ((b * G + g) * E + e) * NC * N  # (B, G, E, NC, N)
    h = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    # Software pipelining by hand: each iteration issues the next chunk's loads before it computes on the
    # current chunk, so the load latency overlaps the scan (chunk NC is fully masked: no memory access).
    nxt_pos, nxt_valid = _chunk(0, L, T, REV)
    nxt_m = emask[:, None] & nxt_valid[None, :]
    nxt_u = tl.load(u_ptr + u_row[:, None] + nxt_pos[None, :], mask=nxt_m, other=0.0)
    nxt_d = tl.load(delta_ptr + d_row[:, None] + nxt_pos[None, :], mask=nxt_m, other=0.0)
    nxt_B = tl.load(B_ptr + bc_base + nxt_pos, mask=nxt_valid, other=0.0)  # state 0's B and C
    nxt_C = tl.load(C_ptr + bc_base + nxt_pos, mask=nxt_valid, other=0.0)
    LAST: tl.constexpr = 0 if REV else T - 1  # where a chunk's final state sits
    for c in range(NC):
        pos, valid, m2 = nxt_pos, nxt_valid, nxt_m
        u, dl, B0, C0 = nxt_u.to(tl.float32), nxt_d.to(tl.float32), nxt_B.to(tl.float32), nxt_C.to(tl.float32)
        nxt_pos, nxt_valid = _chunk(c + 1, L, T, REV)
        nxt_m = emask[:, None] & nxt_valid[None, :]
        nxt_u = tl.load(u_ptr + u_row[:, None] + nxt_pos[None, :], mask=nxt_m, other=0.0)
        nxt_d = tl.load(delta_ptr + d_row[:, None] + nxt_pos[None, :], mask=nxt_m, other=0.0)
        nxt_B = tl.load(B_ptr + bc_base + nxt_pos, mask=nxt_valid, other=0.0)
        nxt_C = tl.load(C_ptr + bc_base + nxt_pos, mask=nxt_valid, other=0.0)
        dl = _delta(dl, bias, SOFTPLUS, HAS_BIAS)
        dlu = dl * u
        if SAVE:
            tl.store(hs_ptr + hs_row[:, None] + c * N + nn[None, :], h, mask=emask[:, None] & (nn < N)[None, :])
        if HAS_D:
            y = Dv[:, None] * u
        else:
            y = tl.zeros((BLOCK_E, T), dtype=tl.float32)
        for n in tl.static_range(N):
            sel = (nn == n)[None, :]
            if n == 0:
                Bn, Cn = B0, C0
            else:
                Bn = tl.load(B_ptr + bc_base + n * L + pos, mask=valid, other=0.0).to(tl.float32)
                Cn = tl.load(C_ptr + bc_base + n * L + pos, mask=valid, other=0.0).to(tl.float32)
            a = tl.where(valid[None, :], tl.exp(dl * _column(A, sel)[:, None]), 1.0)  # padding: identity
            bb = tl.where(valid[None, :], dlu * Bn[None, :], 0.0)
            sa, sb = tl.associative_scan((a, bb), axis=1, combine_fn=_combine, reverse=REV)
            hh = sa * _column(h, sel)[:, None] + sb
            y += hh * Cn[None, :]
            h = tl.where(sel, tl.sum(tl.where((ts == LAST)[None, :], hh, 0.0), axis=1)[:, None], h)
        tl.store(y_ptr + y_row[:, None] + pos[None, :], y.to(y_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    su_b, su_g, sd_b, sd_g, sbc_b, sbc_g, sy_b, sy_g, sdy_b, sdy_g,
    E, L, NC, n_eb, p0,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, REV: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    """du is laid out like the forward's y (strides sy_*), dy has its own (sdy_*), ddelta is laid out like
    delta and dB/dC (float32) like B/C."""
    b, g, G, e, emask, ch, A, Dv, bias = _program(A_ptr, D_ptr, bias_ptr, E, n_eb, p0, N, NP, BLOCK_E, HAS_D, HAS_BIAS)
    nn = tl.arange(0, NP)
    en_mask = emask[:, None] & (nn < N)[None, :]
    ts = tl.arange(0, T)
    e64 = e.to(tl.int64) * L
    u_row = b * su_b + g * su_g + e64
    d_row = b * sd_b + g * sd_g + e64
    y_row = b * sy_b + g * sy_g + e64
    dy_row = b * sdy_b + g * sdy_g + e64
    bc_base = b * sbc_b + g * sbc_g
    hs_row = ((b * G + g) * E + e) * NC * N
    dh = tl.zeros((BLOCK_E, NP), dtype=tl.float32)  # adjoint state carried from the later chunk
    dA_acc = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    # chunks in reverse scan order; the next one's tiles are loaded before this one is computed (as in the forward)
    FIRST: tl.constexpr = T - 1 if REV else 0  # where a chunk's first scan step sits
    n_pos, n_valid = _chunk(NC - 1, L, T, REV)
    n_npos, n_nvalid = _next(n_pos, n_valid, L, REV)
    n_m = emask[:, None] & n_valid[None, :]
    n_u = tl.load(u_ptr + u_row[:, None] + n_pos[None, :], mask=n_m, other=0.0)
    n_d = tl.load(delta_ptr + d_row[:, None] + n_pos[None, :], mask=n_m, other=0.0)
    n_dn = tl.load(delta_ptr + d_row[:, None] + n_npos[None, :], mask=emask[:, None] & n_nvalid[None, :], other=0.0)
    n_dy = tl.load(dy_ptr + dy_row[:, None] + n_pos[None, :], mask=n_m, other=0.0)
    for cc in range(NC):
        c = NC - 1 - cc
        pos, valid, nvalid, m2 = n_pos, n_valid, n_nvalid, n_m
        u, dl_raw, dln, dy = n_u.to(tl.float32), n_d.to(tl.float32), n_dn.to(tl.float32), n_dy.to(tl.float32)
        n_pos, n_valid = _chunk(c - 1, L, T, REV)
        n_npos, n_nvalid = _next(n_pos, n_valid, L, REV)
        n_m = emask[:, None] & n_valid[None, :]
        n_u = tl.load(u_ptr + u_row[:, None] + n_pos[None, :], mask=n_m, other=0.0)
        n_d = tl.load(delta_ptr + d_row[:, None] + n_pos[None, :], mask=n_m, other=0.0)
        n_dn = tl.load(delta_ptr + d_row[:, None] + n_npos[None, :], mask=emask[:, None] & n_nvalid[None, :], other=0.0)
        n_dy = tl.load(dy_ptr + dy_row[:, None] + n_pos[None, :], mask=n_m, other=0.0)
        dl = _delta(dl_raw, bias, SOFTPLUS, HAS_BIAS)
        dln = _delta(dln, bias, SOFTPLUS, HAS_BIAS)
        h0 = tl.load(hs_ptr + hs_row[:, None] + c * N + nn[None, :], mask=en_mask, other=0.0)
        dlu = dl * u
        ddl = tl.zeros((BLOCK_E, T), dtype=tl.float32)
        du = tl.zeros((BLOCK_E, T), dtype=tl.float32)
        for n in tl.static_range(N):
            sel = (nn == n)[None, :]
            An = _column(A, sel)[:, None]
            Bn = tl.load(B_ptr + bc_base + n * L + pos, mask=valid, other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + bc_base + n * L + pos, mask=valid, other=0.0).to(tl.float32)
            # recompute the chunk's states from its saved start
            a = tl.where(valid[None, :], tl.exp(dl * An), 1.0)
            bb = tl.where(valid[None, :], dlu * Bn[None, :], 0.0)
            sa, sb = tl.associative_scan((a, bb), axis=1, combine_fn=_combine, reverse=REV)
            hh = sa * _column(h0, sel)[:, None] + sb
            # adjoint, against the scan order: dh_t = C_t dy_t + a_{t+1} dh_{t+1}; nothing enters past the end
            an = tl.where(nvalid[None, :], tl.exp(dln * An), 0.0)
            ra, rb = tl.associative_scan((an, dy * Cn[None, :]), axis=1, combine_fn=_combine, reverse=not REV)
            dhh = ra * _column(dh, sel)[:, None] + rb
            dh = tl.where(sel, tl.sum(tl.where((ts == FIRST)[None, :], dhh, 0.0), axis=1)[:, None], dh)
            dha = tl.where(valid[None, :], dhh * (hh - bb), 0.0)  # dh_t * a_t * h_{t-1}
            dhB = dhh * Bn[None, :]
            ddl += dhB * u + dha * An
            du += dhB * dl
            dA_acc = tl.where(sel, dA_acc + tl.sum(dha * dl, axis=1)[:, None], dA_acc)
            dBn = tl.sum(tl.where(m2, dhh * dlu, 0.0), axis=0)
            dCn = tl.sum(tl.where(m2, hh * dy, 0.0), axis=0)
            tl.atomic_add(dB_ptr + bc_base + n * L + pos, dBn, mask=valid)
            tl.atomic_add(dC_ptr + bc_base + n * L + pos, dCn, mask=valid)
        if HAS_D:
            du += Dv[:, None] * dy
            dD_acc += tl.sum(dy * u, axis=1)
        if SOFTPLUS:
            ddl = ddl / (1.0 + tl.exp(-(dl_raw + bias[:, None])))  # softplus' = sigmoid
        ddl = tl.where(m2, ddl, 0.0)
        dbias_acc += tl.sum(ddl, axis=1)
        tl.store(ddelta_ptr + d_row[:, None] + pos[None, :], ddl.to(ddelta_ptr.dtype.element_ty), mask=m2)
        tl.store(du_ptr + y_row[:, None] + pos[None, :], du.to(du_ptr.dtype.element_ty), mask=m2)
    tl.atomic_add(dA_ptr + ch[:, None] * N + nn[None, :], dA_acc, mask=en_mask)
    if HAS_D:
        tl.atomic_add(dD_ptr + ch, dD_acc, mask=emask)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias_acc, mask=emask)


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


_CONFIG_OVERRIDE: dict[str, tuple[int, int, int]] | None = None  # {"fwd"|"bwd": (BLOCK_E, T, warps)}, sweeps


def _config(kind: str, state: int, length: int, channels: int, programs_per_block: int = 1 << 20) -> tuple[int, int, int]:
    """(BLOCK_E, T, num_warps) for the forward ("fwd") or backward ("bwd") kernel; the backward takes the
    forward's T (its saved chunk states fix the chunking), only BLOCK_E and warps are its own."""
    if _CONFIG_OVERRIDE is not None and kind in _CONFIG_OVERRIDE:
        be, t, warps = _CONFIG_OVERRIDE[kind]
    # From bench/scan_sweep.py on an H100, 2026-11-24 (docs/triton-notes.md): small tiles and one or two warps
    # per program; the backward prefers the same channel block for d_state 1 and a larger one for 16.
    elif kind == "fwd":  # v5 on the H100 (2026-11-24 session 3): (4, 128, 1) 0.94 ms, (4, 64, 1) 1.07, (2, 64, 1) 1.04
        be, t, warps = (4, 128, 1) if state <= 2 else (4, 32, 1)
    else:
        be, t, warps = (4, 64, 2) if state <= 2 else (8, 32, 2)
    t = min(t, max(16, triton.next_power_of_2(length)))
    be = min(be, triton.next_power_of_2(channels))
    while be > 1 and programs_per_block * triton.cdiv(channels, be) < 2048:  # small batches: more programs
        be //= 2
    return be, t, warps


def _sg(t: torch.Tensor) -> tuple[int, int]:
    """Batch and group strides of a (B, G, rows, L) operand whose rows are contiguous with stride L."""
    if t.stride(3) != 1 or t.stride(2) != t.shape[3]:
        raise ValueError(f"internal: rows must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")
    return t.stride(0), t.stride(1)


class _Stream:
    """One launch: ``(B, G, rows, L)`` operands (views with any batch and group strides), the parameter row
    offset of its first group and its direction (descending positions when ``rev``)."""

    def __init__(self, u, delta, B, C, p0: int, rev: bool):
        self.u, self.delta, self.B, self.C, self.p0, self.rev = u, delta, B, C, p0, rev

    def flags(self, A, D, bias, softplus):
        N = A.shape[1]
        return dict(N=N, NP=triton.next_power_of_2(N), REV=self.rev, SOFTPLUS=softplus,
                    HAS_D=D is not None, HAS_BIAS=bias is not None)


def _fwd(streams: list[_Stream], ys: list[torch.Tensor], A, D, bias, softplus: bool, save: bool):
    """Run each stream's forward into ``ys`` (laid out like its u); returns (saved chunk states, T)."""
    batch, G, E, L = streams[0].delta.shape
    be, T, warps = _config("fwd", A.shape[1], L, E, batch * G * len(streams))
    NC, n_eb = triton.cdiv(L, T), triton.cdiv(E, be)
    hs = torch.empty(len(streams), batch, G, E, NC, A.shape[1], device=A.device, dtype=torch.float32) if save else None
    for i, (s, y) in enumerate(zip(streams, ys)):
        _scan_fwd_kernel[(batch * n_eb, G)](
            s.u, s.delta, A, s.B, s.C, A if D is None else D, A if bias is None else bias, y,
            hs[i] if save else A,
            *_sg(s.u), *_sg(s.delta), *_sg(s.B), *_sg(y), E, L, NC, n_eb, s.p0,
            BLOCK_E=be, T=T, SAVE=save, num_warps=warps, **s.flags(A, D, bias, softplus),
        )
    return hs, T


def _bwd(streams, dys, dus, ddeltas, dBs, dCs, A, D, bias, hs, T: int, softplus: bool):
    """Backward of :func:`_fwd`: per stream, dy and du (any layouts; du where the forward wrote y), ddelta
    (like delta), dB/dC (float32, like B/C); returns dA, dD, dbias (float32, None where D / bias are absent)."""
    batch, G, E, L = streams[0].delta.shape
    be, _, warps = _config("bwd", A.shape[1], L, E, batch * G * len(streams))
    NC, n_eb = triton.cdiv(L, T), triton.cdiv(E, be)
    dA = torch.zeros_like(A)
    dD = torch.zeros(A.shape[0], device=A.device, dtype=torch.float32)
    dbias = torch.zeros_like(dD)
    for i, s in enumerate(streams):
        if _sg(ddeltas[i]) != _sg(s.delta) or _sg(dBs[i]) != _sg(s.B) or _sg(dCs[i]) != _sg(s.C):
            raise ValueError("internal: gradient buffers must be laid out like their inputs")
        _scan_bwd_kernel[(batch * n_eb, G)](
            s.u, s.delta, A, s.B, s.C, A if D is None else D, A if bias is None else bias, hs[i], dys[i],
            dus[i], ddeltas[i], dA, dBs[i], dCs[i], dD, dbias,
            *_sg(s.u), *_sg(s.delta), *_sg(s.B), *_sg(dus[i]), *_sg(dys[i]), E, L, NC, n_eb, s.p0,
            BLOCK_E=be, T=T, num_warps=warps, **s.flags(A, D, bias, softplus),
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


def _cross_streams(xr, xc, delta, B, C) -> list[_Stream]:
    """The four directions: k0 rows ascending, k1 columns ascending, k2 rows descending, k3 columns
    descending; ``delta, B, C`` are :func:`_split` pairs."""
    E = xr.shape[2]
    streams = []
    for k in range(4):
        j = k if k % 2 == 0 else k // 2  # slot in the grid (even k) or column-major (odd k) tensor
        side = 0 if k % 2 == 0 else 1
        ops = [t[side][:, j : j + 1] for t in (delta, B, C)]
        streams.append(_Stream(xr if side == 0 else xc, *ops, p0=k * E, rev=k >= 2))
    return streams


def _cross_fwd(x, delta, A, B, C, D, bias, softplus: bool, save: bool):
    b, E, h, w = x.shape
    L = h * w
    xr, xc = x.view(b, 1, E, L), _t(x).view(b, 1, E, L)
    streams = _cross_streams(xr, xc, _split(delta), _split(B), _split(C))
    y4 = torch.empty(b, 4, E, L, device=x.device, dtype=x.dtype)
    hs, _ = _fwd(streams, [y4[:, k : k + 1] for k in range(4)], A, D, bias, softplus, save)
    return _merge(y4, h, w, x.dtype), hs


def _cross_bwd(dy, x, delta, A, B, C, D, bias, hs, softplus: bool):
    b, E, h, w = x.shape
    N, L = A.shape[1], h * w
    xr, xc = x.view(b, 1, E, L), _t(x).view(b, 1, E, L)
    streams = _cross_streams(xr, xc, _split(delta), _split(B), _split(C))
    dy = dy.to(x.dtype)
    dyr, dyc = dy.reshape(b, 1, E, L).contiguous(), _t(dy).view(b, 1, E, L)
    du4 = torch.empty(b, 4, E, L, device=x.device, dtype=x.dtype)
    new = lambda rows, dt, fill: [  # noqa: E731  (grid-order and column-major gradient buffers)
        (torch.zeros if fill else torch.empty)(b, k, rows, L, device=x.device, dtype=dt) for k in (4, 2)
    ]
    dd, dBp, dCp = new(E, delta.dtype, False), new(N, torch.float32, True), new(N, torch.float32, True)
    sl = lambda pair, k: pair[k % 2][:, (k if k % 2 == 0 else k // 2) :][:, :1]  # noqa: E731
    dA, dD, dbias = _bwd(
        streams, [dyr, dyc, dyr, dyc], [du4[:, k : k + 1] for k in range(4)],
        [sl(dd, k) for k in range(4)], [sl(dBp, k) for k in range(4)], [sl(dCp, k) for k in range(4)],
        A, D, bias, hs, _config("fwd", N, L, E)[1], softplus,
    )

    def to_grid(pair, rows, dtype):  # odd directions back from column-major onto the grid
        g = pair[0].view(b, 4, rows, h, w)
        g[:, 1::2] = pair[1].view(b, 2, rows, w, h).transpose(-1, -2)
        return g.to(dtype)

    return (_merge(du4, h, w, x.dtype), to_grid(dd, E, delta.dtype), dA, to_grid(dBp, N, B.dtype),
            to_grid(dCp, N, C.dtype), dD, dbias)


def _plain_stream(u, delta, B, C):
    b, channels, L = u.shape
    G = B.shape[1]
    v = lambda t: t.view(b, G, channels // G, L)  # noqa: E731
    return _Stream(v(u), v(delta), B, C, 0, rev=False), v


def _plain_fwd(u, delta, A, B, C, D, bias, softplus: bool, save: bool):
    s, v = _plain_stream(u, delta, B, C)
    y = torch.empty_like(u)
    hs, _ = _fwd([s], [v(y)], A, D, bias, softplus, save)
    return y, hs


def _plain_bwd(dy, u, delta, A, B, C, D, bias, hs, softplus: bool):
    s, v = _plain_stream(u, delta, B, C)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dB = torch.zeros(B.shape, device=u.device, dtype=torch.float32)
    dC = torch.zeros_like(dB)
    T = _config("fwd", A.shape[1], u.shape[2], s.u.shape[2])[1]
    dA, dD, dbias = _bwd([s], [v(dy.to(u.dtype).contiguous())], [v(du)], [v(ddelta)], [dB], [dC],
                         A, D, bias, hs, T, softplus)
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
    N = A.shape[1]
    if cross:
        b, E, h, w = u.shape
        n_streams, G, L = 4, 1, h * w
    else:
        b, G, L = u.shape[0], B.shape[1], u.shape[2]
        n_streams, E = 1, u.shape[1] // B.shape[1]
    nc = triton.cdiv(L, _config("fwd", N, L, E)[1])
    hs_shape = (n_streams, b, G, E, nc, N) if save else _EMPTY
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
