"""The main job's pieces (scripts/main_job.sh, scripts/main_job_steps.py, configs/main_job_new_classes.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def _steps():
    return load_script("main_job_steps")


def test_config_fine_tunes_the_shipped_tagger_architecture():
    from audiomamba.checkpoint import read_meta
    from audiomamba.models.pretrained import pretrained_path
    from audiomamba.training.config import load_config

    steps = _steps()
    cfg = load_config(ROOT / "configs" / "main_job_new_classes.yaml", [])
    meta = read_meta(pretrained_path())
    assert cfg.model.name == meta["model"]["name"]
    assert cfg.model.sample_rate == steps.SAMPLE_RATE and cfg.data.root == "data/new_classes"
    assert cfg.data.clip_seconds == steps.TONE_SECONDS
    # the new classes are not among the shipped tagger's (by name, after normalisation)
    from audiomamba.evaluation.label_match import normalise_name
    from audiomamba.soundscapes.toy import TOY_CLASSES

    shipped = {normalise_name(lab["display_name"]) for lab in meta["labels"]}
    assert not shipped & {normalise_name(c) for c in TOY_CLASSES[: steps.TONE_CLASSES]}


def test_tones_task_has_every_class_in_every_split(tmp_path):
    import soundfile as sf

    steps = _steps()
    root = steps.make_tones(tmp_path / "tones")
    for split, per_class in steps.TONE_SPLITS.items():
        rows = [json.loads(line) for line in open(root / f"{split}.jsonl")]
        assert len(rows) == per_class * steps.TONE_CLASSES
        assert all(len(r["labels"]) == 1 for r in rows)
        labels = [r["labels"][0] for r in rows]
        assert sorted(labels.count(c) for c in set(labels)) == [per_class] * steps.TONE_CLASSES
        info = sf.info(str(root / rows[0]["path"]))
        assert info.samplerate == steps.SAMPLE_RATE and info.duration == pytest.approx(steps.TONE_SECONDS)


def test_clip_is_rendered_from_the_bank_with_its_truth(tmp_path):
    import soundfile as sf

    from audiomamba.cli import main as cli_main
    from audiomamba.datasets import load_clip, open_split

    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for label, f in {"Piano": 440.0, "Bird": 1320.0, "Speech": 880.0}.items():
        (src / label).mkdir(parents=True)
        for i in range(6):
            t = np.arange(int(rng.uniform(0.5, 1.2) * 16000)) / 16000
            sf.write(src / label / f"{i}.wav", (0.3 * np.sin(2 * np.pi * f * (1 + 0.02 * i) * t)).astype(np.float32),
                     16000)
    bank = tmp_path / "bank"
    assert cli_main(["data", "bank", "--out", str(bank), "--source-dir", str(src), "--no-builtin", "--sample-rate",
                     "16000", "--duration", "3", "--events", "1,3", "--clips", "train=20,validation=8,test=8",
                     "--jobs", "1", "-q"]) == 0
    steps = _steps()
    truth = steps.write_clip(bank, tmp_path / "out" / "clip.wav")
    i = int(truth["clip"].split("/")[1])
    cs = open_split(str(bank), "test")
    clip = cs.clips[i]
    if any(len(c.events) == 2 for c in cs.clips[:64]):
        assert len(clip.events) == 2
    want = sorted(((cs.labels[k]["display_name"], round(a, 2), round(b, 2)) for k, a, b in clip.events),
                  key=lambda e: e[1])
    assert [(e["label"], e["onset"], e["offset"]) for e in truth["events"]] == want
    x, sr = sf.read(tmp_path / "out" / "clip.wav", dtype="float32")
    ref = load_clip(clip, 16000)
    ref = ref.numpy() if hasattr(ref, "numpy") else np.asarray(ref)
    assert sr == 16000 and len(x) == len(ref.reshape(-1))
    assert np.abs(x - ref.reshape(-1)).max() < 2e-4  # 16-bit WAV of the same rendering
    assert json.loads((tmp_path / "out" / "clip.json").read_text()) == truth


def test_summary_reads_every_step(tmp_path):
    steps = _steps()
    run = tmp_path / "run"
    (run / "shipped_test").mkdir(parents=True)
    (run / "shipped_test" / "summary.json").write_text(json.dumps(
        {"model": "audiomamba_micro_v2", "split": "test:64", "clips": 64, "classes_evaluated": 53, "mAP": 0.7231,
         "mAUC": 0.91, "d_prime": 1.9, "micro_f1": 0.65, "macro_f1": 0.61, "event_f1_micro": 0.2, "psds1": 0.1}))
    for name, acc in (("finetuned", 1.0), ("scratch", 0.125)):
        (run / name / "eval_test").mkdir(parents=True)
        (run / name / "summary.json").write_text(json.dumps({"steps": 12, "seconds": 30.0, "best_mAP": acc}))
        (run / name / "eval_test" / "summary.json").write_text(json.dumps(
            {"top1_accuracy": acc, "mAP": acc, "clips": 48}))
    (run / "clip.json").write_text(json.dumps({"clip": "test/3", "events": [
        {"label": "Piano", "onset": 1.0, "offset": 2.5}]}))
    (run / "tag.json").write_text(json.dumps([{"tags": [{"label": "Piano", "score": 0.91}],
                                               "events": [{"label": "Piano", "onset": 1.1, "offset": 2.4}]}]))
    (run / "plots").mkdir()
    (run / "plots" / "clip.png").write_bytes(b"png")
    out = steps.summarise(run, seconds=170)
    text = "\n".join(out["lines"])
    assert "mAP 0.723" in text and "PSDS1 0.100" in text and "event F1 0.200" in text
    assert "fine-tuned from the shipped tagger" in text and "accuracy 1.000" in text and "accuracy 0.125" in text
    assert "Piano 1.00-2.50 s" in text and "Piano 0.91" in text and "Piano 1.10-2.40 s" in text
    assert "clip.png" in text and "main job: 170 s" in text
    # many events: the highest-scoring few, in time order, and how many more
    many = [{"label": f"C{i}", "onset": float(9 - i), "offset": 9.5, "score": i / 10} for i in range(8)]
    (run / "tag.json").write_text(json.dumps([{"tags": [], "events": many}]))
    text = "\n".join(steps.summarise(run, seconds=170)["lines"])
    assert "events (8; the 5 highest-scoring): C7 2.00-9.50 s; C6 3.00-9.50 s; C5" in text and "(+3 more" in text
    assert "C2 7.00" not in text
    saved = json.loads((run / "summary.json").read_text())
    assert saved["new_classes"]["scratch"]["test_accuracy"] == 0.125 and saved["seconds"] == 170
    assert saved["shipped_test"]["mAP"] == 0.7231


def test_summary_says_what_is_missing(tmp_path):
    out = _steps().summarise(tmp_path, seconds=None)
    text = "\n".join(out["lines"])
    assert "pip install 'audiomamba[sed]'" in text and "none above the threshold" in text


def test_tone_folds_are_an_esc50_task_with_every_class_in_every_fold(tmp_path):
    from audiomamba.datasets import open_split
    from audiomamba.datasets.esc50 import esc50_folds

    steps = _steps()
    root = steps.make_tone_folds(tmp_path / "folds", per_class=10)
    assert esc50_folds(root) == [1, 2, 3, 4, 5]
    seen = set()
    for k in range(1, 6):
        held = open_split(root, f"fold{k}", "esc50")
        labels = [held.label_names[c.targets[0]] for c in held.clips]
        assert len(held.clips) == 2 * steps.TONE_CLASSES
        assert sorted(labels.count(n) for n in set(labels)) == [2] * steps.TONE_CLASSES
        names = {Path(c.path).name for c in held.clips}
        assert not names & seen  # folds are disjoint
        seen |= names
    assert not (tmp_path / "folds" / "_raw").exists()
    with pytest.raises(SystemExit):
        steps.make_tone_folds(tmp_path / "few", per_class=4)


def test_ablation_config_reads_the_tone_folds():
    from audiomamba.training.config import load_config

    cfg = load_config(ROOT / "configs" / "ablate" / "finetune_tones.yaml", [])
    assert cfg.data.format == "esc50" and cfg.data.validation is None and cfg.train.loss == "ce"
    assert cfg.data.clip_seconds == _steps().TONE_SECONDS
