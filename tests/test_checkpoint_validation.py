"""A checkpoint is checked against its own metadata before its model is built (API level; the command line's
table of damaged checkpoints is tests/cli/test_bad_inputs.py)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import audiomamba
from audiomamba import hub
from audiomamba.checkpoint import CheckpointError, build, check, load, read_header, read_meta, validate_meta


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=2, layout="native", head="linear")
    return audiomamba.save_model(model, tmp_path_factory.mktemp("c") / "m.safetensors", labels=["Dog", "Cat"])


def _meta(path):
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["audiomamba"])


def _copy(src, dst, meta=None, tensors=None):
    save_file(tensors if tensors is not None else load_file(str(src)), str(dst),
              metadata={"audiomamba": json.dumps(meta if meta is not None else _meta(src))})
    return dst


def test_header_and_check_need_no_model(ckpt):
    metadata, tensors = read_header(ckpt)
    assert "audiomamba" in metadata and tensors["head.head.weight"] == ("F32", (2, 384))
    assert check(ckpt)["model"]["name"] == "audiomamba_nano"
    assert read_meta(ckpt)["labels"][1]["display_name"] == "Cat"


def test_huge_class_count_is_refused_on_the_meta_device(ckpt, tmp_path, monkeypatch):
    import audiomamba.checkpoint as C

    meta = _meta(ckpt)
    meta["model"]["args"]["num_classes"] = 10**7
    bad = _copy(ckpt, tmp_path / "huge.safetensors", meta)
    built_on = []
    real = C.create_model
    monkeypatch.setattr(C, "create_model", lambda *a, **k: built_on.append(torch.empty(0).device.type) or real(*a, **k))
    with pytest.raises(CheckpointError, match=r"'head.head.weight' has shape \[2, 384\] in the file, the model needs "
                                              r"\[10000000, 384\]"):
        load(bad)
    assert built_on == ["meta"]  # 10^7 x 384 floats (15 GB) never allocated


@pytest.mark.parametrize("edit,match", [
    (lambda m: m["model"].update(name="resnet50"), "not a registered model"),
    (lambda m: m["model"]["args"].update(depth=3), "model.args.depth is not an argument of audiomamba_nano"),
    (lambda m: m["model"]["args"].update(spec_augment="no"), "model.args.spec_augment must be bool"),
    (lambda m: m["model"]["args"].update(num_classes=True), "model.args.num_classes must be int"),
    (lambda m: m.pop("labels"), "missing key 'labels'"),
    (lambda m: m.update(labels=m["labels"] + [{"display_name": "Cow"}]), "3 labels for a model of 2 classes"),
    (lambda m: m.update(format_version=0), "unsupported config format_version 0"),
    (lambda m: m.update(multi_label=1), "multi_label must be true or false"),
])
def test_inconsistent_metadata_is_a_checkpoint_error(ckpt, tmp_path, edit, match):
    meta = _meta(ckpt)
    edit(meta)
    bad = _copy(ckpt, tmp_path / "bad.safetensors", meta)
    with pytest.raises(CheckpointError, match=match):
        load(bad)
    assert isinstance(CheckpointError("x"), ValueError)  # existing `except ValueError` keeps working


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(ckpt, tmp_path, value):
    tensors = load_file(str(ckpt))
    tensors["head.head.bias"][1] = value
    bad = _copy(ckpt, tmp_path / "nan.safetensors", tensors=tensors)
    with pytest.raises(CheckpointError, match=r"tensor 'head.head.bias' holds 1 NaN/inf value\(s\) of 2"):
        load(bad)
    check(bad)  # the header alone is fine: finiteness needs the data, checked when loading


def test_pickles_are_named_and_never_loaded(tmp_path):
    p = tmp_path / "m.safetensors"
    torch.save({"model": {"w": torch.zeros(1)}}, p)
    with pytest.raises(CheckpointError, match="PyTorch pickle file .* unpickling can run code") as e:
        load(p)
    assert "weights_only=False" not in str(e.value)


def test_hub_folder_config_is_checked_against_the_weights(ckpt, tmp_path):
    folder = hub.save_pretrained(load(ckpt), tmp_path / "f")
    config = json.loads((folder / "config.json").read_text())
    config["model"]["args"]["num_classes"] = 5
    config["labels"] = [{"display_name": f"c{i}"} for i in range(5)]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights do not match the model of .*config.json"):
        hub.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="model.args.bogus is not an argument"):
        validate_meta({**config, "model": {"name": "audiomamba_nano", "args": {"bogus": 1}}}, "x.json")
    with pytest.raises(CheckpointError, match="must be a JSON object"):
        build([1, 2], ckpt)
