"""Model operators: the selective scan and the 2D cross-scan around it, and the LayerNorm.

Each fast implementation sits beside a readable reference that the tests compare it with:

- :func:`selective_scan` / :func:`cross_selective_scan` dispatch through one table of scan backends
  (``ops/selective_scan.py``, which documents the table and :func:`export_mode`):

  - "ref" (``scan_ref.py``): the recurrence, one step at a time; *the* reference (tests run it in float64).
  - "torch" (``scan_torch.py``): chunked closed-form scan in PyTorch, any device, autograd; against "ref".
  - "blocked" (``scan_blocked.py``): loop-free and data-independent, for export; against "ref".
  - "cpu" (``scan_cpu.py``): fused numba kernel of SS2D's cross-scan, CPU inference; against "torch" on the
    same inputs.
  - "triton" (``triton/scan.py``, kernels in ``triton/scan_kernels.py``): fused GPU kernels, forward and
    backward; against "ref" in float64, on CPU under Triton's interpreter.

  ``cross_scan.py`` holds the four scan orders (:func:`cross_scan`, :func:`cross_scan_k`), their adjoint
  :func:`cross_merge`, and :func:`cross_selective_scan`.
- :func:`layer_norm` (``layer_norm.py``): the Triton kernel on CUDA (``triton/layer_norm.py``, kernels in
  ``triton/layer_norm_kernels.py``), ``torch.nn.functional.layer_norm`` (the reference) everywhere else.
- :class:`ScanConfig` (``config.py``): the scan backends' tuning knobs, read with :func:`get_scan_config` and
  set for a block with :func:`scan_config`; :func:`plan_segments` is the Triton forward's segments rule.

triton and numba are optional: their modules are imported on the first call that could use them, and the
PyTorch paths serve every call without them.
"""

from audiomamba.ops.config import ScanConfig, get_scan_config, plan_segments, scan_config
from audiomamba.ops.cross_scan import cross_merge, cross_scan, cross_scan_k, cross_selective_scan, expand_delta
from audiomamba.ops.layer_norm import layer_norm
from audiomamba.ops.scan_ref import selective_scan_ref
from audiomamba.ops.scan_torch import selective_scan_torch
from audiomamba.ops.selective_scan import (
    ScanBackend,
    available_backends,
    export_mode,
    exporting,
    register_backend,
    resolve_backend,
    selective_scan,
)

__all__ = [
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
    "ScanBackend",
    "register_backend",
    "resolve_backend",
    "available_backends",
    "export_mode",
    "exporting",
    "ScanConfig",
    "get_scan_config",
    "scan_config",
    "plan_segments",
    "cross_scan",
    "cross_scan_k",
    "cross_merge",
    "cross_selective_scan",
    "expand_delta",
    "layer_norm",
]
