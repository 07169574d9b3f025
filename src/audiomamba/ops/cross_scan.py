"""VMamba's 2D cross-scan: four scan orders over an H x W map, and the merge back onto the grid.

Directions (VMAMBA.md): k0 row-major (W fastest), k1 column-major (H fastest, the transposed map),
k2 = k0 reversed, k3 = k1 reversed.  :func:`cross_scan` makes the four sequences, :func:`cross_merge`
undoes each order and sums the four results (it is the adjoint of :func:`cross_scan`).
"""

from __future__ import annotations

import torch

from audiomamba.ops.selective_scan import _triton_module, selective_scan

K = 4  # scan directions


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4, C, H*W): the same map read in the four scan orders."""
    b, c, h, w = x.shape
    rows = x.reshape(b, c, h * w)
    cols = x.transpose(2, 3).reshape(b, c, h * w)
    fwd = torch.stack([rows, cols], dim=1)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_scan_k(x: torch.Tensor) -> torch.Tensor:
    """(B, 4, C, H, W) -> (B, 4, C, H*W): direction k's own map read in direction k's order."""
    b, k, c, h, w = x.shape
    rows = x[:, 0].reshape(b, c, h * w)
    cols = x[:, 1].transpose(-1, -2).reshape(b, c, h * w)
    rrows = x[:, 2].reshape(b, c, h * w).flip(-1)
    rcols = x[:, 3].transpose(-1, -2).reshape(b, c, h * w).flip(-1)
    return torch.stack([rows, cols, rrows, rcols], dim=1)


def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 4, C, H*W) in the four scan orders -> (B, C, H, W): each order undone, the four summed."""
    b, k, c, length = y.shape
    if k != K or length != h * w:
        raise ValueError(f"cross_merge expects (B, 4, C, {h}*{w}), got {tuple(y.shape)}")
    y = y[:, 0:2] + y[:, 2:4].flip(-1)
    return y[:, 0].reshape(b, c, h, w) + y[:, 1].reshape(b, c, w, h).transpose(2, 3)


def cross_selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """SS2D's core: scan the map in the four orders and merge, all inputs given in grid order.

    ``x: (B, E, H, W)``, the input shared by the four directions; ``delta: (B, 4, E, H, W)`` and
    ``B, C: (B, 4, N, H, W)`` are per-direction but laid out on the grid (they are pointwise projections of
    ``x``, so projecting before or after reordering is the same); ``A: (4*E, N)``, ``D, delta_bias: (4*E,)``
    direction-major.  Returns the merged ``(B, E, H, W)`` output in ``x``'s dtype.

    ``backend="auto"`` runs the fused Triton kernel (``ops/scan_triton.py``) on CUDA inputs it supports and
    this PyTorch composition otherwise; ``"triton"`` insists on the kernel; any other name is passed on to
    :func:`selective_scan` for the unfused path.
    """
    if backend in ("auto", "triton"):
        mod = _triton_module() if x.is_cuda else None
        ok = mod is not None and mod.supports_cross_selective_scan(x, delta, A, B, C, D, delta_bias)
        if ok:  # fused kernel: the four orders read by index arithmetic, merged in the same program
            return mod.cross_selective_scan_triton(x, delta, A, B, C, D, delta_bias, delta_softplus)
        if backend == "triton":
            raise ValueError(
                "backend='triton' needs the triton package and CUDA tensors of float32/float16/bfloat16 with "
                "d_state 1..16; use backend='auto' to fall back to the PyTorch path"
            )
    b, e, h, w = x.shape
    xs = cross_scan(x).reshape(b, K * e, h * w)
    ds = cross_scan_k(delta).reshape(b, K * e, h * w)
    bs, cs = cross_scan_k(B), cross_scan_k(C)
    ys = selective_scan(xs, ds, A, bs, cs, D, delta_bias, delta_softplus, backend=backend)
    return cross_merge(ys.view(b, K, e, h * w), h, w)
