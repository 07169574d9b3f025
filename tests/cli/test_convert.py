"""`audiomamba convert`: single-file checkpoint <-> Hub model folder, and its errors."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from audiomamba.checkpoint import read_meta
from audiomamba.cli import main


def test_convert_round_trip_keeps_weights_and_config(nano_ckpt, tmp_path, capsys):
    folder, back = tmp_path / "folder", tmp_path / "back.safetensors"
    assert main(["convert", str(nano_ckpt), str(folder)]) == 0
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    assert main(["convert", str(folder), str(back)]) == 0
    a, b = load_file(str(nano_ckpt)), load_file(str(back))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = read_meta(nano_ckpt), read_meta(back)
    assert ma["model"] == mb["model"] and ma["labels"] == mb["labels"] and ma["multi_label"] == mb["multi_label"]
    capsys.readouterr()
    assert main(["convert", str(folder), str(back)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "x")]) == 3
    assert "missing" in capsys.readouterr().err
