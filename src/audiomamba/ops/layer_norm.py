"""LayerNorm over the last axis with a chosen output dtype: the fused Triton kernel on CUDA
(:mod:`audiomamba.ops.triton.layer_norm`), ``torch.nn.functional.layer_norm`` everywhere else (the reference)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.cache
def _fast_module():
    """The Triton launcher's module, or None when triton is not installed (imported on the first CUDA call)."""
    try:
        from audiomamba.ops.triton import layer_norm as fast
    except ImportError:
        return None
    return fast


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5,
               out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Normalise x over its last axis (float32 statistics), scale by ``weight``, shift by ``bias``, and return
    it in ``out_dtype`` (default: x's dtype).  Differentiable.  Under ``torch.compile`` the PyTorch form is
    used, which inductor fuses with its neighbours itself."""
    out_dtype = out_dtype or x.dtype
    if x.is_cuda and not torch.compiler.is_compiling():
        fast = _fast_module()
        if fast is not None and fast.supports(x, weight, bias):
            return fast.layer_norm_triton(x, weight, bias, eps, out_dtype)
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps).to(out_dtype)
