"""The public selective-scan function and its backend dispatch.

Backends are plain functions with the signature of :func:`selective_scan` (minus ``backend``).  ``"ref"`` is
the sequential reference, ``"torch"`` the chunked pure-PyTorch scan; a GPU kernel registers itself with
:func:`register_backend` together with a predicate saying which inputs it can take, and ``backend="auto"``
picks it for those inputs and falls back to ``"torch"`` otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import torch

from audiomamba.ops.scan_blocked import selective_scan_blocked
from audiomamba.ops.scan_ref import selective_scan_ref
from audiomamba.ops.scan_torch import selective_scan_torch

ScanFn = Callable[..., torch.Tensor]
SupportsFn = Callable[..., bool]

# name -> (function, predicate on the call's tensors); "auto" tries them in registration order, newest first.
_BACKENDS: dict[str, tuple[ScanFn, SupportsFn]] = {
    "ref": (selective_scan_ref, lambda *a, **k: True),
    "torch": (selective_scan_torch, lambda *a, **k: True),
}
_AUTO_ORDER: list[str] = ["torch"]


def register_backend(name: str, fn: ScanFn, supports: SupportsFn, auto: bool = True) -> None:
    """Add a backend; with ``auto`` it is preferred by ``backend="auto"`` whenever ``supports`` says so."""
    _BACKENDS[name] = (fn, supports)
    if auto and name not in _AUTO_ORDER:
        _AUTO_ORDER.insert(0, name)


def _triton_module():
    """The Triton kernels' module, or None when triton is not installed (imported on first CUDA call)."""
    global _TRITON
    if _TRITON is None:
        try:
            from audiomamba.ops import scan_triton

            _TRITON = scan_triton
        except ImportError:  # triton missing: the PyTorch path serves every call
            _TRITON = False
    return _TRITON or None


_TRITON = None


def _triton_supports(u, delta, A, B, C, D=None, delta_bias=None) -> bool:
    if not u.is_cuda:
        return False
    mod = _triton_module()
    return mod is not None and mod.supports_selective_scan(u, delta, A, B, C, D, delta_bias)


def _triton_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    mod = _triton_module()
    if mod is None:
        raise RuntimeError("backend='triton' needs the triton package (pip install 'audiomamba[triton]')")
    if not mod.supports_selective_scan(u, delta, A, B, C, D, delta_bias):
        raise ValueError(
            "backend='triton' takes CUDA tensors of float32/float16/bfloat16 with d_state 1..16; "
            "use backend='auto' to fall back to the PyTorch scan"
        )
    return mod.selective_scan_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)


def available_backends() -> list[str]:
    """Names accepted by ``backend=``, besides ``"auto"``."""
    return list(_BACKENDS)


# Export mode: set by :func:`export_mode` for the duration of an ONNX/TorchScript export, read by the backends'
# ``supports`` predicates.  A context variable, so it is scoped to the exporting thread and always restored.
_EXPORT_MODE: contextvars.ContextVar[bool] = contextvars.ContextVar("audiomamba_scan_export_mode", default=False)


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """Inside: ``backend="auto"`` picks the loop-free, data-independent "blocked" scan, which traces and exports
    (:mod:`audiomamba.ops.scan_blocked`), and the fused CPU/GPU kernels step aside."""
    token = _EXPORT_MODE.set(True)
    try:
        yield
    finally:
        _EXPORT_MODE.reset(token)


def exporting() -> bool:
    """True inside :func:`export_mode`."""
    return _EXPORT_MODE.get()


# The export-friendly scan: chosen by "auto" only inside export_mode.
register_backend("blocked", selective_scan_blocked, lambda *a, **k: exporting(), auto=True)
# The Triton kernel (ops/scan_triton.py): preferred on CUDA, imported lazily so that triton stays optional.
register_backend("triton", _triton_scan, _triton_supports)


def _check(u, delta, A, B, C, D, delta_bias) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (batch, channels, length); got {tuple(u.shape)}, {tuple(delta.shape)}")
    batch, channels, length = u.shape
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"A must be (channels={channels}, state), got {tuple(A.shape)}")
    state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != state or t.shape[3] != length:
            raise ValueError(f"{name} must be (batch={batch}, groups, state={state}, length={length}), got {tuple(t.shape)}")
    if B.shape[1] != C.shape[1] or channels % B.shape[1]:
        raise ValueError(f"B/C groups ({B.shape[1]}, {C.shape[1]}) must be equal and divide channels={channels}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (channels,):
            raise ValueError(f"{name} must be (channels={channels},), got {tuple(t.shape)}")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """Selective scan (Mamba S6) with grouped B/C, as VMamba uses it.

    Shapes: ``u, delta: (batch, channels, length)``; ``A: (channels, state)`` (negative real);
    ``B, C: (batch, groups, state, length)``, shared by the ``channels // groups`` consecutive channels of a
    group; ``D, delta_bias: (channels,)``.  With ``delta = softplus(delta + delta_bias)``::

        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   h_0 = 0
        y_t = <C_t, h_t> + D * u_t

    State is kept in float32 (float64 for float64 inputs on the reference); returns ``u``'s dtype.
    All backends support autograd.
    """
    _check(u, delta, A, B, C, D, delta_bias)
    if backend == "auto":
        for name in _AUTO_ORDER:
            fn, supports = _BACKENDS[name]
            if supports(u, delta, A, B, C, D, delta_bias):
                return fn(u, delta, A, B, C, D, delta_bias, delta_softplus)
        raise RuntimeError("no selective-scan backend accepts these inputs")  # unreachable: "torch" takes all
    if backend not in _BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; available: {available_backends()}")
    return _BACKENDS[backend][0](u, delta, A, B, C, D, delta_bias, delta_softplus)
