"""Fused CPU kernel for SS2D's cross-scan + selective scan + cross-merge (inference only), with numba.

The PyTorch scan materialises ``(channels, steps, state)`` tensors and is bound by memory traffic on a CPU; this
kernel keeps each channel's state in registers and walks the grid in each direction's order by index arithmetic,
which is several times faster.  It has no autograd: :func:`audiomamba.ops.cross_selective_scan` uses it only
when no gradient is needed, and falls back to the PyTorch path when numba is not installed.  numba compiles it
on first use (a few seconds; cached on disk where the package directory is writable).
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:
    import numba
except ImportError:  # optional: the PyTorch path covers everything
    numba = None

__all__ = ["available", "supports", "cross_selective_scan_cpu"]


def available() -> bool:
    return numba is not None


if numba is not None:

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _kernel(x, delta, A, Bm, Cm, D, bias, softplus, height, width, out):  # pragma: no cover - compiled
        batch, k_dirs, e, length = delta.shape
        n = A.shape[1]
        for job in numba.prange(batch * k_dirs * e):
            b = job // (k_dirs * e)
            k = (job // e) % k_dirs
            c = job % e
            ch = k * e + c
            h = np.zeros(n, dtype=np.float32)
            a = A[ch]
            for t in range(length):
                s = t if k < 2 else length - 1 - t  # k2, k3: the reverses of k0, k1
                p = s if k % 2 == 0 else (s % height) * width + s // height  # k1, k3: column-major
                dt = delta[b, k, c, p] + bias[ch]
                if softplus:
                    dt = dt if dt > 20.0 else math.log1p(math.exp(dt))
                u = x[b, c, p]
                acc = np.float32(0.0)
                for j in range(n):
                    h[j] = math.exp(dt * a[j]) * h[j] + dt * Bm[b, k, j, p] * u
                    acc += Cm[b, k, j, p] * h[j]
                out[b, k, c, p] = acc + D[ch] * u


def supports(x: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """True when the fused CPU kernel can run: numba present, plain CPU tensors, no gradient, no tracing."""
    if numba is None or x.device.type != "cpu":
        return False
    all_t = (x,) + tuple(t for t in tensors if t is not None)
    # Tracing, export and compilation see tensor subclasses (fake/functional tensors) a numba call cannot read.
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or any(type(t) not in (torch.Tensor, torch.nn.Parameter) for t in all_t):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in all_t))


def cross_selective_scan_cpu(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Same contract as :func:`audiomamba.ops.cross_selective_scan` (float32 math, ``x``'s dtype out)."""
    b, e, hgt, wid = x.shape
    k, n = delta.shape[1], A.shape[1]
    length = hgt * wid
    f = lambda t: np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())  # noqa: E731
    zeros = torch.zeros(k * e)
    out = np.empty((b, k, e, length), dtype=np.float32)
    _kernel(
        f(x.reshape(b, e, length)),
        f(delta.reshape(b, k, e, length)),
        f(A),
        f(B.reshape(b, k, n, length)),
        f(C.reshape(b, k, n, length)),
        f(D if D is not None else zeros),
        f(delta_bias if delta_bias is not None else zeros),
        bool(delta_softplus),
        hgt,
        wid,
        out,
    )
    return torch.from_numpy(out.sum(axis=1)).view(b, e, hgt, wid).to(x.dtype)
