import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from audiomamba.evaluation.metrics import d_prime, event_metrics, tagging_metrics


def test_map_matches_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 6)) < 0.3).astype(int)
    y[:, 5] = 0  # a class without positives does not count
    s = rng.random((50, 6)) + 0.5 * y
    m = tagging_metrics(s, y)
    ref = np.mean([average_precision_score(y[:, k], s[:, k]) for k in range(5)])
    auc = np.mean([roc_auc_score(y[:, k], s[:, k]) for k in range(5)])
    assert m["classes_evaluated"] == 5
    assert m["mAP"] == pytest.approx(ref, abs=1e-12) and m["mAUC"] == pytest.approx(auc, abs=1e-12)
    assert m["d_prime"] == pytest.approx(np.sqrt(2) * __import__("scipy").stats.norm.ppf(auc), rel=1e-9)
    assert 0 <= m["micro_f1"] <= 1 and "top1_accuracy" not in m


def test_single_label_accuracy_and_perfect_scores():
    y = np.eye(3)[[0, 1, 2, 1]]
    m = tagging_metrics(y * 0.9 + 0.01, y, multi_label=False)
    assert m["mAP"] == 1.0 and m["top1_accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-9)


def test_event_metrics_perfect_detection():
    pytest.importorskip("sed_scores_eval")
    hop = 0.01
    fw = np.zeros((500, 2))
    fw[100:200, 0] = 0.9
    fw[300:400, 1] = 0.8
    gt = {"a": [(1.0, 2.0, "Dog"), (3.0, 4.0, "Cat")]}
    m = event_metrics({"a": fw}, hop, gt, {"a": 5.0}, ["Dog", "Cat"], psds=False)
    assert m["event_f1_micro"] == pytest.approx(1.0)
    fw[:, :] = 0
    m = event_metrics({"a": fw}, hop, gt, {"a": 5.0}, ["Dog", "Cat"], psds=False)
    assert m["event_f1_micro"] == pytest.approx(0.0)
