"""The Triton GPU kernels, each kernel module beside the module that launches it.

- :mod:`~audiomamba.ops.triton.scan_kernels` (``@triton.jit`` functions) and :mod:`~audiomamba.ops.triton.scan`
  (operand views, flags and grids, autograd, the ``torch.library`` custom ops): the selective scan, plain and
  SS2D's four-direction cross-scan, the scan backend "triton".
- :mod:`~audiomamba.ops.triton.layer_norm_kernels` and :mod:`~audiomamba.ops.triton.layer_norm`: the LayerNorm
  that :func:`audiomamba.ops.layer_norm` runs on CUDA.

Triton is optional.  This package imports nothing; importing one of its modules without triton raises
ImportError, and :mod:`audiomamba.ops` imports them only on the first CUDA call, falling back to PyTorch.
"""
