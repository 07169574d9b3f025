"""Tuning knobs of the selective-scan implementations, in one frozen :class:`ScanConfig`.

The knobs trade speed and memory; none changes a result beyond float32 rounding.  Read them with
:func:`get_scan_config`, change them for a block of code with :func:`scan_config`::

    from audiomamba import ops

    with ops.scan_config(segments=4, triton_fwd_warps=4):
        model(x)

The setting lives in a context variable, like :func:`audiomamba.ops.export_mode`: it is scoped to the thread
(and task) that sets it and always restored on leaving the block.  The Triton and CPU kernels read it when they
run (also inside compiled graphs); the PyTorch scan reads it where ``torch.compile`` traces it, which splits
the graph there (its data-dependent block splitting does anyway).  Measurements behind the defaults:
``docs/kernels.md`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import torch

__all__ = ["ScanConfig", "get_scan_config", "scan_config", "plan_segments"]


@dataclass(frozen=True)
class ScanConfig:
    """Tuning knobs of the scan backends (see :mod:`audiomamba.ops`).

    PyTorch scan (``"torch"``, :mod:`audiomamba.ops.scan_torch`):

    - ``torch_block``: steps solved in closed form at once (halved where a block would decay too far).
    - ``torch_chunk_elements``: state values (batch x channels x steps x state) per chunk; each chunk is
      checkpointed under autograd, so this bounds the memory the scan holds at once (float32: 32 MiB a tensor).

    Fused CPU kernel (``"cpu"``, :mod:`audiomamba.ops.scan_cpu`):

    - ``cpu_blocks``: ``(channels per job, tokens per tile)`` pairs, tried largest first: longer vector loops run
      faster, and a tile's decays (tile x state x channels floats) stay in L1.

    Triton kernels (``"triton"``, :mod:`audiomamba.ops.triton.scan`):

    - ``triton_fwd_warps`` / ``triton_bwd_warps``: warps per program of the forward / backward; one thread owns
      one channel, so a program covers 32 channels per warp.
    - ``segments``: forward segments per stream (more threads for a latency-bound walk, at the cost of reading
      the inputs twice); ``None``: the rule of :func:`plan_segments`, on ``segment_walkers`` and
      ``min_segment_chunks``.
    - ``i64_span``: tensors spanning this many elements switch the kernels to 64-bit offsets (tests lower it to
      exercise that variant on small tensors).
    """

    torch_block: int = 16
    torch_chunk_elements: int = 1 << 23
    cpu_blocks: tuple[tuple[int, int], ...] = ((128, 4), (96, 4), (64, 8), (48, 8), (32, 8))
    triton_fwd_warps: int = 2
    triton_bwd_warps: int = 1
    segments: int | None = None
    segment_walkers: int = 24576
    min_segment_chunks: int = 4
    i64_span: int = 2**31

    def __post_init__(self) -> None:
        for name in ("torch_block", "torch_chunk_elements", "triton_fwd_warps", "triton_bwd_warps",
                     "segment_walkers", "min_segment_chunks", "i64_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScanConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.segments is not None and self.segments < 1:
            raise ValueError(f"ScanConfig.segments must be None (the rule) or >= 1, got {self.segments}")
        if not self.cpu_blocks or any(cb < 1 or tile < 1 for cb, tile in self.cpu_blocks):
            raise ValueError(f"ScanConfig.cpu_blocks must be non-empty (channels, tile) pairs >= 1, got {self.cpu_blocks}")


_CONFIG: contextvars.ContextVar[ScanConfig] = contextvars.ContextVar("audiomamba_scan_config", default=ScanConfig())


# The config most recently put in effect by any thread, for code that dynamo traces: it cannot trace
# ``ContextVar.get`` (a graph break at every call); a module global it reads as a guarded constant.
_LATEST: ScanConfig = _CONFIG.get()


def get_scan_config() -> ScanConfig:
    """The scan knobs in effect here: the defaults, or what the innermost :func:`scan_config` set (under
    ``torch.compile``: the one most recently set in any thread)."""
    if torch.compiler.is_compiling():
        return _LATEST
    return _CONFIG.get()


@contextlib.contextmanager
def scan_config(config: ScanConfig | None = None, /, **changes: Any) -> Iterator[ScanConfig]:
    """Inside the block, :func:`get_scan_config` returns ``config`` (default: the one in effect) with ``changes``
    applied, e.g. ``scan_config(segments=1)``; yields that config.  Unknown names raise ``TypeError``."""
    global _LATEST
    new = dataclasses.replace(config if config is not None else get_scan_config(), **changes)
    token = _CONFIG.set(new)
    _LATEST = new
    try:
        yield new
    finally:
        _CONFIG.reset(token)
        _LATEST = _CONFIG.get()


def plan_segments(walks: int, n_chunks: int, config: ScanConfig | None = None) -> int:
    """Segments per stream for a Triton forward of ``walks`` parallel (batch x direction x channel) walks of
    ``n_chunks`` chunks each.

    ``config.segments`` when set (at most one per chunk); otherwise the rule: split until about
    ``segment_walkers`` walks run, keeping at least ``min_segment_chunks`` chunks per segment.  A full batch is
    not split; a batch of one long file has 1/64 of its walks, each 64 times as long, and is split about 64 ways.
    """
    cfg = config if config is not None else get_scan_config()
    if cfg.segments is not None:
        return max(1, min(cfg.segments, n_chunks))
    wanted = -(-cfg.segment_walkers // max(1, walks))  # ceil
    return max(1, min(wanted, n_chunks // cfg.min_segment_chunks))
