"""scripts/event_thresholds.py: event F1 at global and per-class thresholds on hand-made scores whose F1 is known."""

import json
import sys

import numpy as np
import pytest

from audiomamba.evaluation.metrics import sed_inputs
from conftest import load_script

pytest.importorskip("sed_scores_eval")


def _case():
    """6 clips of 10 s at 0.5 s steps; class a: one event per clip scored 0.95 (0.1 elsewhere); class b: one event
    in clips 0-2 scored 0.6 (0 elsewhere); class c: no events, scores 0.3."""
    hop, n = 0.5, 20
    names = ["a", "b", "c"]
    fw, gt, dur = {}, {}, {}
    for k in range(6):
        s = np.zeros((n, 3))
        s[:, 0], s[:, 2] = 0.1, 0.3
        s[2 + k:8 + k, 0] = 0.95
        gt[f"c{k}"] = [(hop * (2 + k), hop * (8 + k), "a")]
        if k < 3:
            s[10:14, 1] = 0.6
            gt[f"c{k}"].append((5.0, 7.0, "b"))
        fw[f"c{k}"], dur[f"c{k}"] = s, 10.0
    return fw, hop, gt, dur, names


def test_global_and_per_class_thresholds_give_the_known_f1():
    et = load_script("event_thresholds")
    fw, hop, gt, dur, names = _case()
    scores, gt, _ = sed_inputs(fw, hop, gt, dur, names)
    assert et.micro_f1(scores, gt, 0.5) == pytest.approx(1.0)
    # at 0.7 the 3 b events are missed: precision 6/6, recall 6/9 -> F1 0.8
    assert et.micro_f1(scores, gt, 0.7) == pytest.approx(2 * 6 / (6 + 9))
    per = et.best_per_class(scores, gt, fallback=0.42)
    assert set(per) == {"a", "b"}
    assert 0.1 < per["a"] <= 0.95 and 0.0 < per["b"] <= 0.6
    assert et.micro_f1(scores, gt, per) == pytest.approx(1.0)


def test_main_reports_grid_best_and_half_split(tmp_path, monkeypatch):
    et = load_script("event_thresholds")
    fw, hop, gt, dur, names = _case()
    fake = type("M", (), {"step_scores": staticmethod(lambda *a: (fw, hop, gt, dur, names))})
    monkeypatch.setitem(sys.modules, "compare_eval", fake)
    out = tmp_path / "t.json"
    assert et.main(["--steps", "x.npz", "--data", "d", "--split", "validation", "--grid", "0.5,0.7,0.97",
                    "--median", "1,3", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["global"] == pytest.approx({"0.5": 1.0, "0.7": 0.8, "0.97": 0.0})
    assert res["best_global"] == 0.5 and res["per_class_f1"] == pytest.approx(1.0)
    assert len(res["half_split"]) == 2 and all(h["global_threshold"] == 0.5 for h in res["half_split"])
    assert "global_median_3" in res
