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
def _positions(t, k, L, H, W, CROSS: tl.constexpr):
    """Grid position read at scan step t by direction k."""
    if CROSS:
        tt = tl.where(k >= 2, L - 1 - t, t)
        tt = tl.maximum(tt, 0)  # masked steps past the end: any valid address
        col = (k % 2) == 1
        return tl.where(col, (tt % H) * W + tt // H, tt)
    else:
        return t


@triton.jit
def _scan_fwd_kernel(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
    out_ptr, acc_ptr, hs_ptr,
    E, G, L, H, W, NC, n_eb,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
    CROSS: tl.constexpr, NK: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    SAVE: tl.constexpr, ACC_IS_OUT: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // n_eb
    eb = pid % n_eb
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)  # (BE,)
    emask = e < E
    nn = tl.arange(0, NP)
    nmask = nn < N
    tr = tl.arange(0, T)
    for ki in range(NK):
        if CROSS:
            k = ki
            u_row = (b * E + e).to(tl.int64) * L  # x and the merged output: (B, E, L)
        else:
            k = tl.program_id(1)
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
            t = c * T + tr
            tmask = t < L
            p = _positions(t, k, L, H, W, CROSS)
            m2 = emask[:, None] & tmask[None, :]
            u = tl.load(x_ptr + u_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32)
            dl = tl.load(delta_ptr + d_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dl = dl + bias[:, None]
            if SOFTPLUS:
                dl = _softplus(dl)
            mbc = tmask[:, None] & nmask[None, :]
            Bt = tl.load(B_ptr + bc_row[None, :] + p[:, None], mask=mbc, other=0.0).to(tl.float32)  # (T, NP)
            Ct = tl.load(C_ptr + bc_row[None, :] + p[:, None], mask=mbc, other=0.0).to(tl.float32)
            a = tl.exp(dl[:, :, None] * A[:, None, :])  # (BE, T, NP)
            a = tl.where(tmask[None, :, None], a, 1.0)
            bb = (dl * u)[:, :, None] * Bt[None, :, :]
            sa, sb = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
            if SAVE:
                hs_off = ((((b * G + k) * E + e).to(tl.int64) * NC + c) * N)[:, None] + nn[None, :]
                tl.store(hs_ptr + hs_off, h, mask=emask[:, None] & nmask[None, :])
            hh = sa * h[:, None, :] + sb
            y = tl.sum(hh * Ct[None, :, :], axis=2)  # (BE, T)
            if HAS_D:
                y = y + Dv[:, None] * u
            last = (tr == T - 1)[None, :, None]
            h = tl.sum(tl.where(last, hh, 0.0), axis=1)
            optr = u_row[:, None] + p[None, :]
            if NK > 1:
                prev = tl.load(acc_ptr + optr, mask=m2 & (ki > 0), other=0.0)
                y = y + prev
                tl.store(acc_ptr + optr, y, mask=m2 & (ki < NK - 1))
                if ACC_IS_OUT:
                    tl.store(out_ptr + optr, y, mask=m2 & (ki == NK - 1))
                else:
                    tl.store(out_ptr + optr, y.to(out_ptr.dtype.element_ty), mask=m2 & (ki == NK - 1))
            else:
                tl.store(out_ptr + optr, y.to(out_ptr.dtype.element_ty), mask=m2)
        if NK > 1:
            tl.debug_barrier()  # the next direction reads what this one accumulated, in other threads


@triton.jit
def _scan_bwd_kernel(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, hs_ptr, dy_ptr,
    dx_ptr, dxacc_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    E, G, L, H, W, NC, n_eb,
    N: tl.constexpr, NP: tl.constexpr, BLOCK_E: tl.constexpr, T: tl.constexpr,
    CROSS: tl.constexpr, NK: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACC_IS_OUT: tl.constexpr,
):
    pid = tl.program_id(0)
    b = pid // n_eb
    eb = pid % n_eb
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    nn = tl.arange(0, NP)
    nmask = nn < N
    tr = tl.arange(0, T)
    for ki in range(NK):
        if CROSS:
            k = ki
            u_row = (b * E + e).to(tl.int64) * L
        else:
            k = tl.program_id(1)
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
            t = c * T + tr
            tmask = t < L
            p = _positions(t, k, L, H, W, CROSS)
            m2 = emask[:, None] & tmask[None, :]
            u = tl.load(x_ptr + u_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32)
            dl_raw = tl.load(delta_ptr + d_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dl_raw = dl_raw + bias[:, None]
            if SOFTPLUS:
                dl = _softplus(dl_raw)
            else:
                dl = dl_raw
            # the next step's decay a_{t+1} (0 past the end: no gradient flows in from there)
            tn = t + 1
            tnmask = tn < L
            pn = _positions(tn, k, L, H, W, CROSS)
            dln = tl.load(delta_ptr + d_row[:, None] + pn[None, :], mask=emask[:, None] & tnmask[None, :], other=0.0).to(tl.float32)
            if HAS_BIAS:
                dln = dln + bias[:, None]
            if SOFTPLUS:
                dln = _softplus(dln)
            mbc = tmask[:, None] & nmask[None, :]
            Bt = tl.load(B_ptr + bc_row[None, :] + p[:, None], mask=mbc, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc_row[None, :] + p[:, None], mask=mbc, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + u_row[:, None] + p[None, :], mask=m2, other=0.0).to(tl.float32)
            # recompute the chunk's states from its saved start
            a = tl.exp(dl[:, :, None] * A[:, None, :])
            a = tl.where(tmask[None, :, None], a, 1.0)
            bu = dl * u
            bb = bu[:, :, None] * Bt[None, :, :]
            sa, sb = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
            hs_off = ((((b * G + k) * E + e).to(tl.int64) * NC + c) * N)[:, None] + nn[None, :]
            h0 = tl.load(hs_ptr + hs_off, mask=en_mask, other=0.0)
            hh = sa * h0[:, None, :] + sb
            # adjoint: dh_t = C_t dy_t + a_{t+1} dh_{t+1}
            an = tl.exp(dln[:, :, None] * A[:, None, :])
            an = tl.where(tnmask[None, :, None], an, 0.0)
            g = dy[:, :, None] * Ct[None, :, :]
            ra, rb = tl.associative_scan((an, g), axis=1, combine_fn=_combine, reverse=True)
            dh = ra * dh_carry[:, None, :] + rb
            first = (tr == 0)[None, :, None]
            dh_carry = tl.sum(tl.where(first, dh, 0.0), axis=1)
            # a_t h_{t-1} = h_t - b_t
            dha = dh * (hh - bb)  # (BE, T, NP)
            ddl = tl.sum(dh * Bt[None, :, :], axis=2) * u + tl.sum(dha * A[:, None, :], axis=2)
            dA_acc += tl.sum(dha * dl[:, :, None], axis=1)
            du = tl.sum(dh * Bt[None, :, :], axis=2) * dl
            if HAS_D:
                du = du + Dv[:, None] * dy
                dD_acc += tl.sum(dy * u, axis=1)
            dBt = tl.sum(dh * bu[:, :, None], axis=0)  # (T, NP)
            dCt = tl.sum(hh * dy[:, :, None], axis=0)
            tl.atomic_add(dB_ptr + bc_row[None, :] + p[:, None], dBt, mask=mbc)
            tl.atomic_add(dC_ptr + bc_row[None, :] + p[:, None], dCt, mask=mbc)
            if SOFTPLUS:
                ddl = ddl / (1.0 + tl.exp(-dl_raw))
            ddl = tl.where(m2, ddl, 0.0)
            dbias_acc += tl.sum(ddl, axis=1)
            tl.store(ddelta_ptr + d_row[:, None] + p[None, :], ddl.to(ddelta_ptr.dtype.element_ty), mask=m2)
            optr = u_row[:, None] + p[None, :]
            if NK > 1:
                prev = tl.load(dxacc_ptr + optr, mask=m2 & (ki > 0), other=0.0)
                du = du + prev
                tl.store(dxacc_ptr + optr, du, mask=m2 & (ki < NK - 1))
                if ACC_IS_OUT:
                    tl.store(dx_ptr + optr, du, mask=m2 & (ki == NK - 1))
                else:
                    tl.store(dx_ptr + optr, du.to(dx_ptr.dtype.element_ty), mask=m2 & (ki == NK - 1))
            else:
                tl.store(dx_ptr + optr, du.to(dx_ptr.dtype.element_ty), mask=m2)
        tl.atomic_add(dA_ptr + ch[:, None] * N + nn[None, :], dA_acc, mask=en_mask)
        if HAS_D:
            tl.atomic_add(dD_ptr + ch, dD_acc, mask=emask)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + ch, dbias_acc, mask=emask)
        if NK > 1:
            tl.debug_barrier()


# ---------------------------------------------------------------------------------------------- launch


def _config(batch: int, groups_per_launch: int, channels: int, state: int, length: int) -> tuple[int, int, int]:
    """(BLOCK_E, T, num_warps): about 4k float32 per (BE, T, NP) tile, fewer channels per program when the
    grid would be too small to fill the GPU."""
    np_ = triton.next_power_of_2(max(state, 1))
    t = 64 if np_ <= 4 else 32
    t = min(t, max(16, triton.next_power_of_2(length)))
    be = max(1, 4096 // (t * np_))
    be = min(be, 64, triton.next_power_of_2(channels))
    # enough programs: aim at >= 4 per SM of a big GPU (132 SMs)
    while be > 2 and batch * groups_per_launch * triton.cdiv(channels, be) < 528:
        be //= 2
    warps = 4 if be * t * np_ <= 2048 else 8
    return be, t, warps


def _launch_fwd(x, delta, A, B, C, D, bias, softplus, cross, E, G, L, H, W, save):
    batch = x.shape[0]
    N = A.shape[1]
    NP = triton.next_power_of_2(N)
    be, T, warps = _config(batch, 1 if cross else G, E, N, L)
    NC = triton.cdiv(L, T)
    n_eb = triton.cdiv(E, be)
    out = torch.empty_like(x)
    f32 = torch.float32
    if cross:
        acc = out if x.dtype == f32 else torch.empty(x.shape, device=x.device, dtype=f32)
    else:
        acc = out
    hs = torch.empty(batch, G, E, NC, N, device=x.device, dtype=f32) if save else out
    dummy = A
    grid = (batch * n_eb, 1 if cross else G)
    _scan_fwd_kernel[grid](
        x, delta, A, B, C, D if D is not None else dummy, bias if bias is not None else dummy,
        out, acc, hs,
        E, G, L, H, W, NC, n_eb,
        N=N, NP=NP, BLOCK_E=be, T=T, CROSS=cross, NK=4 if cross else 1, SOFTPLUS=bool(softplus),
        HAS_D=D is not None, HAS_BIAS=bias is not None, SAVE=save, ACC_IS_OUT=acc is out,
        num_warps=warps,
    )
    return out, (hs if save else None), (be, T, warps, NC, n_eb)


def _launch_bwd(dy, x, delta, A, B, C, D, bias, hs, softplus, cross, E, G, L, H, W, cfg):
    be, T, warps, NC, n_eb = cfg
    batch = x.shape[0]
    N = A.shape[1]
    NP = triton.next_power_of_2(N)
    f32 = torch.float32
    dx = torch.empty_like(x)
    dxacc = dx if (not cross or x.dtype == f32) else torch.empty(x.shape, device=x.device, dtype=f32)
    ddelta = torch.empty_like(delta)
    dA = torch.zeros(A.shape, device=x.device, dtype=f32)
    dB = torch.zeros(B.shape, device=x.device, dtype=f32)
    dC = torch.zeros(C.shape, device=x.device, dtype=f32)
    dD = torch.zeros(A.shape[0], device=x.device, dtype=f32)
    dbias = torch.zeros(A.shape[0], device=x.device, dtype=f32)
    dummy = A
    grid = (batch * n_eb, 1 if cross else G)
    _scan_bwd_kernel[grid](
        x, delta, A, B, C, D if D is not None else dummy, bias if bias is not None else dummy, hs, dy,
        dx, dxacc, ddelta, dA, dB, dC, dD, dbias,
        E, G, L, H, W, NC, n_eb,
        N=N, NP=NP, BLOCK_E=be, T=T, CROSS=cross, NK=4 if cross else 1, SOFTPLUS=bool(softplus),
        HAS_D=D is not None, HAS_BIAS=bias is not None, ACC_IS_OUT=dxacc is dx,
        num_warps=warps,
    )
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


def _cast_back(grads, dtypes):
    return grads


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
