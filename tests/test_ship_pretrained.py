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
