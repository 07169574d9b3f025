"""Resumable, distributed-aware batch samplers.

An epoch is a fixed sequence of global batches, drawn from ``(seed, epoch)`` alone, so that every rank computes
the same sequence and takes its own slice of each global batch (rank r gets items ``[r*b, (r+1)*b)`` of a
global batch of ``b * world_size``): N processes with per-rank batch b see exactly the examples one process
with batch N*b sees.  Each item is ``(clip_index, seed)``; the seed drives that example's augmentation.
The position (epoch, step) is the whole state: ``state_dict`` / ``load_state_dict`` resume mid-epoch.

Modes: ``shuffle`` (a permutation of the clips per epoch) and ``balanced`` (AudioSet-style, class-uniform: each
draw takes the next class of a shuffled class cycle, then the next clip of that class's shuffled queue).
"""

from __future__ import annotations

import numpy as np

from audiomamba.datasets.core import ClipSet, DatasetError

__all__ = ["BatchSampler"]


class BatchSampler:
    def __init__(self, cs: ClipSet, batch_size: int, mode: str = "shuffle", epoch_size: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if mode not in ("shuffle", "balanced", "sequential"):
            raise ValueError(f"sampling mode must be shuffle, balanced or sequential, got {mode!r}")
        self.cs, self.b, self.mode, self.seed = cs, int(batch_size), mode, int(seed)
        self.rank, self.world = int(rank), int(world_size)
        self.global_batch = self.b * self.world
        self.epoch_size = int(epoch_size or len(cs))
        self.steps_per_epoch = self.epoch_size // self.global_batch
        if self.steps_per_epoch < 1:
            raise DatasetError(f"{cs.name}: {self.epoch_size} clips per epoch is less than one global batch "
                               f"({self.global_batch}); lower the batch size")
        if mode == "balanced":
            self.by_class = [[] for _ in range(cs.num_classes)]
            for i, c in enumerate(cs.clips):
                for t in c.targets:
                    self.by_class[t].append(i)
            self.classes = [k for k, v in enumerate(self.by_class) if v]
        self.epoch, self.step = 0, 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global sequence of clip indices of ``epoch`` (``steps_per_epoch * global_batch`` long)."""
        rng = np.random.default_rng([self.seed, epoch, 0xA0D10])
        n = self.steps_per_epoch * self.global_batch
        if self.mode == "sequential":
            return np.arange(n) % len(self.cs)
        if self.mode == "shuffle":
            reps = -(-n // len(self.cs))
            return np.concatenate([rng.permutation(len(self.cs)) for _ in range(reps)])[:n]
        queues = {k: list(rng.permutation(self.by_class[k])) for k in self.classes}
        pos = dict.fromkeys(self.classes, 0)
        out, cycle = [], []
        for _ in range(n):
            if not cycle:
                cycle = list(rng.permutation(self.classes))
            k = cycle.pop()
            q = queues[k]
            if pos[k] >= len(q):
                q[:] = list(rng.permutation(self.by_class[k]))
                pos[k] = 0
            out.append(q[pos[k]])
            pos[k] += 1
        return np.asarray(out)

    def item_seed(self, epoch: int, position: int) -> int:
        return int(np.random.default_rng([self.seed, epoch, position, 0x5EED]).integers(0, 2**62))

    def __len__(self) -> int:
        return self.steps_per_epoch - self.step

    def __iter__(self):
        order = self.epoch_order(self.epoch)
        for step in range(self.step, self.steps_per_epoch):
            base = step * self.global_batch + self.rank * self.b
            yield [(int(order[p]), self.item_seed(self.epoch, p)) for p in range(base, base + self.b)]

    def set_position(self, epoch: int, step: int = 0) -> None:
        self.epoch, self.step = int(epoch), int(step)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed, "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        self.set_position(state["epoch"], state["step"])
