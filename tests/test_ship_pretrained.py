"""scripts/ship_pretrained.py --restamp: a shipped file's provenance completed without touching its weights."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from conftest import load_script



def _ship():
    return load_script("ship_pretrained")


def _run(monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["ship_pretrained.py", *argv])
    _ship().main()


def test_restamp_records_metrics_threshold_and_origin_and_keeps_the_weights(tmp_path, monkeypatch):
    import audiomamba
    from safetensors.torch import load_file

    from audiomamba.checkpoint import read_meta, save_model

    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native")
    stage1 = save_model(model, tmp_path / "s1.safetensors", labels=["a", "b", "c"], dtype=torch.float16,
                        provenance={"config": "stage1.yaml", "test_metrics": {"mAP": 0.5}, "date": "2026-01-01"})
    shipped = save_model(model, tmp_path / "s2.safetensors", labels=["a", "b", "c"], dtype=torch.float16,
                         provenance={"config": "stage2.yaml", "test_metrics": {"mAP": 0.6}})
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"mAP": 0.61, "micro_f1": 0.1, "psds1": 0.2, "event_f1_micro": 0.3, "event_threshold": 0.6}))
    out = tmp_path / "out.safetensors"
    _run(monkeypatch, "--restamp", str(shipped), "--eval", str(ev), "--out", str(out), "--event-threshold", "0.6",
         "--event-threshold-from", "validation", "--init-from", str(stage1))
    prov = read_meta(out)["provenance"]
    assert prov["config"] == "stage2.yaml"
    # the event metrics are added; the clip metrics (F1 at 0.5 on the training machine) stay
    assert prov["test_metrics"] == {"mAP": 0.6, "event_f1_micro": 0.3, "psds1": 0.2, "event_metrics_threshold": 0.6}
    assert prov["event_threshold"] == 0.6 and prov["event_threshold_from"] == "validation"
    assert prov["initialised_from"]["config"] == "stage1.yaml"
    assert prov["initialised_from"]["test_metrics"] == {"mAP": 0.5}
    before, after = load_file(str(shipped)), load_file(str(out))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_shipping_without_a_checkpoint_is_a_usage_error(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, "--eval", "x.json", "--out", str(tmp_path / "o.safetensors"))
    assert e.value.code == 2


def test_shipping_records_the_banks_data_and_licences_and_writes_float16(tmp_path, monkeypatch):
    import audiomamba
    from safetensors import safe_open

    from audiomamba.checkpoint import read_meta, save_model

    model = audiomamba.create_model("audiomamba_nano", num_classes=2, layout="native")
    ckpt = save_model(model, tmp_path / "best.safetensors", labels=["a", "b"], provenance={"steps": 7})
    bank = tmp_path / "bank"
    bank.mkdir()
    # the index of a format-2 bank: one stream per split, one row per recording (lengths in samples)
    fields = ["key", "label", "group", "split", "origin", "licence", "start", "length"]
    rows = [["x:1", "a", "g1", "train", "pkg-x", "GPL-3", 0, 32000], ["x:2", "b", "g1", "train", "pkg-x", "GPL-3",
            32000, 16000], ["y:1", "a", "g2", "test", "pkg-y", "CC0", 0, 64000]]
    (bank / "bank.json").write_text(json.dumps({
        "format": "audiomamba-source-bank", "version": 2, "sample_rate": 32000, "classes": ["a", "b"],
        "streams": {"train": {"file": "train.ogg", "samples": 48000}, "test": {"file": "test.ogg", "samples": 64000}},
        "mix": {"duration": 10.0}, "clips": {"train": 10, "test": 2}, "seed": 0, "fields": fields, "recordings": rows}))
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"mAP": 0.7, "mAUC": 0.9, "psds1": 0.4, "clips": 2}))
    out = tmp_path / "ship.safetensors"
    _run(monkeypatch, "--checkpoint", str(ckpt), "--eval", str(ev), "--bank", str(bank), "--config", "c.yaml",
         "--out", str(out), "--trained-on", "GPU X", "--", "train.seed=1")
    prov = read_meta(out)["provenance"]
    src = prov["data"]["source_bank"]
    assert src["recordings"] == 3 and src["classes"] == 2 and src["seconds"] == round(112000 / 32000)
    assert prov["data"]["licences"] == [{"origin": "pkg-x", "licence": "GPL-3", "recordings": 2},
                                        {"origin": "pkg-y", "licence": "CC0", "recordings": 1}]
    assert prov["test_metrics"] == {"mAP": 0.7, "mAUC": 0.9, "psds1": 0.4}
    assert prov["overrides"] == ["train.seed=1"] and prov["device"] == "GPU X" and prov["training"] == {"steps": 7}
    with safe_open(str(out), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
