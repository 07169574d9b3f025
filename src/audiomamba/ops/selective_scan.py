"""The public selective-scan function, the one table of scan backends, and the export mode.

Every implementation of the scan is one :class:`ScanBackend` row of one table, in order of preference:

========= ================================ ============================== ===================================
name      1D scan (``scan``)               fused cross-scan (``cross``)   ``backend="auto"`` picks it
========= ================================ ============================== ===================================
triton    ``ops/triton/scan.py``           ``ops/triton/scan.py``         for CUDA tensors it supports
cpu       --                               ``ops/scan_cpu.py`` (numba)    on the CPU when no gradient is needed
blocked   ``ops/scan_blocked.py``          --                             only inside :func:`export_mode`
torch     ``ops/scan_torch.py``            --                             otherwise (takes every input)
ref       ``ops/scan_ref.py``              --                             never (the tests' reference)
========= ================================ ============================== ===================================

:func:`selective_scan` and :func:`audiomamba.ops.cross_selective_scan` both ask :func:`resolve_backend`:
``"auto"`` takes the first row that may be picked automatically and whose ``supports`` predicate accepts the
call's tensors; a named backend is taken as named, or refused with a ``ValueError`` saying what it needs.  A
backend without a fused cross-scan runs SS2D's four directions through its 1D scan, between
:func:`~audiomamba.ops.cross_scan` and :func:`~audiomamba.ops.cross_merge`.  The optional kernels (triton,
numba) are imported on the first call that could use them.

Inside :func:`export_mode` (ONNX / TorchScript export) ``"auto"`` considers only the ``exportable`` rows (the
loop-free "blocked" scan, whose graph does not depend on the data), so the fused kernels step aside.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from audiomamba.ops.scan_blocked import selective_scan_blocked
from audiomamba.ops.scan_ref import selective_scan_ref
from audiomamba.ops.scan_torch import selective_scan_torch

ScanFn = Callable[..., torch.Tensor]
SupportsFn = Callable[..., bool]


def _always(*tensors: torch.Tensor | None, **kwargs: torch.Tensor | None) -> bool:
    return True


@dataclass(frozen=True)
class ScanBackend:
    """One implementation of the selective scan, as the dispatcher sees it.

    - ``scan``: the 1D scan, with the signature of :func:`selective_scan` less ``backend``; None for a backend
      that only fuses SS2D's cross-scan.
    - ``cross``: the fused cross-scan + scan + merge, with the signature of
      :func:`audiomamba.ops.cross_selective_scan` less ``backend`` (and ``delta_proj``, see ``low_rank_delta``);
      None: the dispatcher composes it from ``scan``.
    - ``supports``: whether the backend can run on a call's tensors ``(x, delta, A, B, C, D, delta_bias)``, ``x``
      being the 1D scan's ``u (B, channels, L)`` or the cross-scan's map ``(B, E, H, W)``.
    - ``auto``: ``backend="auto"`` may pick it (outside :func:`export_mode`); ``exportable``: its graph traces
      and exports with no data-dependent step, the only kind ``"auto"`` picks inside :func:`export_mode`.
    - ``low_rank_delta``: ``cross`` also takes ``delta`` as SS2D's rank-R factors with their projection
      ``delta_proj=`` (``supports`` then gets ``delta_proj=`` too); other backends get the delta expanded.
    - ``needs``: what ``supports`` asks for, in the error raised when the backend is named but refuses.
    """

    name: str
    scan: ScanFn | None = None
    cross: ScanFn | None = None
    supports: SupportsFn = _always
    auto: bool = True
    exportable: bool = False
    low_rank_delta: bool = False
    needs: str = ""

    def __post_init__(self) -> None:
        if self.scan is None and self.cross is None:
            raise ValueError(f"scan backend {self.name!r} needs a 1D scan, a fused cross-scan, or both")


# The table: name -> backend, in order of preference for backend="auto".
_BACKENDS: dict[str, ScanBackend] = {}


def register_backend(
    name: str,
    fn: ScanFn | None = None,
    supports: SupportsFn = _always,
    auto: bool = True,
    *,
    cross: ScanFn | None = None,
    exportable: bool = False,
    low_rank_delta: bool = False,
    needs: str = "",
) -> ScanBackend:
    """Add (or replace) a backend of the table, at its top: ``"auto"`` prefers it whenever ``supports`` accepts
    a call (and ``auto``).  ``fn`` is its 1D scan; the other arguments are the fields of :class:`ScanBackend`."""
    backend = ScanBackend(name, fn, cross, supports, auto, exportable, low_rank_delta, needs)
    rest = {k: v for k, v in _BACKENDS.items() if k != name}
    _BACKENDS.clear()
    _BACKENDS.update({name: backend, **rest})
    return backend


def available_backends() -> list[str]:
    """Names accepted by ``backend=`` besides ``"auto"``, in ``"auto"``'s order of preference ("cpu" has no 1D
    scan: :func:`audiomamba.ops.cross_selective_scan` only)."""
    return list(_BACKENDS)


# Export mode: set by :func:`export_mode` for the duration of an ONNX/TorchScript export, read by
# :func:`resolve_backend`.  A context variable, so it is scoped to the exporting thread and always restored.
_EXPORT_MODE: contextvars.ContextVar[bool] = contextvars.ContextVar("audiomamba_scan_export_mode", default=False)


# Exports in progress in any thread, read instead of the context variable by code that dynamo traces: dynamo
# cannot trace ``ContextVar.get`` and breaks the graph there (at every scan of a compiled model), while it reads
# a module global as a guarded constant.
_EXPORTS_ANYWHERE = 0


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """Inside: ``backend="auto"`` picks the loop-free, data-independent "blocked" scan, which traces and exports
    (:mod:`audiomamba.ops.scan_blocked`), and the fused CPU/GPU kernels step aside."""
    global _EXPORTS_ANYWHERE
    token = _EXPORT_MODE.set(True)
    _EXPORTS_ANYWHERE += 1
    try:
        yield
    finally:
        _EXPORTS_ANYWHERE -= 1
        _EXPORT_MODE.reset(token)


def exporting() -> bool:
    """True inside :func:`export_mode`."""
    return _EXPORT_MODE.get()


def _export_mode_applies() -> bool:
    """:func:`exporting`, as the dispatcher sees it.  Code that dynamo traces (``torch.compile``, and
    ``torch.export``, which traces with dynamo) reads whether an :func:`export_mode` block is open in any thread,
    a plain global; eager code and ``torch.jit.trace`` read this thread's context variable."""
    if torch.compiler.is_compiling():
        return _EXPORTS_ANYWHERE > 0
    return exporting()


def resolve_backend(
    name: str,
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    *,
    cross: bool = False,
    delta_proj: torch.Tensor | None = None,
) -> ScanBackend:
    """The backend that runs a call: ``name``, checked, or for ``"auto"`` the first of the table that may be
    picked automatically (only the ``exportable`` ones inside :func:`export_mode`) and supports the tensors.

    ``cross``: the call is a cross-scan (``x`` a ``(B, E, H, W)`` map; backends without a 1D scan qualify);
    ``delta_proj``: ``delta`` holds rank-R factors (see :func:`audiomamba.ops.cross_selective_scan`).
    """

    def accepts(b: ScanBackend) -> bool:
        if b.low_rank_delta:
            return b.supports(x, delta, A, B, C, D, delta_bias, delta_proj=delta_proj)
        return b.supports(x, delta, A, B, C, D, delta_bias)

    if name == "auto":
        export = _export_mode_applies()
        for b in _BACKENDS.values():
            if (b.exportable if export else b.auto) and (cross or b.scan is not None) and accepts(b):
                return b
        raise RuntimeError("no selective-scan backend accepts these inputs")  # unreachable: "torch" takes all
    b = _BACKENDS.get(name)
    if b is None:
        raise ValueError(f"unknown selective-scan backend {name!r}; available: {available_backends()}")
    if not cross and b.scan is None:
        raise ValueError(f"backend {name!r} only fuses SS2D's cross-scan: use audiomamba.ops.cross_selective_scan")
    if not accepts(b):
        raise ValueError(f"backend={name!r} needs {b.needs}; use backend='auto' to fall back")
    return b


# ---------------------------------------------------------------------------------------------- the table
# The optional kernels' modules are imported on the first call that could use them (triton: a CUDA tensor;
# numba: a CPU tensor); None when the package is missing.  Module globals rather than functools.cache, which
# torch.compile traces through.
_TRITON = None
_NUMBA = None


def _triton_module():
    """:mod:`audiomamba.ops.triton.scan`, or None when triton is not installed."""
    global _TRITON
    if _TRITON is None:
        try:
            from audiomamba.ops.triton import scan

            _TRITON = scan
        except ImportError:  # triton missing: the PyTorch path serves every call
            _TRITON = False
    return _TRITON or None


def _cpu_module():
    """:mod:`audiomamba.ops.scan_cpu` when numba is installed, else None."""
    global _NUMBA
    if _NUMBA is None:
        from audiomamba.ops import scan_cpu

        _NUMBA = scan_cpu if scan_cpu.available() else False
    return _NUMBA or None


def _triton_supports(x, delta, A, B, C, D=None, delta_bias=None) -> bool:
    if not x.is_cuda:
        return False
    mod = _triton_module()
    return mod is not None and mod.supports(x, delta, A, B, C, D, delta_bias)


def _triton_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    return _triton_module().selective_scan_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)


def _triton_cross(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    return _triton_module().cross_selective_scan_triton(x, delta, A, B, C, D, delta_bias, delta_softplus)


def _cpu_supports(x, delta, A, B, C, D=None, delta_bias=None, delta_proj=None) -> bool:
    if x.device.type != "cpu":
        return False
    mod = _cpu_module()
    return mod is not None and mod.supports(x, delta, A, B, C, D, delta_bias, delta_proj)


def _cpu_cross(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, delta_proj=None):
    return _cpu_module().cross_selective_scan_cpu(x, delta, A, B, C, D, delta_bias, delta_softplus, delta_proj)


# Registered least preferred first: each registration goes to the top.
register_backend("ref", selective_scan_ref, auto=False)
register_backend("torch", selective_scan_torch)
register_backend("blocked", selective_scan_blocked, auto=False, exportable=True)
register_backend("cpu", cross=_cpu_cross, supports=_cpu_supports, low_rank_delta=True,
                 needs="numba, CPU tensors and no gradient")
register_backend("triton", _triton_scan, _triton_supports, cross=_triton_cross,
                 needs="the triton package and CUDA tensors of float32/float16/bfloat16 with d_state 1..16")


# ---------------------------------------------------------------------------------------------- the function


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
    ``backend``: "auto" or a name of :func:`available_backends` with a 1D scan (see the module doc).  All
    backends with a 1D scan support autograd.
    """
    _check(u, delta, A, B, C, D, delta_bias)
    b = resolve_backend(backend, u, delta, A, B, C, D, delta_bias)
    return b.scan(u, delta, A, B, C, D, delta_bias, delta_softplus)
