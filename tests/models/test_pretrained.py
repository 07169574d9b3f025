"""Initialising Audio Mamba from official-format ImageNet VMamba checkpoints."""

import pytest
import torch
from safetensors.torch import save_file

import audiomamba
from audiomamba.models.pretrained import CheckpointError


@pytest.fixture(scope="module")
def official_tiny_s1l8():
    torch.manual_seed(1)
    model = audiomamba.create_model("vmamba_tiny_s1l8")
    with torch.no_grad():
        for p in model.parameters():  # move every tensor away from its initial value
            p.add_(torch.randn_like(p) * 0.01)
    return model.state_dict()


def _check_loaded(model, state, adapt):
    got = model.state_dict()
    for k, v in state.items():
        if k.startswith("classifier.head"):
            continue
        if k == "patch_embed.0.weight":
            torch.testing.assert_close(got["backbone." + k], adapt(v))
        elif k.startswith("classifier.norm."):
            torch.testing.assert_close(got[k.replace("classifier.norm.", "head.norm.")], v)
        else:
            torch.testing.assert_close(got["backbone." + k], v)


@pytest.mark.parametrize("fmt", ["pth_model", "pth_raw", "safetensors"])
def test_loads_official_checkpoint_formats(tmp_path, official_tiny_s1l8, fmt):
    state = official_tiny_s1l8
    if fmt == "pth_model":
        path = tmp_path / "vssm_tiny.pth"
        torch.save({"model": state, "epoch": 300}, path)
    elif fmt == "pth_raw":
        path = tmp_path / "raw.pth"
        torch.save(state, path)
    else:
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = audiomamba.create_model("audiomamba_tiny_v2", pretrained_backbone=path)
    _check_loaded(model, state, lambda w: w.mean(1, keepdim=True))
    report = model.pretrained_report
    assert report.dropped == ["classifier.head.bias", "classifier.head.weight"]
    assert not report.unexpected
    assert "bn0.weight" in report.missing and "head.tscam_conv.weight" in report.missing
    assert not any(k.startswith("backbone.") for k in report.missing)


def test_ema_and_sum_stem(tmp_path, official_tiny_s1l8):
    path = tmp_path / "ema.pth"
    ema = {k: v + 1 for k, v in official_tiny_s1l8.items()}
    torch.save({"model": official_tiny_s1l8, "model_ema": ema}, path)
    from audiomamba.models.pretrained import init_backbone_from_imagenet

    model = audiomamba.create_model("audiomamba_tiny_v2")
    init_backbone_from_imagenet(model, path, stem_adapt="sum", use_ema=True)
    _check_loaded(model, ema, lambda w: w.sum(1, keepdim=True))


def test_mismatched_or_foreign_checkpoints_are_refused(tmp_path, official_tiny_s1l8):
    wrong = tmp_path / "wrong.pth"
    bad = dict(official_tiny_s1l8)
    bad["layers.2.blocks.0.op.A_logs"] = torch.zeros(7, 1)
    torch.save({"model": bad}, wrong)
    with pytest.raises(CheckpointError, match="layers.2.blocks.0.op.A_logs"):
        audiomamba.create_model("audiomamba_tiny_v2", pretrained_backbone=wrong)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(CheckpointError, match="no VMamba backbone tensor"):
        audiomamba.create_model("audiomamba_tiny_v2", pretrained_backbone=foreign)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": official_tiny_s1l8, "config": object.__new__(CheckpointReport)}, pickled)
    with pytest.raises(CheckpointError, match="weights_only"):
        audiomamba.create_model("audiomamba_tiny_v2", pretrained_backbone=pickled)
    with pytest.raises(CheckpointError, match="not found"):
        audiomamba.create_model("audiomamba_tiny_v2", pretrained_backbone=tmp_path / "missing.pth")


class CheckpointReport:  # an arbitrary class: unpickling it must be refused
    pass


def test_vanilla_checkpoint_into_vanilla_tiny(tmp_path):
    state = audiomamba.create_model("vmamba_tiny_v0").state_dict()
    path = tmp_path / "vanilla.pth"
    torch.save({"model": state}, path)
    model = audiomamba.create_model("audiomamba_tiny", pretrained_backbone=path)
    _check_loaded(model, state, lambda w: w.mean(1, keepdim=True))
    # A checkpoint of another size names the first key that does not fit.
    with pytest.raises(CheckpointError, match="patch_embed|layers"):
        audiomamba.create_model("audiomamba_nano", pretrained_backbone=path)
