"""torchrun / DDP helpers: NCCL on GPU, gloo on CPU; everything is a no-op in a single process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def setup(device: str = "auto") -> tuple[torch.device, bool]:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1); returns (device, started)."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device not in ("auto", "cuda", "cpu") and not device.startswith("cuda:"):
        raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda:"):
        dev = torch.device(device)
    else:
        dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    started = False
    if ws > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        started = True
    return dev, started


def gather_objects(obj):
    """All ranks' ``obj`` as a list (rank order); ``[obj]`` in a single process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_reduce_mean(x: float) -> float:
    if world_size() == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / world_size()
