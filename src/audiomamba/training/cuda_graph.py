"""Training forward and backward replayed from CUDA graphs (``train.cuda_graph``).

Eager training of Audio Mamba on a GPU is bound by the host, not the device: an H100 runs audiomamba_tiny_v2's
step (batch 64, 10 s, bf16) in 40 ms of kernels, while Python needs 70-94 ms to issue the several hundred
launches (docs/benchmarks.md).  :class:`GraphedTraining` records the forward and the backward once with
``torch.cuda.make_graphed_callables`` and then replays each as a single launch; the loss, the optimiser and the
EMA stay eager (a few fused launches).

What a graph cannot do, and how this module keeps it from giving wrong numbers:

- It replays fixed shapes.  :meth:`GraphedTraining.accepts` says whether a batch has the captured shapes, and
  calling it with other shapes raises (PyTorch's copy into the static input would broadcast a batch of one
  silently).  The trainer runs such batches (a batch that lost an undecodable clip, the last one) eagerly.
- Randomness must come from the CUDA generator, which graphs advance on every replay (SpecAugment and drop path
  do).  A draw on the host would be frozen into the graph: the fold layout's random crop of clips longer than
  1024 frames draws on the host, so :func:`check_graphable` refuses that configuration.
- ``torch.autograd`` hands the graph's static gradient buffers to the parameters, and a parameter without a
  ``.grad`` would keep the buffer itself as its gradient, which the next replay overwrites (wrong sums under
  gradient accumulation).  :meth:`GraphedTraining.__call__` gives every parameter a gradient tensor of its own
  first; keep them with ``optimizer.zero_grad(set_to_none=False)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["GraphedTraining", "AudioMambaLogits", "check_graphable"]


class AudioMambaLogits(nn.Module):
    """``(wave[, mixup_lambda]) -> clip logits`` of an Audio Mamba model in training: the tensor-only forward a
    CUDA graph records.  The waveform's finiteness check (a host sync) is left to the data loader, which checks
    every decoded clip."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor, *mixup_lambda: torch.Tensor) -> torch.Tensor:
        lam = mixup_lambda[0] if mixup_lambda else None
        return self.model(wave, mixup_lambda=lam, check_finite=False).logits


def check_graphable(model: nn.Module, samples: int) -> None:
    """Raise ``ValueError`` if a training forward of ``samples``-long clips draws randomness on the host."""
    from audiomamba.models.audiomamba import FOLD_FRAMES

    frames = model.frontend.num_frames(samples)
    if model.layout == "fold" and frames > FOLD_FRAMES:
        raise ValueError(
            f"train.cuda_graph: fold-layout training crops clips longer than {FOLD_FRAMES} frames at a random "
            f"position chosen on the host, which a CUDA graph would freeze; these clips have {frames} frames. "
            "Use data.clip_seconds <= 10.24 (at 32 kHz), model.layout: native, or train.cuda_graph: false"
        )


class GraphedTraining:
    """``module(*args)`` for training, its forward and backward replayed from CUDA graphs.

    ``module`` must be in training mode, on a CUDA device, without hooks; ``example`` holds tensors of the
    shapes and dtypes every call will pass (their values are used for warm-up and capture).  With
    ``autocast_dtype`` the forward runs under ``torch.autocast`` with that dtype (the cache disabled, as
    capture needs).  Buffers (BatchNorm statistics) are restored after the warm-up and capture runs, so
    capturing does not change the model.
    """

    def __init__(self, module: nn.Module, example: Sequence[torch.Tensor], autocast_dtype: torch.dtype | None = None,
                 warmup_iters: int = 3) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        params = [p for p in module.parameters() if p.requires_grad]
        if not params or any(p.device.type != "cuda" for p in params):
            raise ValueError("GraphedTraining: the module's parameters must be on a CUDA device")
        if not module.training:
            raise ValueError("GraphedTraining: the module must be in training mode (module.train())")
        self._signature = [(tuple(t.shape), t.dtype, t.device) for t in example]
        self._params = params
        static = tuple(t.detach().clone() for t in example)  # the graph's own input buffers
        saved = {name: b.detach().clone() for name, b in module.named_buffers()}
        # The captured outputs keep the parameters' gradient accumulators alive, recorded on the capture stream; the
        # autograd engine then adds an event wait per parameter and warns at every backward.  The waits cost
        # microseconds, and the engine syncs those streams with the caller's at the end of each backward.
        warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
        with self._autocast(autocast_dtype):
            self._graphed = torch.cuda.make_graphed_callables(module, static, num_warmup_iters=warmup_iters,
                                                              allow_unused_input=True)
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(saved[name])
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the warm-up ran on a side stream, whose cached blocks no other stream reuses

    @staticmethod
    def _autocast(dtype: torch.dtype | None):
        return torch.autocast("cuda", dtype=dtype, cache_enabled=False, enabled=dtype is not None)

    def accepts(self, *args: torch.Tensor) -> bool:
        """True when ``args`` have the captured shapes, dtypes and device."""
        return [(tuple(t.shape), t.dtype, t.device) for t in args] == self._signature

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if not self.accepts(*args):
            got = [(tuple(t.shape), t.dtype) for t in args]
            want = [(s, d) for s, d, _ in self._signature]
            raise ValueError(f"GraphedTraining: the graph was captured for inputs {want}, got {got}")
        for p in self._params:  # see the module docstring: never let a parameter adopt a static gradient buffer
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return self._graphed(*args)
