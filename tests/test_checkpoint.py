"""Model checkpoints: safetensors + JSON config round trip, safety, atomic writes."""

import json

import pytest
import torch
from safetensors.torch import save_file

import audiomamba
from audiomamba.checkpoint import CheckpointError, load, read_meta, save_model
from audiomamba.utils.io import atomic_write


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native", head="tscam").eval()
    path = save_model(model, tmp_path / "m.safetensors", labels=["Dog", "Cat", "Bird"], multi_label=False, provenance={"steps": 5})
    meta = read_meta(path)
    assert meta["model"] == {"name": "audiomamba_nano", "args": {"num_classes": 3, "layout": "native", "head": "tscam", "drop_path_rate": 0.1}}
    assert [lab["display_name"] for lab in meta["labels"]] == ["Dog", "Cat", "Bird"]
    assert meta["multi_label"] is False and meta["sample_rate"] == 32000 and meta["frontend"]["hop_length"] == 320
    again = load(path)
    assert not again.training and again.meta["provenance"] == {"steps": 5}
    wave = torch.randn(1, 32000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(again(wave).logits, model(wave).logits)


def test_default_labels_are_audioset(tmp_path):
    model = audiomamba.create_model("audiomamba_nano")
    meta = read_meta(save_model(model, tmp_path / "a.safetensors"))
    assert len(meta["labels"]) == 527 and meta["labels"][0]["display_name"] == "Speech"


def test_refuses_mismatch_and_foreign_files(tmp_path):
    model = audiomamba.create_model("audiomamba_nano", num_classes=3)
    with pytest.raises(ValueError, match="2 labels"):
        save_model(model, tmp_path / "x.safetensors", labels=["a", "b"])
    path = save_model(model, tmp_path / "m.safetensors")
    # Same weights, config claiming another size: the error names the file.
    from safetensors.torch import load_file

    meta = read_meta(path)
    meta["model"]["args"]["num_classes"] = 4
    tampered = tmp_path / "tampered.safetensors"
    save_file(load_file(str(path)), str(tampered), metadata={"audiomamba": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="tampered.safetensors"):
        load(tampered)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not an audiomamba checkpoint"):
        load(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "nope.safetensors")


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path):
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"old")

    def dying_writer(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dying_writer)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]


def test_loading_a_checkpoint_checks_its_shapes_without_torch_compile_machinery(nano_ckpt):
    """The shape check builds the model on the meta device; none of its construction may go through torch's Python
    reference kernels there, whose first call imports torch._dynamo (about a second of every `audiomamba tag`).
    Checked in a fresh interpreter, with the weights loaded and the model's init bit-for-bit as on the CPU."""
    import subprocess
    import sys

    code = ("import sys, torch, audiomamba\n"
            f"m = audiomamba.load({str(nano_ckpt)!r})\n"
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
            "print(sum(p.numel() for p in m.parameters()))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) == sum(p.numel() for p in load(nano_ckpt).parameters())
