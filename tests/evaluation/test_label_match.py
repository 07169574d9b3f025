"""Scoring a model on a dataset with other classes (evaluation/label_match.py, `audiomamba evaluate`)."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from audiomamba.evaluation.label_match import LabelMatchError, match_labels, normalise_name, subset_metrics

MODEL = [{"index": 0, "mid": "/m/0bm02", "display_name": "Bass drum"},
         {"index": 1, "mid": "/m/07y_7", "display_name": "Violin, fiddle"},
         {"index": 2, "mid": "/m/09x0r", "display_name": "Speech"},
         {"index": 3, "mid": "/m/015p6", "display_name": "Bird"},
         {"index": 4, "mid": "/audiomamba/hand_drum", "display_name": "Hand drum"},
         {"index": 5, "mid": "/m/0l14j_", "display_name": "Flute"}]


def test_normalise_name():
    assert normalise_name("  Violin,  FIDDLE ") == "violin fiddle"
    assert normalise_name("Hi-hat") == normalise_name("hi_hat") == "hi hat"
    assert normalise_name("Rock & roll") == "rock and roll"


def test_match_by_mid_then_name_then_synonym_and_unmatched():
    data = [{"index": 0, "mid": "/x/local-speech", "display_name": "speech"},   # name (mid unknown to the model)
            {"index": 1, "mid": "", "display_name": "Siren"},                  # unmatched
            {"index": 2, "mid": "/m/0bm02", "display_name": "Kick"},           # mid, whatever the name
            {"index": 3, "mid": "", "display_name": "Fiddle"},                 # synonym of "Violin, fiddle"
            {"index": 4, "mid": "", "display_name": "HAND-DRUM"}]              # name, normalised
    m = match_labels(MODEL, data)
    assert m.pairs == [(0, 2, "name"), (2, 0, "mid"), (3, 1, "synonym"), (4, 4, "name")]
    assert m.unmatched == ["Siren"]
    assert m.names == ["speech", "Kick", "Fiddle", "HAND-DRUM"]
    assert m.model_names == ["Speech", "Bass drum", "Violin, fiddle", "Hand drum"]
    r = m.report()
    assert r["matched_classes"] == 4 and r["matched_by"] == {"mid": 1, "name": 2, "synonym": 1}
    assert r["unmatched_classes"] == ["Siren"]
    assert "'Siren'" in m.describe() and "left out of the metrics" in m.describe()


def test_mid_wins_over_name():
    m = match_labels(MODEL, [{"index": 0, "mid": "/m/015p6", "display_name": "Speech"}])
    assert m.pairs == [(0, 3, "mid")]


def test_no_match_is_an_error_that_names_the_classes():
    with pytest.raises(LabelMatchError, match="nothing to score.*'Siren', 'Rain'"):
        match_labels(MODEL, ["Siren", "Rain"])


def test_two_dataset_classes_on_one_model_class_is_an_error():
    with pytest.raises(LabelMatchError, match="both match the model's class 'Violin, fiddle'"):
        match_labels(MODEL, ["Violin", "Fiddle"])


def test_ambiguous_synonym_is_unmatched():
    model = ["Dog, pet", "Cat, pet"]
    m = match_labels(model, ["Pet", "Cat"])
    assert m.pairs == [(1, 1, "synonym")] and m.unmatched == ["Pet"]


def test_subset_metrics_equal_sklearn_on_the_restricted_columns():
    rng = np.random.default_rng(0)
    n = 60
    data = ["Flute", "Siren", "speech", "Bass Drum"]  # Siren is not among the model's classes
    targets = (rng.random((n, len(data))) < 0.3).astype(np.float32)
    targets[:3] = [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]  # every matched class has a positive
    scores = rng.random((n, len(MODEL))).astype(np.float32)
    # scores that follow the targets for the matched classes, so the metrics are not those of noise
    for d, k in ((0, 5), (2, 2), (3, 0)):
        scores[:, k] = np.clip(0.5 * targets[:, d] + 0.6 * rng.random(n), 0, 1)
    m = subset_metrics(scores, MODEL, targets, data, threshold=0.5)
    cols, dcols = [5, 2, 0], [0, 2, 3]
    want_ap = [average_precision_score(targets[:, d], scores[:, k]) for d, k in zip(dcols, cols)]
    want_auc = [roc_auc_score(targets[:, d], scores[:, k]) for d, k in zip(dcols, cols)]
    assert m["classes_evaluated"] == 3 and m["clips"] == n
    assert m["mAP"] == pytest.approx(np.mean(want_ap), abs=1e-12)
    assert m["mAUC"] == pytest.approx(np.mean(want_auc), abs=1e-12)
    pred = scores[:, cols] >= 0.5
    t = targets[:, dcols] > 0.5
    tp, fp, fn = (pred & t).sum(), (pred & ~t).sum(), (~pred & t).sum()
    assert m["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["labels"]["unmatched_classes"] == ["Siren"]
    # the unmatched class's column and the model's other classes change nothing
    scores2 = scores.copy()
    scores2[:, [1, 3, 4]] = rng.random((n, 3))
    targets2 = targets.copy()
    targets2[:, 1] = 1 - targets2[:, 1]
    assert subset_metrics(scores2, MODEL, targets2, data)["mAP"] == m["mAP"]


def test_single_label_top_class_among_the_matched_only():
    # the model's best class overall is "Bird", which the dataset does not have: the prediction is the best
    # of the matched classes
    scores = np.array([[0.1, 0.2, 0.3, 0.9, 0.0, 0.0], [0.3, 0.1, 0.2, 0.9, 0.0, 0.0]])
    targets = np.array([[0, 0, 1], [1, 0, 0]])
    m = subset_metrics(scores, MODEL, targets, ["Bass drum", "Violin, fiddle", "Speech"], multi_label=False)
    assert m["top1_accuracy"] == 1.0


def test_evaluate_cli_on_a_subset_of_the_model_classes(tmp_path):
    """End to end: a checkpoint with 5 classes, 3 of them in a 4-class dataset; the summary's mAP is sklearn's over
    the model's scores of the 3 matched classes, the 4th is reported and left out."""
    pytest.importorskip("soundfile")
    from audiomamba import create_model
    from audiomamba.checkpoint import save_model
    from audiomamba.cli import main
    from audiomamba.soundscapes.toy import TOY_CLASSES, make_toy_dataset

    sr = 16000
    data = make_toy_dataset(tmp_path / "d", {"test": 12}, seconds=0.6, sample_rate=sr, num_classes=4)
    # the dataset: Beep (/toy/0), Whistle (/toy/1), Hum (/toy/2), Chirp (/toy/3)
    labels = [{"index": 0, "mid": "/other/a", "display_name": "Dog"},
              {"index": 1, "mid": "/toy/2", "display_name": "Low hum"},      # by mid
              {"index": 2, "mid": "/other/b", "display_name": "whistle"},    # by name
              {"index": 3, "mid": "/other/c", "display_name": "Cat"},
              {"index": 4, "mid": "/other/d", "display_name": "Beep, bleep"}]  # by synonym
    model = create_model("audiomamba_nano", num_classes=5, layout="native", sample_rate=sr)
    save_model(model, tmp_path / "m.safetensors", labels=labels)
    out = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m.safetensors"), "--data", str(data), "--out", str(out),
                 "--batch-size", "4", "--no-events"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["labels"]["unmatched_classes"] == ["Chirp"]
    assert [(p["dataset"], p["model"], p["by"]) for p in s["labels"]["matched"]] == [
        ("Beep", "Beep, bleep", "synonym"), ("Whistle", "whistle", "name"), ("Hum", "Low hum", "mid")]
    scores = np.load(out / "scores.npy")
    assert scores.shape == (12, 3)
    rows = [json.loads(line) for line in open(data / "test.jsonl")]
    targets = np.array([[name in r["labels"] for name in TOY_CLASSES[:3]] for r in rows])
    assert s["classes_evaluated"] == int(targets.any(0).sum()) == 3
    want = np.mean([average_precision_score(targets[:, j], scores[:, j]) for j in range(3)])
    assert s["mAP"] == pytest.approx(want, abs=1e-9)
    table = list(csv.DictReader(open(out / "per_class.csv")))
    assert [(r["label"], r["model_label"]) for r in table] == [("Beep", "Beep, bleep"), ("Whistle", "whistle"),
                                                                ("Hum", "Low hum")]


def test_evaluate_strict_labels_and_no_match(tmp_path):
    pytest.importorskip("soundfile")
    from audiomamba import create_model
    from audiomamba.checkpoint import save_model
    from audiomamba.cli.evaluate import evaluate
    from audiomamba.datasets import DatasetError
    from audiomamba.soundscapes.toy import make_toy_dataset

    sr = 16000
    data = make_toy_dataset(tmp_path / "d", {"test": 2}, seconds=0.6, sample_rate=sr, num_classes=2)
    model = create_model("audiomamba_nano", num_classes=2, layout="native", sample_rate=sr)
    save_model(model, tmp_path / "m.safetensors", labels=["Beep", "Dog"])
    with pytest.raises(DatasetError, match="--strict-labels.*'Whistle'"):
        evaluate(str(tmp_path / "m.safetensors"), str(data), out=str(tmp_path / "e1"), strict_labels=True)
    s = evaluate(str(tmp_path / "m.safetensors"), str(data), out=str(tmp_path / "e1"), events=False)
    assert s["labels"]["unmatched_classes"] == ["Whistle"] and s["classes_evaluated"] == 1
    save_model(model, tmp_path / "n.safetensors", labels=["Dog", "Cat"])
    with pytest.raises(LabelMatchError, match="nothing to score"):
        evaluate(str(tmp_path / "n.safetensors"), str(data), out=str(tmp_path / "e2"))
