"""Inference replayed from CUDA graphs (``Tagger(cuda_graph=True)``, ``audiomamba tag --cuda-graph``).

An eager forward of Audio Mamba on a GPU is bound by the host: audiomamba_tiny_v2 at batch 64, 10 s, bf16 runs
in 9.9 ms of kernels on an H200 but takes 32 ms eagerly, the time Python needs to issue its several hundred
launches (docs/benchmarks.md).  :class:`GraphedInference` records a forward once per input shape and replays it
as one launch.

A graph replays fixed shapes, so graphs are kept per input shape (``max_graphs`` of them, least recently used
dropped first).  The first call of a shape runs eagerly, which is also the warm-up capture needs (Triton and
cuDNN pick and compile their kernels then); only a shape seen twice is captured, so a one-off shape (the tail
chunk of a long file) costs no capture.  A replay writes into the same output buffers every time; the caller
gets copies, so no result is overwritten by the next replay.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

__all__ = ["GraphedInference"]

Outputs = tuple[torch.Tensor | None, ...]


class _Graph:
    """One captured forward: its static input buffer, its graph and the outputs the graph writes."""

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], x: torch.Tensor, autocast) -> None:
        self.input = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), autocast():  # one run on a side stream, as capture asks
            fn(self.input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast():
            self.outputs = fn(self.input)

    def __call__(self, x: torch.Tensor) -> Outputs:
        self.input.copy_(x)
        self.graph.replay()
        return tuple(None if t is None else t.clone() for t in self.outputs)


class GraphedInference:
    """``fn(x)`` on a CUDA device, replayed from a CUDA graph per input shape once that shape has come twice.

    ``fn`` maps one tensor to a tuple of tensors (or ``None``s), does no host synchronisation and draws no host
    randomness (an eval-mode model).  With ``autocast_dtype`` it runs under ``torch.autocast`` with that dtype
    (the weight-cast cache disabled, as capture needs), eagerly too, so the two paths compute the same thing.
    """

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], autocast_dtype: torch.dtype | None = None,
                 max_graphs: int = 8) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device, and torch sees none")
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.fn, self.autocast_dtype, self.max_graphs = fn, autocast_dtype, max_graphs
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._seen: set[tuple] = set()
        self.captures = 0  # graphs captured so far (evicted ones included)
        self.replays = 0

    def _autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast("cuda", dtype=dtype or torch.float32, cache_enabled=False, enabled=dtype is not None)

    def __call__(self, x: torch.Tensor, variant: Hashable = None) -> Outputs:
        """``fn(x)``; ``variant`` names any state besides ``x``'s shape that changes what ``fn`` launches (the
        model's layout), so each variant gets graphs of its own."""
        if x.device.type != "cuda":
            raise ValueError(f"GraphedInference: the input is on {x.device}, not a CUDA device")
        key = (tuple(x.shape), x.dtype, x.device, variant)
        graph = self._graphs.get(key)
        if graph is None:
            if key not in self._seen:
                self._seen.add(key)
                with self._autocast():
                    return self.fn(x)
            if len(self._graphs) >= self.max_graphs:
                self._graphs.popitem(last=False)  # its memory pool goes with it
            graph = self._graphs[key] = _Graph(self.fn, x, self._autocast)
            self.captures += 1
        self._graphs.move_to_end(key)
        self.replays += 1
        return graph(x)
