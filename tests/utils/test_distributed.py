"""utils.distributed's gradient all-reduce and buffer broadcast, in a one-process gloo group (the two-process
training tests are in tests/training/test_train.py)."""

import contextlib
import copy
import socket

import pytest
import torch
import torch.distributed as dist

from audiomamba.utils import distributed as D


@pytest.fixture
def group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 2)
        self.b = torch.nn.Linear(2, 2)  # never used: no gradient
        self.register_buffer("stats", torch.arange(6.0).reshape(2, 3))
        self.register_buffer("view", torch.arange(6.0).reshape(2, 3).t())  # a non-contiguous buffer


def test_all_reduce_and_broadcast_in_place(group):
    net = _Net()
    net.a(torch.randn(4, 3)).sum().backward()
    grad = net.a.weight.grad
    before = grad.clone()
    D.all_reduce_gradients(net)
    assert net.a.weight.grad is grad and torch.equal(grad, before)  # world of one: the mean is the value, in place
    assert torch.equal(net.b.weight.grad, torch.zeros(2, 2))  # unused parameters count as zero gradients
    assert not net.view.is_contiguous()
    D.broadcast_buffers(net)  # NCCL refuses non-contiguous tensors: the view goes through a contiguous copy
    assert torch.equal(net.view, torch.arange(6.0).reshape(2, 3).t()) and torch.equal(net.stats, torch.arange(6.0).reshape(2, 3))


def test_no_op_without_a_process_group():
    net = _Net()
    D.all_reduce_gradients(net)  # no gradients touched, none created
    D.broadcast_buffers(net)
    assert net.a.weight.grad is None and not D.is_distributed()


def _launched_as_one_rank(monkeypatch, port: int) -> None:
    """The environment torchrun gives a one-process job."""
    for k, v in dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0").items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("fails", [False, True])
def test_process_group_waits_for_the_others_before_teardown_only_when_the_block_ended_normally(monkeypatch, fails):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _launched_as_one_rank(monkeypatch, port)
    waited = []
    monkeypatch.setattr(D, "barrier", lambda: waited.append(dist.is_initialized()))
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with D.process_group("cpu") as dev:
            assert dev == torch.device("cpu") and D.is_distributed()
            if fails:
                raise RuntimeError("a rank's training failed")
    assert waited == ([] if fails else [True])  # a failed rank does not wait for ranks that may never come
    assert not D.is_distributed()  # torn down either way


@pytest.mark.parametrize("shape", [(7, 5), (3, 5, 4, 2)], ids=["BatchNorm1d", "BatchNorm2d"])
def test_gloo_sync_batchnorm_matches_batchnorm(group, monkeypatch, shape):
    """convert_sync_batchnorm swaps BatchNorm1d (the models' bn0) and BatchNorm2d for GlooSyncBatchNorm on a CPU; its
    all-reduced path, taken here in a one-rank group, gives BatchNorm's output, gradients and running statistics."""
    torch.manual_seed(0)
    bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1.0, 1.0)
    model = torch.nn.Sequential(copy.deepcopy(bn))
    D.convert_sync_batchnorm(model, torch.device("cpu"))
    assert type(model[0]) is D.GlooSyncBatchNorm
    monkeypatch.setattr(D, "world_size", lambda: 2)  # the all-reduce path (one rank: the sums are the local ones)
    x = torch.randn(shape) * 3 + 1
    dy = torch.randn(shape)
    outs = []
    for m in (bn, model[0]):
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * dy).sum().backward()
        outs.append((y, xi.grad, m.weight.grad, m.bias.grad, m.running_mean, m.running_var))
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
