"""torchrun / DDP helpers: NCCL on GPU, gloo on CPU; everything is a no-op in a single process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from audiomamba.utils.device import resolve_device


__all__ = ["world_size", "rank", "is_distributed", "setup", "all_reduce_gradients", "broadcast_buffers", "process_group", "gather_objects", "barrier", "all_reduce_mean",
           "GlooSyncBatchNorm", "convert_sync_batchnorm"]


def world_size() -> int:
    """The number of processes of the job (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without an initialised process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_distributed() -> bool:
    """Whether a process group is initialised (a torchrun job, one process included)."""
    return dist.is_available() and dist.is_initialized()


def setup(device: str = "auto") -> tuple[torch.device, bool]:
    """Initialise the process group when launched by torchrun (one process too: it then runs the multi-GPU code
    path on one GPU); returns (device, started)."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    launched = ws > 1 or ("RANK" in os.environ and "LOCAL_RANK" in os.environ and "MASTER_ADDR" in os.environ)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise ValueError(f"train.device: {e}") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local}")  # one process per GPU under torchrun
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    started = False
    if launched and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        started = True
    return dev, started


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[torch.device]:
    """:func:`setup` for the duration of the block: yields this process's device, and destroys the process
    group on exit if this call started it: after a barrier when the block ended normally, so that no rank tears
    down its group while another still runs a collective (not after an error: the other ranks may never come)."""
    dev, started = setup(device)
    finished = False
    try:
        yield dev
        finished = True
    finally:
        if started:
            if finished:
                barrier()
            dist.destroy_process_group()


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Average the gradients of ``model``'s trainable parameters over the ranks, in one all-reduce of one flat
    buffer per dtype (a parameter without a gradient counts as zero, so every rank sends the same layout).  What
    DDP does during the backward, for a backward DDP cannot hook into (one replayed from a CUDA graph).  The
    gradients are updated in place: a graph's static gradient buffers stay where they are."""
    if not is_distributed():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(world_size())
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics and counters) to every rank, in place."""
    if not is_distributed():
        return
    for b in model.buffers():
        if b.is_contiguous():
            dist.broadcast(b, src=0)
        else:  # NCCL takes contiguous tensors only (a buffer may be a view, e.g. a transposed filter bank)
            t = b.contiguous()
            dist.broadcast(t, src=0)
            b.copy_(t)


def gather_objects(obj):
    """All ranks' ``obj`` as a list (rank order); ``[obj]`` in a single process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        dist.barrier()


def all_reduce_mean(x: float) -> float:
    """The mean of ``x`` over the ranks (``x`` in a single process)."""
    if world_size() == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / world_size()


class GlooSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm with statistics over the global batch, for CPU/gloo (``nn.SyncBatchNorm`` is GPU-only), over
    channel 1 of an input of any rank >= 2 (as BatchNorm1d's or BatchNorm2d's).

    Sums and sums of squares are all-reduced with a differentiable all-reduce, so forward, backward and the
    running statistics equal those of one process holding the whole batch.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of rank >= 2 (batch, channels, ...), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        n_local = x.numel() // x.shape[1]
        c = x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        stats = all_reduce(torch.cat([x.sum(dims), x.new_full((1,), float(n_local))]))
        n = stats[-1]
        mean = stats[:c] / n
        var = all_reduce((x - mean.view(shape)).pow(2).sum(dims)) / n  # two passes: no cancellation
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """SyncBatchNorm on GPU; :class:`GlooSyncBatchNorm` for every ``BatchNorm1d`` and ``BatchNorm2d`` on CPU."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d):
            new = GlooSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new.to(next(child.parameters()).device) if child.affine else new)
        else:
            convert_sync_batchnorm(child, device)
    return model
