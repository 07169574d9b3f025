"""Model operators: the selective scan and the 2D cross-scan around it, and the LayerNorm.

Layout follows mamba-ssm: a readable reference next to each fast implementation, one public function that
dispatches between them (:func:`selective_scan`, :func:`cross_selective_scan`), and tests comparing them.
"""

from audiomamba.ops.cross_scan import cross_merge, cross_scan, cross_scan_k, cross_selective_scan
from audiomamba.ops.scan_ref import selective_scan_ref
from audiomamba.ops.scan_torch import selective_scan_torch
from audiomamba.ops.layer_norm import layer_norm
from audiomamba.ops.selective_scan import available_backends, export_mode, exporting, register_backend, selective_scan

__all__ = [
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
    "register_backend",
    "available_backends",
    "export_mode",
    "exporting",
    "cross_scan",
    "cross_scan_k",
    "cross_merge",
    "cross_selective_scan",
    "layer_norm",
]
