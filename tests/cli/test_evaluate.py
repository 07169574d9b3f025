"""`audiomamba evaluate` end to end on generated data (untrained models: checks outputs, not quality)."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from audiomamba import create_model
from audiomamba.checkpoint import save_model
from audiomamba.cli import main
from audiomamba.soundscapes.toy import TOY_CLASSES, make_toy_dataset

SR = 16000


def test_evaluate_manifest_with_events(tmp_path):
    data = make_toy_dataset(tmp_path / "d", {"test": 4}, seconds=0.6, sample_rate=SR)
    model = create_model("audiomamba_nano", num_classes=4, layout="native", sample_rate=SR)
    save_model(model, tmp_path / "m.safetensors", labels=TOY_CLASSES[:4])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m.safetensors"), "--data", str(data),
                 "--out", str(tmp_path / "ev"), "--batch-size", "2"]) == 0
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["clips"] == 4 and 0 <= s["mAP"] <= 1 and "d_prime" in s and "micro_f1" in s
    pytest.importorskip("sed_scores_eval")
    assert "event_f1_micro" in s and "psds1" in s
    rows = list(csv.DictReader(open(tmp_path / "ev" / "per_class.csv")))
    assert [r["label"] for r in rows] == TOY_CLASSES[:4]


def test_event_threshold_defaults_to_the_models_own(tmp_path):
    """Events are scored at the threshold the model ships with (its provenance), as `audiomamba tag` detects them;
    --event-threshold overrides it; --threshold stays the clip-F1 threshold."""
    pytest.importorskip("sed_scores_eval")
    data = make_toy_dataset(tmp_path / "d", {"test": 4}, seconds=0.6, sample_rate=SR)
    model = create_model("audiomamba_nano", num_classes=4, layout="native", sample_rate=SR)
    plain = save_model(model, tmp_path / "plain.safetensors", labels=TOY_CLASSES[:4])
    own = save_model(model, tmp_path / "own.safetensors", labels=TOY_CLASSES[:4], provenance={"event_threshold": 0.8})

    def run(ck, *extra):
        out = tmp_path / f"ev{len(list(tmp_path.glob('ev*')))}"
        assert main(["evaluate", "--checkpoint", str(ck), "--data", str(data), "--out", str(out), *extra]) == 0
        return json.loads((out / "summary.json").read_text())

    s = run(plain)
    assert s["event_threshold"] == 0.5 and s["threshold"] == 0.5
    s = run(own, "--threshold", "0.3")
    assert s["event_threshold"] == 0.8 and s["threshold"] == 0.3
    s = run(own, "--event-threshold", "0.6")
    assert s["event_threshold"] == 0.6 and s["threshold"] == 0.5
    assert main(["evaluate", "--checkpoint", str(own), "--data", str(data), "--event-threshold", "1.5"]) == 2


def test_evaluate_rejects_data_without_a_matching_class(tmp_path, capsys):
    data = make_toy_dataset(tmp_path / "d", {"test": 2}, seconds=0.6, sample_rate=SR)
    model = create_model("audiomamba_nano", num_classes=2, layout="native", sample_rate=SR)
    save_model(model, tmp_path / "m.safetensors", labels=["Dog", "Cat"])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m.safetensors"), "--data", str(data)]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("audiomamba evaluate: error: ") and "no class of the data matches the model" in err[-1]


def test_esc50_cross_validation_runner(tmp_path):
    root = tmp_path / "esc"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    rng = np.random.default_rng(0)
    for i in range(8):
        name = f"{i % 2 + 1}-{i}-A-{i % 2}.wav"
        rows.append(f"{name},{i % 2 + 1},{i % 2},{['dog', 'rain'][i % 2]},False,{i},A")
        sf.write(root / "audio" / name, (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), SR)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    for k in (1, 2):
        m = create_model("audiomamba_nano", num_classes=2, layout="native", sample_rate=SR, head="linear")
        save_model(m, tmp_path / f"fold{k}" / "best.safetensors", labels=["dog", "rain"], multi_label=False)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "fold{fold}" / "best.safetensors"), "--data", str(root),
                 "--cv", "1,2", "--out", str(tmp_path / "cv")]) == 0
    s = json.loads((tmp_path / "cv" / "cv_summary.json").read_text())
    assert set(s["folds"]) == {"1", "2"} and 0 <= s["top1_accuracy"]["mean"] <= 1 and "std" in s["top1_accuracy"]
