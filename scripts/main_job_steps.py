"""The Python pieces of the main job (scripts/main_job.sh); each prints what it did.

    python scripts/main_job_steps.py tones --out data/new_classes
        the small task of new classes: 8 procedurally generated tone classes (audiomamba.soundscapes.toy: pitch,
        amplitude modulation, a second harmonic) that the shipped tagger never had as labels; 1 s single-label
        clips at 32 kHz, 4 / 3 / 6 per class in train / validation / test
    python scripts/main_job_steps.py tones-folds --out runs/tones_folds [--per-class 10]
        the same 8 tone classes in the ESC-50 layout (meta/esc50.csv + audio/), clip i of each class in fold
        i % 5 + 1: the 5-fold task of the pretraining ablation (scripts/ablate_pretraining.sh)
    python scripts/main_job_steps.py clip --bank .bank --out runs/main_job/clip.wav
        renders one clip of the bank's test split (the first with two events) to a WAV file and prints its truth
    python scripts/main_job_steps.py summary --run runs/main_job --seconds S
        the compact final summary of the job (also written to RUN/summary.json)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TONE_CLASSES = 8
TONE_SPLITS = {"train": 4, "validation": 3, "test": 6}  # clips per class
TONE_SECONDS = 1.0
SAMPLE_RATE = 32000
MAX_EVENTS = 5  # events shown in the summary (all are in tag.json)


def make_tones(out: str | Path, seed: int = 0) -> Path:
    from audiomamba.soundscapes.toy import TOY_CLASSES, make_toy_dataset

    sizes = {split: per_class * TONE_CLASSES for split, per_class in TONE_SPLITS.items()}
    root = make_toy_dataset(out, sizes, seconds=TONE_SECONDS, sample_rate=SAMPLE_RATE, num_classes=TONE_CLASSES,
                            seed=seed, single_label=True)
    print(f"{root}: {TONE_CLASSES} new classes ({', '.join(TOY_CLASSES[:TONE_CLASSES])}), "
          + ", ".join(f"{n} {s}" for s, n in sizes.items()) + f" clips of {TONE_SECONDS:g} s at {SAMPLE_RATE} Hz")
    return root


def make_tone_folds(out: str | Path, per_class: int = 10, seed: int = 1) -> Path:
    """The tone classes as an ESC-50-shaped 5-fold task: ``per_class`` clips per class (at least 5), dealt to the
    folds in turn, so every fold holds every class equally often."""
    import csv
    import shutil

    from audiomamba.soundscapes.toy import TOY_CLASSES, make_toy_dataset

    if per_class < 5:
        raise SystemExit("error: --per-class must be at least 5 (one clip per fold)")
    out = Path(out)
    raw = make_toy_dataset(out / "_raw", {"all": per_class * TONE_CLASSES}, seconds=TONE_SECONDS,
                           sample_rate=SAMPLE_RATE, num_classes=TONE_CLASSES, seed=seed, single_label=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "meta").mkdir(exist_ok=True)
    rows, seen = [], {}
    for line in (raw / "all.jsonl").read_text().splitlines():
        rec = json.loads(line)
        label = rec["labels"][0]
        target = TOY_CLASSES.index(label)
        k = seen[label] = seen.get(label, -1) + 1
        fold = k % 5 + 1
        name = f"{fold}-tone{target}-{k:03d}.wav"
        shutil.move(raw / rec["path"], out / "audio" / name)
        rows.append([name, fold, target, label])
    shutil.rmtree(raw)
    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category"])
        w.writerows(rows)
    print(f"{out}: {TONE_CLASSES} tone classes x {per_class} clips of {TONE_SECONDS:g} s in 5 folds (ESC-50 layout)")
    return out


def pick_clip(bank, split: str = "test", events: int = 2, search: int = 64) -> int:
    """Index of the first clip of ``split`` with ``events`` events (else 0); chosen by its truth only."""
    for i, plan in enumerate(bank.plan_split(split, search)):
        if len(bank.events_of(plan)) == events:
            return i
    return 0


def write_clip(bank_dir: str | Path, out: str | Path, split: str = "test") -> dict:
    """Render one clip of the bank's ``split`` to ``out`` (WAV); returns and writes ``out.json`` with its truth."""
    import soundfile as sf

    from audiomamba.soundscapes.bank import open_bank

    bank = open_bank(bank_dir)
    i = pick_clip(bank, split)
    plan = bank.plan_split(split, i + 1)[i]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, bank.render(plan), bank.sample_rate, subtype="PCM_16")
    truth = {"clip": f"{split}/{i}", "path": str(out), "seconds": plan[0] / bank.sample_rate,
             "events": [{"label": bank.classes[k], "onset": round(a, 2), "offset": round(b, 2)}
                        for k, a, b in sorted(bank.events_of(plan), key=lambda e: e[1])]}
    out.with_suffix(".json").write_text(json.dumps(truth, indent=2))
    print(f"{out}: clip {i} of the bank's {split} split, {truth['seconds']:g} s; truth: "
          + "; ".join(f"{e['label']} {e['onset']:.2f}-{e['offset']:.2f} s" for e in truth["events"]))
    return truth


def _read(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _f(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def summarise(run: str | Path, seconds: float | None = None) -> dict:
    """The job's figures from the files its steps wrote under ``run``, as a dict and as printed lines."""
    run = Path(run)
    shipped = _read(run / "shipped_test" / "summary.json") or {}
    out: dict = {"shipped_test": {k: shipped.get(k) for k in ("split", "clips", "classes_evaluated", "mAP", "mAUC",
                                                              "d_prime", "micro_f1", "macro_f1", "event_f1_micro",
                                                              "psds1", "seconds")}}
    lines = ["", "== summary"]
    lines.append(f"shipped tagger ({shipped.get('model', '?')}) on the bank's test split ({shipped.get('split', '?')}, "
                 f"{shipped.get('clips', '?')} clips of 10 s, {shipped.get('classes_evaluated', '?')} classes): "
                 f"mAP {_f(shipped.get('mAP'))}  mAUC {_f(shipped.get('mAUC'))}  d' {_f(shipped.get('d_prime'), 2)}  "
                 f"F1 micro {_f(shipped.get('micro_f1'))} / macro {_f(shipped.get('macro_f1'))}  "
                 f"event F1 {_f(shipped.get('event_f1_micro'))}  PSDS1 {_f(shipped.get('psds1'))}"
                 + ("" if "psds1" in shipped else " (event metrics: pip install 'audiomamba[sed]')"))
    lines.append("new classes (8 tones, never labels of the shipped tagger), same recipe and budget, test split:")
    out["new_classes"] = {}
    for name, what in (("finetuned", "fine-tuned from the shipped tagger"), ("scratch", "from scratch")):
        tr = _read(run / name / "summary.json") or {}
        ev = _read(run / name / "eval_test" / "summary.json") or {}
        row = {"steps": tr.get("steps"), "train_seconds": tr.get("seconds"), "val_mAP": tr.get("best_mAP"),
               "test_accuracy": ev.get("top1_accuracy"), "test_mAP": ev.get("mAP"), "test_clips": ev.get("clips")}
        out["new_classes"][name] = row
        lines.append(f"  {what:36s} accuracy {_f(row['test_accuracy'])}  mAP {_f(row['test_mAP'])}  "
                     f"({row['steps']} steps, {_f(row['train_seconds'], 0)} s; {row['test_clips']} test clips)")
    truth = _read(run / "clip.json") or {}
    tags = _read(run / "tag.json")
    res = tags[0] if isinstance(tags, list) and tags else (tags if isinstance(tags, dict) else {})
    out["tagged_clip"] = {"truth": truth.get("events"), "tags": res.get("tags"), "events": res.get("events")}
    lines.append(f"tagged clip {truth.get('clip', '?')}: truth "
                 + "; ".join(f"{e['label']} {e['onset']:.2f}-{e['offset']:.2f} s" for e in truth.get("events", [])))
    lines.append("  tags: " + ", ".join(f"{t['label']} {t['score']:.2f}" for t in (res.get("tags") or [])[:5]))
    events = sorted(res.get("events") or [], key=lambda e: -e.get("score", 0.0))
    shown = "; ".join(f"{e['label']} {e['onset']:.2f}-{e['offset']:.2f} s"
                      for e in sorted(events[:MAX_EVENTS], key=lambda e: e["onset"]))
    more = f" (+{len(events) - MAX_EVENTS} more in {run / 'tag.json'})" if len(events) > MAX_EVENTS else ""
    lines.append(f"  events ({len(events)}; the {min(len(events), MAX_EVENTS)} highest-scoring): " + shown + more
                 if events else "  events: none above the threshold")
    plots = sorted(str(p) for p in (run / "plots").glob("*.png")) if (run / "plots").is_dir() else []
    out["plots"] = plots
    lines.append("  plot: " + (", ".join(plots) or "none (pip install 'audiomamba[plot]')"))
    if seconds is not None:
        out["seconds"] = seconds
        lines.append(f"main job: {seconds:.0f} s")
    out["lines"] = lines
    (run / "summary.json").write_text(json.dumps({k: v for k, v in out.items() if k != "lines"}, indent=2,
                                                 default=float))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("tones")
    a.add_argument("--out", required=True)
    a = sub.add_parser("tones-folds")
    a.add_argument("--out", required=True)
    a.add_argument("--per-class", type=int, default=10)
    a = sub.add_parser("clip")
    a.add_argument("--bank", required=True)
    a.add_argument("--out", required=True)
    a = sub.add_parser("summary")
    a.add_argument("--run", required=True)
    a.add_argument("--seconds", type=float, default=None)
    args = p.parse_args(argv)
    if args.cmd == "tones":
        make_tones(args.out)
    elif args.cmd == "tones-folds":
        make_tone_folds(args.out, args.per_class)
    elif args.cmd == "clip":
        write_clip(args.bank, args.out)
    else:
        print("\n".join(summarise(args.run, args.seconds)["lines"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
