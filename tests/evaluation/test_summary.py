"""Cross-validation summaries: mean and population standard deviation against numpy and statistics."""

import statistics

import numpy as np
import pytest

from audiomamba.evaluation.summary import cv_summary, mean_std


@pytest.mark.parametrize("values", [[0.5], [0.1, 0.2, 0.7], [0.9125, 0.8875, 0.9, 0.925, 0.875],
                                    list(np.random.default_rng(0).random(7))])
def test_mean_std_matches_numpy_and_statistics(values):
    s = mean_std(values)
    assert s["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert s["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert s["std"] == pytest.approx(np.std(values, ddof=0), rel=1e-12, abs=1e-15)
    assert s["std"] == pytest.approx(statistics.pstdev([float(v) for v in values]), rel=1e-12, abs=1e-15)
    assert type(s["mean"]) is float and type(s["std"]) is float  # JSON-ready, also from numpy inputs
    with pytest.raises(ValueError):
        mean_std([])


def test_cv_summary_skips_missing_values():
    per_fold = {1: {"mAP": 0.5, "top1_accuracy": 0.75, "step": 3}, 2: {"mAP": 0.7, "top1_accuracy": None},
                3: {"mAP": np.float64(0.9)}}
    s = cv_summary(per_fold, ("top1_accuracy", "mAP", "mAUC"))
    assert s["folds"] == {1: {"top1_accuracy": 0.75, "mAP": 0.5, "mAUC": None},
                          2: {"top1_accuracy": None, "mAP": 0.7, "mAUC": None},
                          3: {"top1_accuracy": None, "mAP": 0.9, "mAUC": None}}
    assert s["top1_accuracy"] == {"mean": 0.75, "std": 0.0}
    assert s["mAP"]["mean"] == pytest.approx(0.7) and s["mAP"]["std"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert "mAUC" not in s
