"""CUDA graphs: record a forward (inference) or a forward and backward (training) once, replay it as one launch.

An eager forward of Audio Mamba on a GPU is bound by the host, not the device: Python takes longer to issue the
several hundred kernel launches of a forward than the device takes to run them (figures in docs/benchmarks.md).
A CUDA graph removes that cost.

:class:`GraphedInference` (``Tagger(cuda_graph=True)``, ``audiomamba tag --cuda-graph``) keeps one graph per input
shape (``max_graphs`` of them, least recently used dropped first).  The first call of a shape runs eagerly, which
is also the warm-up capture needs (Triton and cuDNN pick and compile their kernels then); only a shape seen twice
is captured, so a one-off shape (the tail chunk of a long file) costs no capture.  A replay writes into the same
output buffers every time; the caller gets copies.  All its graphs draw their memory from one pool, so a tagger
that meets many lengths holds about one forward's working memory, not one per graph.  Sharing is safe here
because replays run one at a time on one stream and every replay's outputs are copied out before the next:
a later capture may reuse blocks an earlier graph freed (its intermediates), and a replay may overwrite another
graph's stale outputs, never a result the caller holds.

:class:`GraphedTraining` (``train.cuda_graph``) records the forward and backward with
``torch.cuda.make_graphed_callables``; the loss, the optimiser and the EMA stay eager.  What a graph cannot do,
and how this module keeps it from giving wrong numbers:

- It replays fixed shapes.  :meth:`GraphedTraining.accepts` says whether a batch has the captured shapes, and
  calling it with other shapes raises (PyTorch's copy into the static input would broadcast a batch of one
  silently).  The trainer runs such batches eagerly.
- Randomness must come from the CUDA generator, which graphs advance on every replay (SpecAugment and drop path
  do).  A draw on the host would be frozen into the graph (see
  :func:`audiomamba.training.step.check_graphable`).
- ``torch.autograd`` hands the graph's static gradient buffers to the parameters, and a parameter without a
  ``.grad`` would keep the buffer itself as its gradient, which the next replay overwrites (wrong sums under
  gradient accumulation).  :meth:`GraphedTraining.__call__` gives every parameter a gradient tensor of its own
  first; keep them with ``optimizer.zero_grad(set_to_none=False)``.

Both capture in CUDA's thread-local mode (:data:`CAPTURE_MODE`).  In the default, global mode, a CUDA call that
is unsafe during capture made by *any* thread of the process invalidates the capture; a DataLoader's pin-memory
thread allocating a new pinned block is such a call, and it made capture fail at random in the middle of
training (seen on an H200: the third of five cross-validation folds).  Thread-local mode, which torch.compile's
CUDA graphs use as well, limits the check to the capturing thread.

Both run under :func:`graph_autocast` when given a compute dtype: ``torch.autocast`` with the weight-cast cache
disabled, as capture needs, and the same context eagerly so the two paths compute the same thing.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn

__all__ = ["GraphedInference", "GraphedTraining", "graph_autocast", "graph_rows", "CAPTURE_MODE"]

Outputs = tuple[torch.Tensor | None, ...]
CAPTURE_MODE = "thread_local"  # see the module docstring: other threads' CUDA calls do not break a capture


@contextlib.contextmanager
def _thread_local_capture():
    """While it is open, ``torch.cuda.graph`` captures in :data:`CAPTURE_MODE`.  ``make_graphed_callables``
    opens ``torch.cuda.graph`` itself and has no option for the mode, so its default is set for the call."""
    original = torch.cuda.graph
    torch.cuda.graph = functools.partial(original, capture_error_mode=CAPTURE_MODE)
    try:
        yield
    finally:
        torch.cuda.graph = original


def graph_autocast(dtype: torch.dtype | None):
    """``torch.autocast`` on CUDA to ``dtype`` with the weight-cast cache disabled (capture needs that); a no-op
    context for None / float32."""
    enabled = dtype is not None and dtype != torch.float32
    return torch.autocast("cuda", dtype=dtype if enabled else torch.float32, cache_enabled=False, enabled=enabled)


def graph_rows(rows: int, limit: int) -> int:
    """The batch size a batch of ``rows`` is padded to for a replay: the next power of 8 (1, 8, 64, ...), at
    most ``limit``.  Batches of one input length then share at most a few graphs, and a small batch never runs
    more than 8 times its rows (on a GPU a pass that small is bound by the launches, which a graph removes)."""
    if not 1 <= rows <= limit:
        raise ValueError(f"rows must be in [1, {limit}], got {rows}")
    padded = 1
    while padded < rows:
        padded *= 8
    return min(padded, limit)


class _Graph:
    """One captured forward: its static input buffer, its graph and the outputs the graph writes."""

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], x: torch.Tensor, autocast, pool=None) -> None:
        self.input = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), autocast():  # one run on a side stream, as capture asks
            fn(self.input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool, capture_error_mode=CAPTURE_MODE), autocast():
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
                 max_graphs: int = 128) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device, and torch sees none")
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.fn, self.autocast_dtype, self.max_graphs = fn, autocast_dtype, max_graphs
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._seen: set[tuple] = set()
        self._pool = torch.cuda.graph_pool_handle()  # one memory pool for all the graphs (module docstring)
        self.captures = 0  # graphs captured so far (evicted ones included)
        self.replays = 0

    def _autocast(self):
        return graph_autocast(self.autocast_dtype)

    def __call__(self, x: torch.Tensor, variant: Hashable = None) -> Outputs:
        """``fn(x)``; ``variant`` names anything besides ``x``'s shape that changes what ``fn`` launches (the
        layout the model runs in), so each variant gets graphs of its own."""
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
            graph = self._graphs[key] = _Graph(self.fn, x, self._autocast, self._pool)
            self.captures += 1
        self._graphs.move_to_end(key)
        self.replays += 1
        return graph(x)


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
        with graph_autocast(autocast_dtype), _thread_local_capture():
            self._graphed = torch.cuda.make_graphed_callables(module, static, num_warmup_iters=warmup_iters,
                                                              allow_unused_input=True)
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(saved[name])
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the warm-up ran on a side stream, whose cached blocks no other stream reuses

    def accepts(self, *args: torch.Tensor) -> bool:
        """True when ``args`` have the captured shapes, dtypes and device."""
        return [(tuple(t.shape), t.dtype, t.device) for t in args] == self._signature

    def __call__(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The module's output (a tensor, or a tuple of tensors when the module returns one), from the replay."""
        if not self.accepts(*args):
            got = [(tuple(t.shape), t.dtype) for t in args]
            want = [(s, d) for s, d, _ in self._signature]
            raise ValueError(f"GraphedTraining: the graph was captured for inputs {want}, got {got}")
        for p in self._params:  # see the module docstring: never let a parameter adopt a static gradient buffer
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return self._graphed(*args)
