"""scripts/clip_pooling.py: the poolings' limits against direct numpy, the steps.npz round trip of
scripts/compare_eval.py's layout, and its mAP against scikit-learn's."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from conftest import load_script


def test_soft_max_runs_from_the_maximum_to_the_mean_and_top_k_takes_the_largest():
    cp = load_script("clip_pooling")
    x = np.random.default_rng(0).normal(size=(40, 5)) * 3
    np.testing.assert_allclose(cp.soft_max(x, 1e-3), x.max(0), atol=0.01)
    np.testing.assert_allclose(cp.soft_max(x, 1e5), x.mean(0), atol=1e-3)
    # the stable form equals the direct one where that one does not overflow
    np.testing.assert_allclose(cp.soft_max(x, 2.0), 2.0 * np.log(np.mean(np.exp(x / 2.0), 0)), rtol=1e-12)
    big = np.array([[1000.0], [999.0]])  # exp overflows directly
    assert np.isfinite(cp.soft_max(big, 1.0)).all() and 999.0 < cp.soft_max(big, 1.0)[0] < 1000.0
    for k in (1, 3, 40, 100):
        want = np.array([np.mean(sorted(x[:, c])[-min(k, 40):]) for c in range(5)])
        np.testing.assert_allclose(cp.top_k_mean(x, k), want, rtol=1e-12)


def _npz(path, n=30, classes=4, seed=1):
    """A steps.npz as scripts/compare_eval.py writes it: ragged step counts padded with zeros, float16 logits,
    clip probabilities and 0/1 targets."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(3, 12, n)
    logits = np.zeros((n, steps.max(), classes), np.float16)
    for j, s in enumerate(steps):
        logits[j, :s] = rng.normal(size=(s, classes))
    targets = (rng.random((n, classes)) < 0.3).astype(np.uint8)
    targets[0] = 1  # every class has a positive
    targets[1] = 0  # and a negative
    clip = rng.random((n, classes)).astype(np.float32) * 0.98 + 0.01
    np.savez_compressed(path, logits=logits, steps=steps, clip_scores=clip, targets=targets,
                        index=np.arange(n), frames=steps * 8, hop=np.float64(0.01), layout=np.str_("native"),
                        step_frames=np.int64(8))
    return logits, steps, clip, targets


def test_poolings_read_the_steps_and_score_as_sklearn(tmp_path):
    cp = load_script("clip_pooling")
    logits, steps, clip, targets = _npz(tmp_path / "steps.npz")
    got_steps, got_clip, got_targets = cp.load_steps(tmp_path / "steps.npz")
    assert [s.shape[0] for s in got_steps] == steps.tolist()  # the zero padding is cut off
    np.testing.assert_array_equal(got_steps[3], logits[3, : steps[3]].astype(np.float64))
    np.testing.assert_allclose(1 / (1 + np.exp(-got_clip)), clip, rtol=1e-6)  # clip logits back from scores
    np.testing.assert_array_equal(got_targets, targets)
    pooled = cp.poolings(got_steps, got_clip)
    np.testing.assert_allclose(pooled["max of steps"][5], logits[5, : steps[5]].astype(np.float64).max(0))
    np.testing.assert_allclose(pooled["0.5 model + 0.5 max of steps"],
                               0.5 * got_clip + 0.5 * pooled["max of steps"])
    r = cp.score(pooled["max of steps"], got_targets)
    want = np.mean([average_precision_score(targets[:, c], pooled["max of steps"][:, c]) for c in range(4)])
    assert r["mAP"] == pytest.approx(want, abs=1e-9)
    single = targets.sum(1) == 1
    assert r["top1_single"] == pytest.approx(
        np.mean(targets[single].argmax(1) == pooled["max of steps"][single].argmax(1)))

    assert cp.main(["--steps", str(tmp_path / "steps.npz"), "--json", str(tmp_path / "t.json")]) == 0
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["clips"] == 30 and table["rows"]["max of steps"]["mAP"] == pytest.approx(want, abs=1e-9)


def test_a_steps_file_without_clip_scores_is_refused(tmp_path):
    cp = load_script("clip_pooling")
    np.savez(tmp_path / "old.npz", logits=np.zeros((1, 2, 3), np.float16), steps=np.array([2]))
    with pytest.raises(ValueError, match="no clip scores"):
        cp.load_steps(tmp_path / "old.npz")
