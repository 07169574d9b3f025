"""The resumable state last.pt: what save_state writes, restore_state gives back; wrong files are refused."""

import pytest
import torch

from audiomamba.checkpoint import CheckpointError
from audiomamba.training.config import load_config
from audiomamba.training.optim import EMA
from audiomamba.training.state import STATE_FORMAT, Progress, Resumable, load_state, restore_state, save_state

CPU = torch.device("cpu")


def _parts(seed):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return Resumable(model, opt, torch.amp.GradScaler("cuda", enabled=False), EMA(model, 0.5))


def test_state_round_trip(tmp_path):
    cfg = load_config(raw={"data": {"root": "x"}, "model": {"name": "audiomamba_nano"}, "train": {"seed": 3}})
    parts = _parts(0)
    parts.model(torch.randn(4, 3)).sum().backward()
    parts.optimizer.step()
    parts.ema.update(parts.model)
    progress = Progress(step=5, epoch=1, micro=2, best={"mAP": 0.5, "step": 4, "epoch": 1}, skipped=1)
    torch.manual_seed(123)
    save_state(tmp_path / "last.pt", progress, parts, cfg, 2, CPU)
    want = torch.rand(3)  # the draw after the save: a restored run makes it again

    state = load_state(tmp_path / "last.pt")
    assert state["format"] == STATE_FORMAT and state["sampler"] == {"epoch": 1, "step": 2, "seed": 3, "mode": "shuffle"}
    fresh = _parts(1)
    got = restore_state(tmp_path / "last.pt", fresh, cfg, 2, CPU)
    assert got == progress
    assert torch.equal(torch.rand(3), want)
    for a, b in zip(parts.model.state_dict().values(), fresh.model.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh.optimizer.state_dict()["state"][0]["step"] == 1
    assert all(torch.equal(v, fresh.ema.shadow[k]) for k, v in parts.ema.shadow.items())

    with pytest.raises(CheckpointError, match="cannot resume this run"):
        restore_state(tmp_path / "last.pt", _parts(2), cfg, 3, CPU)
    torch.save({"step": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an audiomamba training checkpoint"):
        load_state(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.pt")


def test_ema_state_lands_on_the_weights_device():
    """last.pt is read onto the CPU; a restored EMA must average on the device of the weights (on a GPU run, a CPU
    shadow made the first update after resuming fail).  The meta device stands in for a GPU here."""
    ema = EMA(torch.nn.Linear(3, 2).to("meta"), 0.5)
    ema.load_state_dict(EMA(torch.nn.Linear(3, 2), 0.9).state_dict())
    assert ema.decay == 0.9 and all(v.device.type == "meta" for v in ema.shadow.values())
