"""VMamba's 2D cross-scan: four scan orders over an H x W map, the merge back onto the grid, and SS2D's core.

Directions, as in VMamba (Liu et al., 2024): k0 row-major (W fastest), k1 column-major (H fastest, the transposed map),
k2 = k0 reversed, k3 = k1 reversed.  :func:`cross_scan` makes the four sequences, :func:`cross_merge`
undoes each order and sums the four results (it is the adjoint of :func:`cross_scan`).
:func:`cross_selective_scan` runs a backend's fused kernel, or the 1D scan between these two.
"""

from __future__ import annotations

import torch

from audiomamba.ops.selective_scan import resolve_backend

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


def expand_delta(factors: torch.Tensor, delta_proj: torch.Tensor) -> torch.Tensor:
    """SS2D's step sizes from their rank-R factors: ``(B, 4, R, H, W)`` factors and ``(4, E, R)`` projections
    (``dt_projs_weight``) -> ``(B, 4, E, H, W)``, channels-last in memory (the layout of SS2D's projection)."""
    grid = factors.permute(0, 3, 4, 1, 2)  # (B, H, W, 4, R)
    return torch.einsum("bhwkr,ker->bhwke", grid, delta_proj.to(factors.dtype)).permute(0, 3, 4, 1, 2)


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
    *,
    delta_proj: torch.Tensor | None = None,
) -> torch.Tensor:
    """SS2D's core: scan the map in the four orders and merge, all inputs given in grid order.

    ``x: (B, E, H, W)``, the input shared by the four directions; ``delta: (B, 4, E, H, W)`` and
    ``B, C: (B, 4, N, H, W)`` are per-direction but laid out on the grid (they are pointwise projections of
    ``x``, so projecting before or after reordering is the same); ``A: (4*E, N)``, ``D, delta_bias: (4*E,)``
    direction-major.  Returns the merged ``(B, E, H, W)`` output in ``x``'s dtype.

    With ``delta_proj: (4, E, R)``, ``delta`` holds rank-R factors ``(B, 4, R, H, W)`` and the step sizes are
    :func:`expand_delta` of them (SS2D's low-rank ``dt`` projection): the fused CPU kernel projects them itself,
    and every other backend gets them expanded.

    ``backend`` (see :mod:`audiomamba.ops.selective_scan`): ``"auto"`` runs the fused Triton kernel on CUDA
    inputs it supports, the fused numba kernel on the CPU when no gradient is needed, and otherwise the PyTorch
    scan between :func:`cross_scan` and :func:`cross_merge` (the loop-free "blocked" scan inside
    :func:`audiomamba.ops.export_mode`); a name insists on that backend.
    """
    b = resolve_backend(backend, x, delta, A, B, C, D, delta_bias, cross=True, delta_proj=delta_proj)
    if delta_proj is not None and not b.low_rank_delta:
        delta, delta_proj = expand_delta(delta, delta_proj), None
    if b.cross is not None:
        if b.low_rank_delta:
            return b.cross(x, delta, A, B, C, D, delta_bias, delta_softplus, delta_proj=delta_proj)
        return b.cross(x, delta, A, B, C, D, delta_bias, delta_softplus)
    bsz, e, h, w = x.shape
    xs = cross_scan(x).reshape(bsz, K * e, h * w)
    ds = cross_scan_k(delta).reshape(bsz, K * e, h * w)
    ys = b.scan(xs, ds, A, cross_scan_k(B), cross_scan_k(C), D, delta_bias, delta_softplus)
    return cross_merge(ys.view(bsz, K, e, h * w), h, w)
