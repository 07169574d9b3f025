"""Triton selective-scan kernels: forward and backward, with VMamba's cross-scan and cross-merge fused in.

One kernel pair serves two entry points:

- :func:`selective_scan_triton` (plain mode): ``u, delta (B, G*E, L)``, ``B, C (B, G, N, L)``; group ``g`` is
  scanned in time order and written to its own output rows.
- :func:`cross_selective_scan_triton` (cross mode): ``x (B, E, H, W)`` shared by the four directions,
  ``delta (B, 4, E, H, W)``, ``B, C (B, 4, N, H, W)`` on the grid.  Direction ``k`` reads the grid in its own
  order by index arithmetic (k0 row-major, k1 column-major, k2/k3 reversed) and the four outputs are summed
  onto the grid by the same program, which handles the four directions one after the other for its block of
  channels (fp32 accumulation; the last direction writes the output dtype).  Nothing is materialised four
  times.

Per program: one batch element and ``BLOCK_E`` channels.  Time is cut into chunks of ``T`` steps; each chunk
is a ``(BLOCK_E, T, NP)`` register tile (NP = d_state padded to a power of two) solved with
``tl.associative_scan`` on the pairs ``(a, b)`` of ``h_t = a_t h_{t-1} + b_t`` and joined to the carried
state.  State and arithmetic are float32 whatever the input dtype; softplus(delta + delta_bias) and the D skip
are fused.  The forward saves each chunk's starting state (``N`` floats per channel and chunk) when a
gradient is needed; the backward walks the chunks in reverse, recomputes the chunk's states from the saved
start, and runs the adjoint recurrence ``dh_t = C_t dy_t + a_{t+1} dh_{t+1}`` as a reverse scan: memory stays
linear in the length.  Gradients of B and C (shared by the channels of a group) and of A, D, delta_bias
(shared over batch and time) are accumulated with float32 atomics.

Triton is optional: importing this module without it raises ImportError, which the package catches.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_STATE = 16


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2):  h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # log1p(exp(x)) without losing small values (Goldberg's log1p trick), linear above 20
    z = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + z
    lp = tl.where(w == 1.0, z, tl.log(w) * z / (w - 1.0))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _tile_times(c, H, W, L, TA: tl.constexpr, TB: tl.constexpr, COLT: tl.constexpr):
    """Scan steps of chunk c laid out as a (TA, TB) load tile, and their validity.

    Row tiles (TA = 1): TB consecutive steps.  Column tiles (COLT): TB whole columns of TA >= H rows (rows past
    H are padding), so that the tile's fast axis runs along W, contiguous in memory: coalesced loads for the
    column-major directions, which a 1D chunk would read with stride W.
    """
    ia = tl.arange(0, TA)[:, None]
    ib = tl.arange(0, TB)[None, :]
    if COLT:
        j = c * TB + ib
        t = j * H + ia
        valid = (ia < H) & (j < W)
    else:
        t = c * (TA * TB) + ia * TB + ib
        valid = t < L
    return t, valid


@triton.jit
def _time_steps(c, H, W, L, TA: tl.constexpr, TB: tl.constexpr, COLT: tl.constexpr):
    """The same steps in scan order (a 1D vector of TA*TB): tile element (ia, ib) sits at ib * TA + ia for
    column tiles (columns one after the other), at ib for row tiles."""
    s = tl.arange(0, TA * TB)
    if COLT:
        ia = s % TA
        j = c * TB + s // TA
        t = j * H + ia
        valid = (ia < H) & (j < W)
    else:
        t = c * (TA * TB) + s
        valid = t < L
    return t, valid


@triton.jit
def _pos(t, L, H, W, K: tl.constexpr, CROSS: tl.constexpr):
    """Grid position read at scan step t by direction K (plain mode: t itself)."""
    if CROSS:
        if K >= 2:
            tt = tl.maximum(L - 1 - t, 0)  # steps past the end are masked: any valid address
        else:
            tt = tl.minimum(t, L - 1)
        if K % 2 == 1:
            return (tt % H) * W + tt // H
        else:
            return tt
    else:
        return t


@triton.jit
def _to_time(x, BE: tl.constexpr, TA: tl.constexpr, TB: tl.constexpr):
    """(BE, TA, TB) load tile -> (BE, TA*TB) in scan order."""
    return tl.reshape(tl.permute(x, (0, 2, 1)), (BE, TA * TB))


@triton.jit
def _from_time(y, BE: tl.constexpr, TA: tl.constexpr, TB: tl.constexpr):
    """(BE, TA*TB) in scan order -> (BE, TA, TB) load tile."""
    return tl.permute(tl.reshape(y, (BE, TB, TA)), (0, 2, 1))


@triton.jit
def _fwd_direction(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, acc_ptr, hs_ptr,
    b, k, e, E, G, L, H, W, NCS, NC,
    KI: tl.constexpr, N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr,
    TA: tl.constexpr, TB: tl.constexpr, COLT: tl.constexpr,
    CROSS: tl.constexpr, NK: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    SAVE: tl.constexpr, ACC_IS_OUT: tl.constexpr, SPLIT: tl.constexpr,
):
    T: tl.constexpr = TA * TB
    emask = e < E
    nn = tl.arange(0, NP)
    nmask = nn < N
    sr = tl.arange(0, T)
    if CROSS:
        u_row = (b * E + e).to(tl.int64) * L  # x and the merged output: (B, E, L)
    else:
        u_row = ((b * G + k) * E + e).to(tl.int64) * L
    d_row = ((b * G + k) * E + e).to(tl.int64) * L  # delta: (B, G, E, L)
    bc_row = ((b * G + k) * N + nn).to(tl.int64) * L  # B, C: (B, G, N, L)
    ch = k * E + e  # parameter row
    A = tl.load(A_ptr + ch[:, None] * N + nn[None, :], mask=emask[:, None] & nmask[None, :], other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=emask, other=0.0)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=emask, other=0.0)
    h = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    for c in range(NC):
        t2, v2 = _tile_times(c, H, W, L, TA, TB, COLT)
        p2 = _pos(t2, L, H, W, KI, CROSS)  # (TA, TB)
        ts, vs = _time_steps(c, H, W, L, TA, TB, COLT)  # (T,)
        m3 = emask[:, None, None] & v2[None, :, :]
        off3 = u_row[:, None, None] + p2[None, :, :]
        u = _to_time(tl.load(x_ptr + off3, mask=m3, other=0.0).to(tl.float32), BLOCK_E, TA, TB)
        dl = tl.load(delta_ptr + d_row[:, None, None] + p2[None, :, :], mask=m3, other=0.0).to(tl.float32)
        dl = _to_time(dl, BLOCK_E, TA, TB)
        if HAS_BIAS:
            dl = dl + bias[:, None]
        if SOFTPLUS:
            dl = _softplus(dl)
        mbc = nmask[:, None, None] & v2[None, :, :]
        offbc = bc_row[:, None, None] + p2[None, :, :]
        Bt = tl.trans(_to_time(tl.load(B_ptr + offbc, mask=mbc, other=0.0).to(tl.float32), NP, TA, TB))  # (T, NP)
        Ct = tl.trans(_to_time(tl.load(C_ptr + offbc, mask=mbc, other=0.0).to(tl.float32), NP, TA, TB))
        a = tl.exp(dl[:, :, None] * A[:, None, :])  # (BE, T, NP)
        a = tl.where(vs[None, :, None], a, 1.0)  # padding: identity steps
        bb = (dl * u)[:, :, None] * Bt[None, :, :]
        bb = tl.where(vs[None, :, None], bb, 0.0)
        sa, sb = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
        if SAVE:
            hs_off = ((((b * G + k) * E + e).to(tl.int64) * NCS + c) * N)[:, None] + nn[None, :]
            tl.store(hs_ptr + hs_off, h, mask=emask[:, None] & nmask[None, :])
        hh = sa * h[:, None, :] + sb
        y = tl.sum(hh * Ct[None, :, :], axis=2)  # (BE, T)
        if HAS_D:
            y = y + Dv[:, None] * u
        last = (sr == T - 1)[None, :, None]
        h = tl.sum(tl.where(last, hh, 0.0), axis=1)
        y3 = _from_time(y, BLOCK_E, TA, TB)
        if SPLIT:  # this direction's own output rows, on the grid: (B, 4, E, L)
            off3 = d_row[:, None, None] + p2[None, :, :]
        if NK > 1:
            if KI > 0:
                y3 = y3 + tl.load(acc_ptr + off3, mask=m3, other=0.0)
            if KI < NK - 1:
                tl.store(acc_ptr + off3, y3, mask=m3)
            else:
                tl.store(out_ptr + off3, y3.to(out_ptr.dtype.element_ty), mask=m3)
        else:
            tl.store(out_ptr + off3, y3.to(out_ptr.dtype.element_ty), mask=m3)


@triton.jit
def _scan_fwd_kernel(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
    out_ptr, acc_ptr, hs_ptr,
    E, G, L, H, W, NCS, NC_ROW, NC_COL, n_eb,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, HP: tl.constexpr, WC: tl.constexpr,
    COLTILES: tl.constexpr,
    CROSS: tl.constexpr, NK: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    SAVE: tl.constexpr, ACC_IS_OUT: tl.constexpr, SPLIT: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // n_eb
    e = (pid % n_eb) * BLOCK_E + tl.arange(0, BLOCK_E)
    if SPLIT:  # one direction per program (grid axis 1), outputs per direction, summed afterwards
        k = tl.program_id(1)
        for KI in tl.static_range(4):
            if k == KI:
                if COLTILES and (KI % 2 == 1):
                    _fwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, acc_ptr, hs_ptr,
                                   b, KI, e, E, G, L, H, W, NCS, NC_COL, KI, N, NP, BLOCK_E, HP, WC, True,
                                   True, 1, SOFTPLUS, HAS_D, HAS_BIAS, SAVE, True, True)
                else:
                    _fwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, acc_ptr, hs_ptr,
                                   b, KI, e, E, G, L, H, W, NCS, NC_ROW, KI, N, NP, BLOCK_E, 1, T, False,
                                   True, 1, SOFTPLUS, HAS_D, HAS_BIAS, SAVE, True, True)
        return
    for KI in tl.static_range(NK):
        if CROSS:
            k = KI
        else:
            k = tl.program_id(1)
        if COLTILES and (KI % 2 == 1):
            _fwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, acc_ptr, hs_ptr,
                           b, k, e, E, G, L, H, W, NCS, NC_COL, KI, N, NP, BLOCK_E, HP, WC, True,
                           CROSS, NK, SOFTPLUS, HAS_D, HAS_BIAS, SAVE, ACC_IS_OUT, False)
        else:
            _fwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, acc_ptr, hs_ptr,
                           b, k, e, E, G, L, H, W, NCS, NC_ROW, KI, N, NP, BLOCK_E, 1, T, False,
                           CROSS, NK, SOFTPLUS, HAS_D, HAS_BIAS, SAVE, ACC_IS_OUT, False)
        if NK > 1:
            tl.debug_barrier()  # the next direction reads what this one accumulated, in other threads


@triton.jit
def _bwd_direction(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
    dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    b, k, e, E, G, L, H, W, NCS, NC,
    KI: tl.constexpr, N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr,
    TA: tl.constexpr, TB: tl.constexpr, COLT: tl.constexpr,
    CROSS: tl.constexpr, NK: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC_IS_OUT: tl.constexpr, SPLIT: tl.constexpr,
):
    T: tl.constexpr = TA * TB
    emask = e < E
    nn = tl.arange(0, NP)
    nmask = nn < N
    sr = tl.arange(0, T)
    if CROSS:
        u_row = (b * E + e).to(tl.int64) * L
    else:
        u_row = ((b * G + k) * E + e).to(tl.int64) * L
    d_row = ((b * G + k) * E + e).to(tl.int64) * L
    bc_row = ((b * G + k) * N + nn).to(tl.int64) * L
    ch = k * E + e
    en_mask = emask[:, None] & nmask[None, :]
    A = tl.load(A_ptr + ch[:, None] * N + nn[None, :], mask=en_mask, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=emask, other=0.0)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=emask, other=0.0)
    dh_carry = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    dA_acc = tl.zeros((BLOCK_E, NP), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    for cc in range(NC):
        c = NC - 1 - cc
        t2, v2 = _tile_times(c, H, W, L, TA, TB, COLT)
        p2 = _pos(t2, L, H, W, KI, CROSS)
        ts, vs = _time_steps(c, H, W, L, TA, TB, COLT)
        m3 = emask[:, None, None] & v2[None, :, :]
        off3 = u_row[:, None, None] + p2[None, :, :]
        doff3 = d_row[:, None, None] + p2[None, :, :]
        u = _to_time(tl.load(x_ptr + off3, mask=m3, other=0.0).to(tl.float32), BLOCK_E, TA, TB)
        dl_raw = _to_time(tl.load(delta_ptr + doff3, mask=m3, other=0.0).to(tl.float32), BLOCK_E, TA, TB)
        if HAS_BIAS:
            dl_raw = dl_raw + bias[:, None]
        if SOFTPLUS:
            dl = _softplus(dl_raw)
        else:
            dl = dl_raw
        # the next step's decay a_{t+1}: 0 past the end (no gradient flows in), 1 on padding (pass-through)
        tn2 = t2 + 1
        vn2 = v2 & (tn2 < L)
        pn2 = _pos(tn2, L, H, W, KI, CROSS)
        dln = tl.load(delta_ptr + d_row[:, None, None] + pn2[None, :, :], mask=emask[:, None, None] & vn2[None, :, :], other=0.0)
        dln = _to_time(dln.to(tl.float32), BLOCK_E, TA, TB)
        if HAS_BIAS:
            dln = dln + bias[:, None]
        if SOFTPLUS:
            dln = _softplus(dln)
        vns = vs & (ts + 1 < L)
        mbc = nmask[:, None, None] & v2[None, :, :]
        offbc = bc_row[:, None, None] + p2[None, :, :]
        Bt = tl.trans(_to_time(tl.load(B_ptr + offbc, mask=mbc, other=0.0).to(tl.float32), NP, TA, TB))
        Ct = tl.trans(_to_time(tl.load(C_ptr + offbc, mask=mbc, other=0.0).to(tl.float32), NP, TA, TB))
        dy = _to_time(tl.load(dy_ptr + off3, mask=m3, other=0.0).to(tl.float32), BLOCK_E, TA, TB)
        # recompute the chunk's states from its saved start
        a = tl.exp(dl[:, :, None] * A[:, None, :])
        a = tl.where(vs[None, :, None], a, 1.0)
        bu = dl * u
        bb = bu[:, :, None] * Bt[None, :, :]
        bb = tl.where(vs[None, :, None], bb, 0.0)
        sa, sb = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
        hs_off = ((((b * G + k) * E + e).to(tl.int64) * NCS + c) * N)[:, None] + nn[None, :]
        h0 = tl.load(hs_ptr + hs_off, mask=en_mask, other=0.0)
        hh = sa * h0[:, None, :] + sb
        # adjoint: dh_t = C_t dy_t + a_{t+1} dh_{t+1}
        an = tl.exp(dln[:, :, None] * A[:, None, :])
        an = tl.where(vns[None, :, None], an, tl.where(vs[None, :, None], 0.0, 1.0))
        g = dy[:, :, None] * Ct[None, :, :]
        ra, rb = tl.associative_scan((an, g), axis=1, combine_fn=_combine, reverse=True)
        dh = ra * dh_carry[:, None, :] + rb
        first = (sr == 0)[None, :, None]
        dh_carry = tl.sum(tl.where(first, dh, 0.0), axis=1)
        dha = tl.where(vs[None, :, None], dh * (hh - bb), 0.0)  # a_t h_{t-1} = h_t - b_t; padding carries dh
        dhB = tl.sum(dh * Bt[None, :, :], axis=2)
        ddl = dhB * u + tl.sum(dha * A[:, None, :], axis=2)
        dA_acc += tl.sum(dha * dl[:, :, None], axis=1)
        du = dhB * dl
        if HAS_D:
            du = du + Dv[:, None] * dy
            dD_acc += tl.sum(dy * u, axis=1)
        dBt = tl.sum(dh * bu[:, :, None], axis=0)  # (T, NP)
        dCt = tl.sum(hh * dy[:, :, None], axis=0)
        tl.atomic_add(dB_ptr + offbc, _from_time(tl.trans(dBt), NP, TA, TB), mask=mbc)
        tl.atomic_add(dC_ptr + offbc, _from_time(tl.trans(dCt), NP, TA, TB), mask=mbc)
        if SOFTPLUS:
            ddl = ddl / (1.0 + tl.exp(-dl_raw))
        ddl = tl.where(emask[:, None] & vs[None, :], ddl, 0.0)
        dbias_acc += tl.sum(ddl, axis=1)
        tl.store(ddelta_ptr + doff3, _from_time(ddl, BLOCK_E, TA, TB).to(ddelta_ptr.dtype.element_ty), mask=m3)
        du3 = _from_time(du, BLOCK_E, TA, TB)
        if SPLIT:
            off3 = doff3
        if NK > 1:
            if KI > 0:
                du3 = du3 + tl.load(dxacc_ptr + off3, mask=m3, other=0.0)
            if KI < NK - 1:
                tl.store(dxacc_ptr + off3, du3, mask=m3)
            else:
                tl.store(dx_ptr + off3, du3.to(dx_ptr.dtype.element_ty), mask=m3)
        else:
            tl.store(dx_ptr + off3, du3.to(dx_ptr.dtype.element_ty), mask=m3)
    tl.atomic_add(dA_ptr + ch[:, None] * N + nn[None, :], dA_acc, mask=en_mask)
    if HAS_D:
        tl.atomic_add(dD_ptr + ch, dD_acc, mask=emask)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + ch, dbias_acc, mask=emask)


@triton.jit
def _scan_bwd_kernel(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
    dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    E, G, L, H, W, NCS, NC_ROW, NC_COL, n_eb,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr, HP: tl.constexpr, WC: tl.constexpr,
    COLTILES: tl.constexpr,
    CROSS: tl.constexpr, NK: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC_IS_OUT: tl.constexpr, SPLIT: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // n_eb
    e = (pid % n_eb) * BLOCK_E + tl.arange(0, BLOCK_E)
    if SPLIT:
        k = tl.program_id(1)
        for KI in tl.static_range(4):
            if k == KI:
                if COLTILES and (KI % 2 == 1):
                    _bwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
                                   dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
                                   b, KI, e, E, G, L, H, W, NCS, NC_COL, KI, N, NP, BLOCK_E, HP, WC, True,
                                   True, 1, SOFTPLUS, HAS_D, HAS_BIAS, True, True)
                else:
                    _bwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
                                   dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
                                   b, KI, e, E, G, L, H, W, NCS, NC_ROW, KI, N, NP, BLOCK_E, 1, T, False,
                                   True, 1, SOFTPLUS, HAS_D, HAS_BIAS, True, True)
        return
    for KI in tl.static_range(NK):
        if CROSS:
            k = KI
        else:
            k = tl.program_id(1)
        if COLTILES and (KI % 2 == 1):
            _bwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
                           dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
                           b, k, e, E, G, L, H, W, NCS, NC_COL, KI, N, NP, BLOCK_E, HP, WC, True,
                           CROSS, NK, SOFTPLUS, HAS_D, HAS_BIAS, ACC_IS_OUT, False)
        else:
            _bwd_direction(x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
                           dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
                           b, k, e, E, G, L, H, W, NCS, NC_ROW, KI, N, NP, BLOCK_E, 1, T, False,
                           CROSS, NK, SOFTPLUS, HAS_D, HAS_BIAS, ACC_IS_OUT, False)
        if NK > 1:
            tl.debug_barrier()


# ---------------------------------------------------------------------------------------------- launch


_CONFIG_OVERRIDE: tuple[int, int, int] | None = None  # (BLOCK_E, T, num_warps), for tuning sweeps
# Cross mode: one direction per program with per-direction fp32 outputs summed by torch (True, measured ~10x
# faster on an H100), or the four directions in one program accumulating on the grid (False; see
# docs/triton-notes.md).
CROSS_SPLIT = True  # used for d_state <= 2 only


def _config(batch: int, groups_per_launch: int, channels: int, state: int, length: int) -> tuple[int, int, int]:
    """(BLOCK_E, T, num_warps): about 4k float32 per (BE, T, NP) tile, fewer channels per program when the
    grid would be too small to fill the GPU."""
    if _CONFIG_OVERRIDE is not None:
        return _CONFIG_OVERRIDE
    # From bench/scan_sweep.py on an H100 (2026-11-24): small tiles, one warp, many programs win; the scan is
    # latency-bound, and more programs in flight hide it.
    np_ = triton.next_power_of_2(max(state, 1))
    if np_ <= 2:  # measured best for d_state 1 (one direction per program)
        be, t, warps = 2, 128, 1
        t = min(t, max(16, triton.next_power_of_2(length)))
        return min(be, triton.next_power_of_2(channels)), t, warps
    # larger d_state: the first tuning (4 directions per program), measured faster for N = 16
    t = 64 if np_ <= 4 else 32
    t = min(t, max(16, triton.next_power_of_2(length)))
    be = max(1, 4096 // (t * np_))
    be = min(be, 64, triton.next_power_of_2(channels))
    while be > 2 and batch * groups_per_launch * triton.cdiv(channels, be) < 528:
        be //= 2
    warps = 4 if be * t * np_ <= 2048 else 8
    return be, t, warps


MAX_COL_TILE_ROWS = 128  # column directions of maps taller than this read with stride W instead of in tiles


def _geometry(batch, cross, E, G, N, L, H, W):
    """Launch geometry: (BLOCK_E, T, warps, HP, WC, COLTILES, NC_ROW, NC_COL, NCS, n_eb)."""
    be, T, warps = _config(batch, 1 if cross else G, E, N, L)
    HP = triton.next_power_of_2(H)
    coltiles = bool(cross and HP <= MAX_COL_TILE_ROWS and W > 1)
    WC = max(1, T // HP) if coltiles else 1
    WC = min(WC, triton.next_power_of_2(W))
    nc_row = triton.cdiv(L, T)
    nc_col = triton.cdiv(W, WC) if coltiles else nc_row
    return be, T, warps, HP, WC, coltiles, nc_row, nc_col, max(nc_row, nc_col), triton.cdiv(E, be)


def _launch_fwd(x, delta, A, B, C, D, bias, softplus, cross, E, G, L, H, W, save):
    batch = x.shape[0]
    N = A.shape[1]
    NP = triton.next_power_of_2(N)
    geo = _geometry(batch, cross, E, G, N, L, H, W)
    be, T, warps, HP, WC, coltiles, nc_row, nc_col, NC, n_eb = geo
    f32 = torch.float32
    split = cross and CROSS_SPLIT and N <= 2
    if split:  # per-direction outputs on the grid, summed below
        out = torch.empty(batch, 4, E, L, device=x.device, dtype=f32)
        acc = out
    else:
        out = torch.empty_like(x)
        if cross:
            acc = out if x.dtype == f32 else torch.empty(x.shape, device=x.device, dtype=f32)
        else:
            acc = out
    hs = torch.empty(batch, G, E, NC, N, device=x.device, dtype=f32) if save else out
    dummy = A
    grid = (batch * n_eb, 4 if split else (1 if cross else G))
    _scan_fwd_kernel[grid](
        x, delta, A, B, C, D if D is not None else dummy, bias if bias is not None else dummy,
        out, acc, hs,
        E, G, L, H, W, NC, nc_row, nc_col, n_eb,
        N=N, NP=NP, BLOCK_E=be, T=T, HP=HP, WC=WC, COLTILES=coltiles, CROSS=cross, NK=4 if cross else 1, SOFTPLUS=bool(softplus),
        HAS_D=D is not None, HAS_BIAS=bias is not None, SAVE=save, ACC_IS_OUT=acc is out, SPLIT=split,
        num_warps=warps,
    )
    if split:
        out = out.sum(1).to(x.dtype).view(x.shape)
    return out, (hs if save else None), geo


def _launch_bwd(dy, x, delta, A, B, C, D, bias, hs, softplus, cross, E, G, L, H, W, cfg):
    be, T, warps, HP, WC, coltiles, nc_row, nc_col, NC, n_eb = cfg
    batch = x.shape[0]
    N = A.shape[1]
    NP = triton.next_power_of_2(N)
    f32 = torch.float32
    split = cross and CROSS_SPLIT and N <= 2
    if split:
        dx = torch.empty(batch, 4, E, L, device=x.device, dtype=f32)
        dxacc = dx
    else:
        dx = torch.empty_like(x)
        dxacc = dx if (not cross or x.dtype == f32) else torch.empty(x.shape, device=x.device, dtype=f32)
    ddelta = torch.empty_like(delta)
    dA = torch.zeros(A.shape, device=x.device, dtype=f32)
    dB = torch.zeros(B.shape, device=x.device, dtype=f32)
    dC = torch.zeros(C.shape, device=x.device, dtype=f32)
    dD = torch.zeros(A.shape[0], device=x.device, dtype=f32)
    dbias = torch.zeros(A.shape[0], device=x.device, dtype=f32)
    dummy = A
    grid = (batch * n_eb, 4 if split else (1 if cross else G))
    _scan_bwd_kernel[grid](
        x, delta, A, B, C, D if D is not None else dummy, bias if bias is not None else dummy, hs, dy,
        dx, dxacc, ddelta, dA, dB, dC, dD, dbias,
        E, G, L, H, W, NC, nc_row, nc_col, n_eb,
        N=N, NP=NP, BLOCK_E=be, T=T, HP=HP, WC=WC, COLTILES=coltiles, CROSS=cross, NK=4 if cross else 1, SOFTPLUS=bool(softplus),
        HAS_D=D is not None, HAS_BIAS=bias is not None, ACC_IS_OUT=dxacc is dx, SPLIT=split,
        num_warps=warps,
    )
    if split:
        dx = dx.sum(1).to(x.dtype).view(x.shape)
    return dx, ddelta, dA, dB, dC, (dD if D is not None else None), (dbias if bias is not None else None)


class _ScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, bias, softplus, cross, E, G, L, H, W):
        save = any(ctx.needs_input_grad[:7])
        out, hs, cfg = _launch_fwd(x, delta, A, B, C, D, bias, softplus, cross, E, G, L, H, W, save)
        if save:
            ctx.save_for_backward(x, delta, A, B, C, D, bias, hs)
            ctx.meta = (softplus, cross, E, G, L, H, W, cfg)
        return out

    @staticmethod
    def backward(ctx, dy):
        x, delta, A, B, C, D, bias, hs = ctx.saved_tensors
        softplus, cross, E, G, L, H, W, cfg = ctx.meta
        dx, ddelta, dA, dB, dC, dD, dbias = _launch_bwd(
            dy.contiguous(), x, delta, A, B, C, D, bias, hs, softplus, cross, E, G, L, H, W, cfg
        )
        return dx, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, dbias, None, None, None, None, None, None, None


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


def supports_selective_scan(u, delta, A, B, C, D=None, delta_bias=None) -> bool:
    """Predicate for the dispatcher: CUDA tensors of float32/16/bf16, d_state 1..16, length >= 1."""
    return _supported((u, delta, A, B, C, D, delta_bias), A.shape[1]) and u.shape[-1] >= 1


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Plain-mode selective scan on the GPU (contract of :func:`audiomamba.ops.selective_scan`)."""
    batch, channels, length = u.shape
    G, N = B.shape[1], A.shape[1]
    if not (1 <= N <= MAX_STATE):
        raise ValueError(f"the Triton selective scan takes d_state 1..{MAX_STATE}, got {N}")
    E = channels // G
    # Non-contiguous inputs are copied (never read with wrong strides); B and C take u's dtype.
    u = u.contiguous()
    delta = delta.contiguous()
    Bc, Cc = B.contiguous(), C.contiguous()
    return _ScanFn.apply(u, delta, _f32(A), Bc, Cc, _f32(D), _f32(delta_bias), delta_softplus, False, E, G, length, length, 1)


def supports_cross_selective_scan(x, delta, A, B, C, D=None, delta_bias=None) -> bool:
    return _supported((x, delta, A, B, C, D, delta_bias), A.shape[1]) and x.shape[-1] * x.shape[-2] >= 1


def cross_selective_scan_triton(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Fused cross-scan + selective scan + cross-merge (contract of
    :func:`audiomamba.ops.cross_selective_scan`)."""
    batch, E, H, W = x.shape
    N = A.shape[1]
    if not (1 <= N <= MAX_STATE):
        raise ValueError(f"the Triton selective scan takes d_state 1..{MAX_STATE}, got {N}")
    L = H * W
    return _ScanFn.apply(
        x.contiguous(), delta.contiguous(), _f32(A), B.contiguous(), C.contiguous(), _f32(D), _f32(delta_bias),
        delta_softplus, True, E, 4, L, H, W,
    )
