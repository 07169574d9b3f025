"""``audiomamba evaluate --checkpoint C --data D``: tagging metrics (and event metrics with strong labels).

Writes ``OUT/summary.json`` (mAP, mAUC, d', micro/macro F1 at ``--threshold``, top-1 accuracy for single-label
data, event F1 at ``--event-threshold`` (default: the model's own, as ``audiomamba tag``) and PSDS when the data
has events) and ``OUT/per_class.csv``.  The data's classes are matched to the
checkpoint's by AudioSet mid, else by normalised display name (:mod:`audiomamba.evaluation.label_match`), and the
model's scores restricted to the matched classes: a model can be scored on a dataset whose classes are a subset of
its own, or overlap them.  Dataset classes the model does not have are reported by name and left out of the metrics
(``--strict-labels``: an error instead); no matching class at all is an error.

ESC-50 cross-validation: ``--cv 1,2,3,4,5`` with ``--checkpoint 'runs/esc50/fold{fold}/best.safetensors'``
evaluates each fold's model on its held-out fold and reports the mean and standard deviation.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

from audiomamba.utils.io import atomic_write, json_safe

log = logging.getLogger("audiomamba.evaluate")


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help=".safetensors model (with --cv: a pattern with {fold})")
    p.add_argument("--data", required=True, help="dataset: manifest file/folder, AudioSet, ESC-50, class folders, shards")
    p.add_argument("--format", default="auto", choices=["auto", "manifest", "audioset", "esc50", "folder", "shards"])
    p.add_argument("--split", default="test", help="split to evaluate (default: test; ESC-50: fold<k>)")
    p.add_argument("--labels", default=None, help="class_labels_indices.csv of the data (default: the dataset's)")
    p.add_argument("--strict-labels", action="store_true",
                   help="a dataset class the model does not have is an error (default: reported and left out of "
                        "the metrics; classes match by AudioSet mid, else by display name)")
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold for clip F1")
    p.add_argument("--event-threshold", type=float, default=None,
                   help="threshold for event detection (default: the model's own, chosen on validation when its "
                        "provenance names one, as audiomamba tag; else 0.5)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seconds", type=float, default=None, help="evaluate at most this many seconds of each clip")
    p.add_argument("--tta-shifts", type=int, default=1,
                   help="average over N circular shifts of each clip, --tta-spacing frames apart (paper: 10 shifts "
                        "of 1 frame, 10 ms); framewise scores are moved back into place, so events are scored too")
    p.add_argument("--tta-spacing", type=int, default=1,
                   help="frames between the shifts (default 1; the shipped tagger's events: 4 shifts of 8 frames "
                        "spread over its 32-frame steps)")
    p.add_argument("--min-input", type=float, default=None, metavar="SECONDS",
                   help="centre clips shorter than this in silence this long (default: 2.5 for native-layout models, "
                        "0 = off; as `audiomamba tag` does)")
    p.add_argument("--no-events", action="store_true", help="skip event-based metrics even with strong labels")
    p.add_argument("--cv", default=None, metavar="1,2,...", help="ESC-50 cross-validation folds")
    p.add_argument("--out", default=None, help="output folder (default: next to the checkpoint, eval_<split>)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)


def _remap(cs, match):
    """The clips of ``cs`` with their targets and events re-indexed onto the model's classes (``match``); labels of
    unmatched classes are dropped (such clips stay in, as negatives of every matched class)."""
    import dataclasses

    from audiomamba.datasets import ClipSet

    to_model = match.data_to_model
    clips = [dataclasses.replace(c, targets=tuple(sorted({to_model[t] for t in c.targets if t in to_model})),
                                 events=tuple((to_model[t], a, b) for t, a, b in c.events if t in to_model))
             for c in cs.clips]
    return ClipSet(match.model_labels, clips, cs.multi_label, cs.name, cs.info)


def _restrict(pred: dict, match) -> dict:
    """A :func:`~audiomamba.evaluation.predict` result (over the model's classes) restricted to the matched
    classes, in the dataset's class order."""
    cols = match.model_columns
    out = dict(pred, scores=pred["scores"][:, cols], targets=pred["targets"][:, cols])
    if pred.get("framewise") is not None:
        out["framewise"] = {i: f[:, cols] for i, f in pred["framewise"].items()}
    return out


def evaluate(checkpoint: str, data: str, split: str = "test", fmt: str = "auto", labels: str | None = None,
             threshold: float = 0.5, event_threshold: float | None = None, batch_size: int = 8,
             seconds: float | None = None, tta_shifts: int = 1, tta_spacing: int = 1, events: bool = True,
             out: str | None = None, device: str = "auto", workers: int = 0, fold: int | None = None,
             strict_labels: bool = False, min_input_s: float | None = None) -> dict:
    import numpy as np

    from audiomamba.checkpoint import load
    from audiomamba.datasets import open_split
    from audiomamba.evaluation import evaluate_scores, event_metrics, per_class_table, predict
    from audiomamba.inference.events import model_event_threshold
    from audiomamba.utils.device import resolve_device

    t0 = time.time()
    dev = resolve_device(device)
    model = load(checkpoint, dev)
    meta = model.meta
    from audiomamba.datasets import DatasetError
    from audiomamba.evaluation.label_match import match_labels

    ds = open_split(data, split, fmt, labels, fold)
    match = match_labels(meta["labels"], ds.labels, ds.name or str(data))
    if match.unmatched and strict_labels:
        raise DatasetError(f"{ds.name or data}: classes not among the checkpoint's {len(meta['labels'])} labels "
                           f"(--strict-labels): {', '.join(repr(n) for n in match.unmatched)}")
    log.info("%s", match.describe())
    cs = _remap(ds, match)
    multi_label = bool(meta.get("multi_label", True))
    want_events = events and cs.has_events and model.head_type == "tscam"
    pred = predict(model, cs, batch_size, dev, multi_label, seconds, framewise=want_events, tta_shifts=tta_shifts,
                   tta_spacing=tta_spacing, num_workers=workers, progress=True, min_input_s=min_input_s,
                   on_error=lambda e: log.warning("skipped clip %s", e))
    skipped = pred["errors"]
    pred = _restrict(pred, match)
    m = evaluate_scores(pred, multi_label, threshold)
    names = match.names
    table = per_class_table(m, names)
    for row, model_name in zip(table, match.model_names):
        row["model_label"] = model_name
    m.pop("_per_class")
    summary = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "model": meta["model"]["name"],
               "multi_label": multi_label, **m, "skipped_clips": len(skipped), "labels": match.report(),
               "tta_shifts": tta_shifts, "tta_spacing_frames": tta_spacing, "min_input_s": pred["min_input_s"]}
    if want_events:
        hop = model.frontend.cfg.hop_length / model.sample_rate
        model_to_name = {k: n for k, n in zip(match.model_columns, names)}
        fw = {cs.clips[i].name: p for i, p in pred["framewise"].items()}
        gt = {cs.clips[i].name: [(a, b, model_to_name[t]) for t, a, b in cs.clips[i].events] for i in pred["framewise"]}
        dur = {cs.clips[i].name: max(p.shape[0] * hop, max((b for _, b, _ in gt[cs.clips[i].name]), default=0.0))
               for i, p in pred["framewise"].items()}
        try:
            ev_threshold = model_event_threshold(meta) if event_threshold is None else event_threshold
            summary.update(event_metrics(fw, hop, gt, dur, names, ev_threshold))
        except ImportError:
            log.warning("event metrics need sed_scores_eval: pip install 'audiomamba[sed]'")
    summary["seconds"] = round(time.time() - t0, 1)
    out_dir = Path(out) if out else Path(checkpoint).parent / f"eval_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(summary), indent=2, allow_nan=False)
    atomic_write(out_dir / "summary.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    with open(out_dir / "per_class.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    np.save(out_dir / "scores.npy", pred["scores"])
    if skipped:
        log.warning("%d clip(s) could not be decoded and were skipped", len(skipped))
    if match.unmatched:
        log.warning("left out of the metrics (not among the model's classes): %s",
                    ", ".join(repr(n) for n in match.unmatched))
    summary["out"] = str(out_dir)
    return summary


def validate(args) -> list[int]:
    """Every option, before any work (returns the --cv folds): ranges (exit 2), the device (exit 2), each
    checkpoint checked against its own config (exit 3), the data and label file present (exit 5), the output
    folder writable (exit 6)."""
    from audiomamba.checkpoint import check as check_checkpoint
    from audiomamba.cli import _checks as C
    from audiomamba.errors import CheckpointError, DatasetError, UsageError

    C.number(args.threshold, "--threshold", low=0, high=1)
    C.number(args.event_threshold, "--event-threshold", low=0, high=1, allow_none=True)
    C.number(args.batch_size, "--batch-size", low=1)
    C.number(args.seconds, "--seconds", low=0, low_open=True, allow_none=True)
    C.number(args.tta_shifts, "--tta-shifts", low=1)
    C.number(args.tta_spacing, "--tta-spacing", low=1)
    C.number(args.min_input, "--min-input", low=0, high=300, allow_none=True)
    C.workers(args.workers, "--workers")
    C.device(args.device, "--device")
    folds = C.int_list(args.cv, "--cv") if args.cv else []
    if folds and "{fold}" not in args.checkpoint:
        raise UsageError("with --cv, --checkpoint must contain {fold}, e.g. runs/esc50/fold{fold}/best.safetensors")
    try:
        checkpoints = [args.checkpoint.format(fold=k) for k in folds] if folds else [args.checkpoint]
    except (KeyError, IndexError, ValueError) as e:
        raise UsageError(f"--checkpoint {args.checkpoint!r}: with --cv, the only {{...}} field is {{fold}} ({e!r})") from None
    for ck in checkpoints:
        C.input_path(ck, "--checkpoint", CheckpointError)
        check_checkpoint(ck)
    C.input_path(args.data, "--data", DatasetError, kind="any")
    if args.labels is not None:
        C.label_file(args.labels, "--labels")
    # writable, but not created yet: a run that fails on its data leaves no empty folder (evaluate creates it)
    if args.out:
        C.output_dir(args.out, "--out", create=False)
    else:
        for ck in checkpoints:
            split = args.split if not folds else None
            C.output_dir(Path(ck).parent / f"eval_{split}" if split else Path(ck).parent, "--out (default)",
                          create=False)
    return folds


def run(args) -> int:
    folds = validate(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    common = dict(fmt=args.format, labels=args.labels, threshold=args.threshold,
                  event_threshold=args.event_threshold, batch_size=args.batch_size,
                  seconds=args.seconds, tta_shifts=args.tta_shifts, tta_spacing=args.tta_spacing,
                  events=not args.no_events, device=args.device,
                  workers=args.workers, strict_labels=args.strict_labels, min_input_s=args.min_input)
    if not folds:
        s = evaluate(args.checkpoint, args.data, args.split, out=args.out, **common)
        print(json.dumps(json_safe(s), allow_nan=False))
        return 0
    from audiomamba.evaluation.summary import cv_summary

    per_fold = {}
    for k in folds:
        ck = args.checkpoint.format(fold=k)
        out = str(Path(args.out) / f"fold{k}") if args.out else None
        per_fold[k] = evaluate(ck, args.data, f"fold{k}", out=out, **common)
    summary = json_safe(cv_summary(per_fold, ("top1_accuracy", "mAP", "mAUC")))
    if args.out:
        text = json.dumps(summary, indent=2, allow_nan=False)
        atomic_write(Path(args.out) / "cv_summary.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(json.dumps(summary, allow_nan=False))
    return 0
