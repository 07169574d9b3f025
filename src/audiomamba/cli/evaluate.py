"""``audiomamba evaluate --checkpoint C --data D``: tagging metrics (and event metrics with strong labels).

Writes ``OUT/summary.json`` (mAP, mAUC, d', micro/macro F1 at ``--threshold``, top-1 accuracy for single-label
data, event F1 / PSDS when the data has events) and ``OUT/per_class.csv``.  The data's labels are matched to the
checkpoint's by display name or mid; a label the checkpoint does not know is an error.

ESC-50 cross-validation: ``--cv 1,2,3,4,5`` with ``--checkpoint 'runs/esc50/fold{fold}/best.safetensors'``
evaluates each fold's model on its held-out fold and reports the mean and standard deviation.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

log = logging.getLogger("audiomamba.evaluate")


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help=".safetensors model (with --cv: a pattern with {fold})")
    p.add_argument("--data", required=True, help="dataset: manifest file/folder, AudioSet, ESC-50, class folders, shards")
    p.add_argument("--format", default="auto", choices=["auto", "manifest", "audioset", "esc50", "folder", "shards"])
    p.add_argument("--split", default="test", help="split to evaluate (default: test; ESC-50: fold<k>)")
    p.add_argument("--labels", default=None, help="class_labels_indices.csv of the data (default: the dataset's)")
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold for F1 and event detection")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seconds", type=float, default=None, help="evaluate at most this many seconds of each clip")
    p.add_argument("--tta-shifts", type=int, default=1, help="average over N circular 10 ms shifts (paper: 10)")
    p.add_argument("--no-events", action="store_true", help="skip event-based metrics even with strong labels")
    p.add_argument("--cv", default=None, metavar="1,2,...", help="ESC-50 cross-validation folds")
    p.add_argument("--out", default=None, help="output folder (default: next to the checkpoint, eval_<split>)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)


def _remap(cs, ckpt_labels: list[dict]):
    """Re-index the dataset's targets onto the checkpoint's label order."""
    import dataclasses

    from audiomamba.datasets import ClipSet, DatasetError
    from audiomamba.datasets.core import LabelIndex

    index = LabelIndex(ckpt_labels)
    mapping = []
    for lab in cs.labels:
        try:
            mapping.append(index(lab["display_name"], cs.name))
        except DatasetError:
            if lab.get("mid"):
                try:
                    mapping.append(index(lab["mid"], cs.name))
                    continue
                except DatasetError:
                    pass
            raise DatasetError(f"{cs.name}: label {lab['display_name']!r} is not one of the checkpoint's "
                               f"{len(ckpt_labels)} labels") from None
    clips = [dataclasses.replace(c, targets=tuple(sorted({mapping[t] for t in c.targets})),
                                 events=tuple((mapping[t], a, b) for t, a, b in c.events)) for c in cs.clips]
    return ClipSet(ckpt_labels, clips, cs.multi_label, cs.name, cs.info)


def evaluate(checkpoint: str, data: str, split: str = "test", fmt: str = "auto", labels: str | None = None,
             threshold: float = 0.5, batch_size: int = 8, seconds: float | None = None, tta_shifts: int = 1,
             events: bool = True, out: str | None = None, device: str = "auto", workers: int = 0,
             fold: int | None = None) -> dict:
    import numpy as np

    from audiomamba.checkpoint import load
    from audiomamba.datasets import open_split
    from audiomamba.evaluation import evaluate_scores, event_metrics, per_class_table, predict
    from audiomamba.utils.device import resolve_device

    t0 = time.time()
    dev = resolve_device(device)
    model = load(checkpoint, dev)
    meta = model.meta
    cs = _remap(open_split(data, split, fmt, labels, fold), meta["labels"])
    multi_label = bool(meta.get("multi_label", True))
    want_events = events and cs.has_events and model.head_type == "tscam"
    pred = predict(model, cs, batch_size, dev, multi_label, seconds, framewise=want_events, tta_shifts=tta_shifts,
                   num_workers=workers, progress=True, on_error=lambda e: log.warning("skipped clip %s", e))
    skipped = pred["errors"]
    m = evaluate_scores(pred, multi_label, threshold)
    names = [lab["display_name"] for lab in meta["labels"]]
    table = per_class_table(m, names)
    m.pop("_per_class")
    summary = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "model": meta["model"]["name"],
               "multi_label": multi_label, **m, "skipped_clips": len(skipped)}
    if want_events:
        hop = model.frontend.cfg.hop_length / model.sample_rate
        fw = {cs.clips[i].name: p for i, p in pred["framewise"].items()}
        gt = {cs.clips[i].name: [(a, b, names[t]) for t, a, b in cs.clips[i].events] for i in pred["framewise"]}
        dur = {cs.clips[i].name: max(p.shape[0] * hop, max((b for _, b, _ in gt[cs.clips[i].name]), default=0.0))
               for i, p in pred["framewise"].items()}
        try:
            summary.update(event_metrics(fw, hop, gt, dur, names, threshold))
        except ImportError:
            log.warning("event metrics need sed_scores_eval: pip install 'audiomamba[sed]'")
    summary["seconds"] = round(time.time() - t0, 1)
    out_dir = Path(out) if out else Path(checkpoint).parent / f"eval_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    with open(out_dir / "per_class.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    np.save(out_dir / "scores.npy", pred["scores"])
    if skipped:
        log.warning("%d clip(s) could not be decoded and were skipped", len(skipped))
    summary["out"] = str(out_dir)
    return summary


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    common = dict(fmt=args.format, labels=args.labels, threshold=args.threshold, batch_size=args.batch_size,
                  seconds=args.seconds, tta_shifts=args.tta_shifts, events=not args.no_events, device=args.device,
                  workers=args.workers)
    if not args.cv:
        s = evaluate(args.checkpoint, args.data, args.split, out=args.out, **common)
        print(json.dumps(s, default=float))
        return 0
    folds = [int(f) for f in args.cv.split(",") if f.strip()]
    if "{fold}" not in args.checkpoint:
        raise SystemExit("error: with --cv, --checkpoint must contain {fold}, e.g. runs/esc50/fold{fold}/best.safetensors")
    from audiomamba.evaluation.summary import cv_summary

    per_fold = {}
    for k in folds:
        ck = args.checkpoint.format(fold=k)
        out = str(Path(args.out) / f"fold{k}") if args.out else None
        per_fold[k] = evaluate(ck, args.data, f"fold{k}", out=out, **common)
    summary = cv_summary(per_fold, ("top1_accuracy", "mAP", "mAUC"))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, default=float))
    return 0
