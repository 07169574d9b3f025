"""The resumable state of a training run: ``OUTPUT_DIR/last.pt``.

A ``torch.save`` mapping (read back with ``weights_only=True``) with the counters of :class:`Progress`, the
model, optimiser, AMP scaler and EMA states, the sampler's position, the RNG states of every rank and the
config.  :func:`save_state` writes it atomically (a crash leaves the previous file); :func:`restore_state` loads it
into a freshly built run, which then continues exactly where the saved one was: same data order, same random
draws, bit-identical weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from audiomamba.errors import CheckpointError
from audiomamba.training.config import Config, config_to_dict
from audiomamba.training.optim import EMA
from audiomamba.utils import distributed as D
from audiomamba.utils.io import atomic_write

__all__ = ["STATE_FORMAT", "STATE_VERSION", "Progress", "Resumable", "load_state", "save_state", "restore_state",
           "rng_state", "set_rng_state"]

log = logging.getLogger("audiomamba.train")

STATE_FORMAT = "audiomamba-train-state"
STATE_VERSION = 1


def _no_best() -> dict:
    return {"mAP": -1.0, "step": -1}


@dataclass
class Progress:
    """Where a run is: the counters ``last.pt`` keeps."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs done
    micro: int = 0  # micro-batches done in the current epoch
    best: dict = field(default_factory=_no_best)  # the best validation: mAP, step, epoch, ... (rank 0 only)
    skipped: int = 0  # training clips this rank could not decode


@dataclass
class Resumable:
    """The objects whose state ``last.pt`` keeps besides the counters."""

    model: nn.Module  # the model itself, not a DDP or torch.compile wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA | None


def rng_state(device: torch.device) -> dict:
    """This process's torch RNG states: the CPU generator's and, on CUDA, ``device``'s."""
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore states from :func:`rng_state` (the CUDA one only on a CUDA device)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_state(path: str | Path, progress: Progress, parts: Resumable, cfg: Config, num_classes: int,
               device: torch.device) -> None:
    """Write ``last.pt``.  Every rank calls it (the RNG states of all ranks are gathered); rank 0 writes."""
    rngs = D.gather_objects(rng_state(device))
    if D.rank() != 0:
        return
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": progress.step, "epoch": progress.epoch,
             "micro": progress.micro, "model_name": cfg.model.name, "num_classes": num_classes,
             "world_size": D.world_size(), "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
             "scaler": parts.scaler.state_dict(), "ema": parts.ema.state_dict() if parts.ema else {},
             "sampler": {"epoch": progress.epoch, "step": progress.micro, "seed": cfg.train.seed,
                         "mode": cfg.sampling.mode},
             "rng": rngs, "best": progress.best, "skipped": progress.skipped,
             "config": json.dumps(config_to_dict(cfg))}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict:
    """Read a ``last.pt`` (tensors and plain containers only); ``FileNotFoundError`` / ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an audiomamba training checkpoint")
    return state


def restore_state(path: str | Path, parts: Resumable, cfg: Config, num_classes: int, device: torch.device) -> Progress:
    """Load ``path`` into ``parts`` and this rank's RNG states; return the saved counters.

    A checkpoint of another model or class count is a ``CheckpointError``.  Resuming with another number of
    processes is allowed (the data order continues; the random streams differ) and logged."""
    state = load_state(path)
    if state["num_classes"] != num_classes or state["model_name"] != cfg.model.name:
        raise CheckpointError(f"{path}: a {state['model_name']} checkpoint with {state['num_classes']} classes "
                              f"cannot resume this run ({cfg.model.name}, {num_classes} classes)")
    rank, world = D.rank(), D.world_size()
    if state["world_size"] != world:
        log.warning("resuming a %d-process run with %d processes: data order continues, RNG streams differ",
                    state["world_size"], world)
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        parts.scaler.load_state_dict(state["scaler"])
    if parts.ema is not None and state.get("ema"):
        parts.ema.load_state_dict(state["ema"])
    rngs = state["rng"]
    set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0], device)
    return Progress(step=state["step"], epoch=state["epoch"], micro=state["micro"], best=dict(state["best"]),
                    skipped=state["skipped"])
