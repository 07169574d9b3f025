"""Choose a model's event threshold on validation data, from the step logits of ``scripts/compare_eval.py``:
collar-based event F1 (micro) over a grid of global thresholds, and per-class thresholds (each class's best F1,
``sed_scores_eval.collar_based.best_fscore``), each also chosen on one half of the clips and scored on the other
half, so that the gain of per-class thresholds over one global value is measured on clips they were not chosen on.

    python scripts/compare_eval.py --checkpoint MODEL --data .bank --split validation:400 --out VAL --device cpu
    python scripts/event_thresholds.py --steps VAL/steps.npz --data .bank --split validation:400 [--out FILE.json]
        [--grid 0.5,0.7,0.8,0.85,0.9,0.93,0.95,0.97]

Prints one JSON object (also written to ``--out``): F1 per global threshold, the best, the per-class thresholds
and their F1, and the half-split check.  ``scripts/ship_pretrained.py --restamp`` stores a choice in the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

COLLARS = dict(onset_collar=0.2, offset_collar=0.2, offset_collar_rate=0.2)  # as audiomamba.evaluation.event_metrics


def micro_f1(scores: dict, gt: dict, threshold) -> float:
    """Collar-based micro-averaged event F1 at one threshold or a {class: threshold} dict."""
    import sed_scores_eval

    f, _, _, _ = sed_scores_eval.collar_based.fscore(scores, gt, threshold, **COLLARS)
    return float(f["micro_average"])


def best_per_class(scores: dict, gt: dict, fallback: float) -> dict:
    """Each class's F1-maximising threshold; ``fallback`` for a class without events or detections."""
    import sed_scores_eval

    _, _, _, thr, _ = sed_scores_eval.collar_based.best_fscore(scores, gt, **COLLARS)
    return {c: (float(t) if t == t and abs(t) != float("inf") else fallback) for c, t in thr.items()
            if c != "macro_average"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", required=True, help="steps.npz of scripts/compare_eval.py (validation clips)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--format", default="auto")
    ap.add_argument("--grid", default="0.5,0.7,0.8,0.85,0.9,0.93,0.95,0.97")
    ap.add_argument("--median", default="1", help="median filter lengths to try, in score steps (odd; 1 = none)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_eval import step_scores

    from audiomamba.evaluation.metrics import sed_inputs
    from audiomamba.inference.events import median_filter

    fw, hop, gt_raw, dur, names = step_scores(a.steps, a.data, a.split, a.format)
    _, gt, classes = sed_inputs(fw, hop, gt_raw, dur, names)
    grid = [float(v) for v in a.grid.split(",")]
    res = {"steps": a.steps, "split": a.split, "clips": len(fw), "classes": len(classes), "step_s": hop}
    medians = [int(v) for v in a.median.split(",")]
    for k in medians[1:]:  # median filters other than the first: F1 over the grid
        sk = sed_inputs({c: median_filter(v, k) for c, v in fw.items()}, hop, gt_raw, dur, names)[0]
        res[f"global_median_{k}"] = {str(t): micro_f1(sk, gt, t) for t in grid}
    fw = {c: median_filter(v, medians[0]) for c, v in fw.items()} if medians[0] > 1 else fw
    scores = sed_inputs(fw, hop, gt_raw, dur, names)[0]
    res["median"] = medians[0]
    res["global"] = {str(t): micro_f1(scores, gt, t) for t in grid}
    best = max(grid, key=lambda t: res["global"][str(t)])
    res["best_global"] = best
    per_class = best_per_class(scores, gt, best)
    res["per_class"] = per_class
    res["per_class_f1"] = micro_f1(scores, gt, per_class)
    # the half-split check: choose on one half, score on the other, both ways
    ids = sorted(scores)
    halves = [ids[0::2], ids[1::2]]
    check = []
    for pick, judge in (halves, halves[::-1]):
        sp, gp = {c: scores[c] for c in pick}, {c: gt[c] for c in pick}
        sj, gj = {c: scores[c] for c in judge}, {c: gt[c] for c in judge}
        g = max(grid, key=lambda t: micro_f1(sp, gp, t))
        pc = best_per_class(sp, gp, g)
        check.append({"global_threshold": g, "global_f1_other_half": micro_f1(sj, gj, g),
                      "per_class_f1_other_half": micro_f1(sj, gj, pc)})
    res["half_split"] = check
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
