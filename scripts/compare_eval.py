"""Score one run's validation-selected checkpoint on the test split, once (scripts/compare_gpu.sh, issue 17).

    python scripts/compare_eval.py --checkpoint runs/compare/X/best.safetensors --data .bank --split test \
        --out runs/compare/X/eval_test [--workers 2] [--batch-size 128] [--device auto]

Writes ``OUT/summary.json``: the clip metrics (mAP, mAUC, d', F1 ...), the model's parameter count, and for models
with framewise outputs the event metrics (event F1, PSDS1) when ``sed_scores_eval`` imports; ``OUT/per_class.csv``;
and ``OUT/steps.npz``: the head's logits per time step (``step_frames`` frames each; float16), the clip indices,
lengths, scores and targets and the layout, so that event metrics can be computed later where ``sed_scores_eval``
is installed (``scripts/collect_results.py --events``, ``scripts/event_thresholds.py``) and clip scores pooled
from the steps compared (``scripts/clip_pooling.py``): :func:`step_scores` maps them onto the
frames as the model does (:func:`audiomamba.models.steps_to_frames`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch


def step_scores(npz: str | Path, data: str, split: str, fmt: str = "auto"):
    """Read back a ``steps.npz`` of :func:`main` against its dataset split: ``(framewise, hop, ground_truth,
    durations, names)`` in the form :func:`audiomamba.evaluation.event_metrics` takes (scores by clip name, at the
    frame rate as the model maps its steps onto frames, float64 in [0, 1]).  Raises ``ValueError`` when the
    scores' classes do not match the split's."""
    from audiomamba.datasets import open_split
    from audiomamba.models import steps_to_frames

    arrays = np.load(npz)
    if "logits" not in arrays:
        raise ValueError(f"{npz}: no step logits (written by an older compare_eval.py, which kept step-rate scores); "
                         "run scripts/compare_eval.py again")
    cs = open_split(data, split, fmt)
    names = cs.label_names
    if arrays["logits"].shape[2] != len(names):
        raise ValueError(f"{npz}: {arrays['logits'].shape[2]} classes, {data} {split} has {len(names)}")
    hop = float(arrays["hop"])
    step_frames = int(arrays["step_frames"]) if "step_frames" in arrays else 32  # older files: coarse steps
    fw, gt, dur = {}, {}, {}
    for j, i in enumerate(arrays["index"].tolist()):
        clip = cs.clips[i]
        frames = int(arrays["frames"][j])
        logits = torch.from_numpy(arrays["logits"][j, : int(arrays["steps"][j])].astype(np.float64)).T[None]
        # sigmoid: the bank's models are multi-label
        fw[clip.name] = torch.sigmoid(steps_to_frames(logits, frames, str(arrays["layout"]), step_frames)[0]).numpy()
        gt[clip.name] = [(on, off, names[t]) for t, on, off in clip.events]
        end = max((e[1] for e in gt[clip.name]), default=0.0)
        dur[clip.name] = max(frames * hop, end)
    return fw, hop, gt, dur, names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--format", default="auto")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threshold", type=float, default=0.5)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from audiomamba.checkpoint import load
    from audiomamba.datasets import open_split
    from audiomamba.evaluation import evaluate_scores, event_metrics, per_class_table, predict
    from audiomamba.utils.device import resolve_device

    t0 = time.time()
    dev = resolve_device(a.device)
    model = load(a.checkpoint, dev)
    meta = model.meta
    names = [lab["display_name"] for lab in meta["labels"]]
    cs = open_split(a.data, a.split, a.format)
    if cs.label_names != names:
        raise SystemExit(f"error: {a.data} {a.split}: its classes differ from the checkpoint's")
    multi_label = bool(meta.get("multi_label", True))
    framewise = cs.has_events and getattr(model, "head_type", "") == "tscam"
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        pred = predict(model, cs, a.batch_size, dev, multi_label, framewise=framewise, num_workers=a.workers)
    m = evaluate_scores(pred, multi_label, a.threshold)
    table = per_class_table(m, names)
    m.pop("_per_class")
    summary = {"checkpoint": a.checkpoint, "data": a.data, "split": a.split, "model": meta["model"]["name"],
               "params": sum(p.numel() for p in model.parameters()), "clips": int(pred["valid"].sum()),
               "skipped_clips": len(pred["errors"]), **m}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if framewise:
        hop = model.frontend.cfg.hop_length / model.sample_rate
        fw = {i: p for i, p in pred["framewise"].items()}
        steps = pred["step_logits"]
        if steps:  # none for clips a fold-layout model windows
            idx = np.array(sorted(steps), dtype=np.int64)
            lengths = np.array([fw[i].shape[0] for i in idx], dtype=np.int32)
            counts = np.array([steps[i].shape[0] for i in idx], dtype=np.int32)
            q = np.zeros((len(idx), int(counts.max()), len(names)), np.float16)
            for j, i in enumerate(idx):
                q[j, : counts[j]] = np.clip(steps[i], -6e4, 6e4)
            np.savez_compressed(out / "steps.npz", logits=q, index=idx, frames=lengths, steps=counts,
                                hop=np.float64(hop), layout=np.str_(model.layout),
                                step_frames=np.int64(model.step_frames),
                                clip_scores=np.asarray(pred["scores"])[idx].astype(np.float32),
                                targets=np.asarray(pred["targets"])[idx].astype(np.uint8))
        try:
            gt = {cs.clips[i].name: [(on, off, names[t]) for t, on, off in cs.clips[i].events] for i in fw}
            dur = {cs.clips[i].name: max(p.shape[0] * hop, max((e[1] for e in gt[cs.clips[i].name]), default=0.0))
                   for i, p in fw.items()}
            summary.update(event_metrics({cs.clips[i].name: p for i, p in fw.items()}, hop, gt, dur, names, a.threshold))
            summary["events_from"] = "framewise scores at 10 ms"
        except ImportError:
            summary["events_from"] = "none here: sed_scores_eval is not installed (steps.npz keeps the scores)"
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    with open(out / "per_class.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
