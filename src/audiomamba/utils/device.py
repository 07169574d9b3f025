"""The one place that turns user-facing device and precision names into torch objects.

``resolve_device``: ``"auto"``/None -> CUDA when available, else CPU; a CUDA device that is not there is an
error, never a silent CPU fallback.  ``resolve_dtype``: ``"float32"``/``"bf16"``/... -> a torch dtype.
``autocast``: the context a forward runs under for a compute dtype (none for float32).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "resolve_dtype", "autocast", "DTYPE_NAMES", "PRECISION_DTYPES"]

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
# train.precision values -> compute dtype
PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> cuda if available else cpu; a CUDA device that is not there is a clear ``ValueError``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available here; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """None -> float32; a name of :data:`DTYPE_NAMES` or a float32/bfloat16/float16 dtype -> that dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
        dtype = DTYPE_NAMES[dtype]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype, cache_enabled: bool | None = None):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for float32.

    ``cache_enabled=False`` is what CUDA-graph capture needs (the weight-cast cache would be captured)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    kwargs = {} if cache_enabled is None else {"cache_enabled": cache_enabled}
    return torch.autocast(device.type, dtype=dtype, **kwargs)
