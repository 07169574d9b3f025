"""The resumable state of a training run: ``OUTPUT_DIR/last.pt``.

A ``torch.save`` mapping (read back with ``weights_only=True``) with the counters of :class:`Progress`, the
model, optimiser, AMP scaler and EMA states, the sampler's position, the RNG states of every rank and the
config.  :func:`save_state` writes it atomically (a crash or a full disk leaves the previous file; a failed write is
a :class:`~audiomamba.errors.WriteError` naming the file and the cause); :func:`restore_state` loads it into a
freshly built run, which then continues exactly where the saved one was: same data order, same random draws,
bit-identical weights.  The counts of skipped training clips (all ranks together) are kept too.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from audiomamba.errors import CheckpointError
from audiomamba.training.config import Config, config_to_dict
from audiomamba.training.optim import EMA
from audiomamba.utils import distributed as D
from audiomamba.utils.io import atomic_write, write_torch

__all__ = ["STATE_FORMAT", "STATE_VERSION", "CheckpointNotFoundError", "Progress", "Resumable", "load_state",
           "save_state", "restore_state",
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
    skipped: int = 0  # training examples this rank skipped (undecodable, truncated or non-finite clips)
    bad_clips: set = field(default_factory=set)  # the indices of those clips (distinct), this rank's


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
    """Write ``last.pt``.  Every rank calls it (the RNG states and skip counts of all ranks are gathered); rank 0
    writes.  ``WriteError`` (disk full, permission denied, ...) leaves the previous ``last.pt`` intact."""
    gathered = D.gather_objects((rng_state(device), progress.skipped, sorted(progress.bad_clips)))
    if D.rank() != 0:
        return
    rngs = [g[0] for g in gathered]
    skipped = sum(g[1] for g in gathered)
    bad_clips = sorted({i for g in gathered for i in g[2]})
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": progress.step, "epoch": progress.epoch,
             "micro": progress.micro, "model_name": cfg.model.name, "num_classes": num_classes,
             "world_size": D.world_size(), "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
             "scaler": parts.scaler.state_dict(), "ema": parts.ema.state_dict() if parts.ema else {},
             "sampler": {"epoch": progress.epoch, "step": progress.micro, "seed": cfg.train.seed,
                         "mode": cfg.sampling.mode},
             "rng": rngs, "best": progress.best, "skipped": skipped, "bad_clips": bad_clips,
             "config": json.dumps(config_to_dict(cfg))}
    atomic_write(path, lambda tmp: write_torch(state, tmp))


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """``--resume`` names no file: a :class:`CheckpointError` that is also a ``FileNotFoundError``."""


_STATE_KEYS = {"step": int, "epoch": int, "micro": int, "model_name": str, "num_classes": int, "world_size": int,
               "model": dict, "optimizer": dict, "rng": list, "best": dict}


def load_state(path: str | Path) -> dict:
    """Read a ``last.pt`` (tensors and plain containers only, never Python objects).  A missing, damaged or
    foreign file is a :class:`CheckpointError` naming it (``CheckpointNotFoundError`` for a missing one)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a training checkpoint (last.pt)")
    if not path.is_file():
        raise CheckpointNotFoundError(f"training checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: holds Python objects besides tensors; an audiomamba last.pt never does, "
                              "so it was not loaded (it may come from another program, or have been tampered "
                              "with)") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - torch reports truncated or garbled files as assorted errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: damaged or not a training checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an audiomamba training checkpoint")
    for key, kind in _STATE_KEYS.items():
        if not isinstance(state.get(key), kind) or (kind is int and isinstance(state.get(key), bool)):
            got = "missing" if key not in state else f"a {type(state[key]).__name__}"
            raise CheckpointError(f"{path}: damaged training checkpoint: {key!r} should be of type "
                                  f"{kind.__name__}, is {got}")
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
    try:
        parts.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            parts.scaler.load_state_dict(state["scaler"])
        if parts.ema is not None and state.get("ema"):
            parts.ema.load_state_dict(state["ema"])
        rngs = state["rng"]
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0], device)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: damaged training checkpoint, its state does not fit this run "
                              f"({first})") from None
    # the skip counts are of all ranks together: rank 0 carries them on (the totals sum over ranks)
    return Progress(step=state["step"], epoch=state["epoch"], micro=state["micro"], best=dict(state["best"]),
                    skipped=state["skipped"] if rank == 0 else 0,
                    bad_clips=set(state.get("bad_clips", ())) if rank == 0 else set())
