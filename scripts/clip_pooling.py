"""Compare ways of pooling a token-semantic model's step logits into clip scores (issue 17).

    python scripts/compare_eval.py --checkpoint FILE --data .bank --split validation --out VAL --device cpu
    python scripts/clip_pooling.py --steps VAL/steps.npz [--json OUT.json]

The model's clip logits are the mean of its coarse step logits over the clip (``TokenSemanticHead``), which is
what the clip loss trains.  A sound of half a second in a 10 s soundscape moves that mean little, while the
frame loss teaches each (fine) step to say whether the class sounds there; so the clip scores could also be read
from the steps: their maximum, a soft maximum (``T * log mean exp(logit / T)``: the mean at large ``T``, the
maximum as ``T`` falls), or the mean of the top ``k`` steps, each alone or blended with the model's own clip
logit.  Prints clip mAP, mAUC and top-1 (of the clips with one class) for each pooling, scored by
:func:`audiomamba.evaluation.tagging_metrics` against the targets kept in ``steps.npz``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load_steps(npz: str | Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``(step logits per clip (steps, C) float64, clip logits (N, C), targets (N, C))`` from a ``steps.npz`` of
    ``scripts/compare_eval.py``.  Raises ``ValueError`` for a file written without the clip scores."""
    arrays = np.load(npz)
    if "clip_scores" not in arrays:
        raise ValueError(f"{npz}: no clip scores (written by an older compare_eval.py); run it again")
    steps = [arrays["logits"][j, :n].astype(np.float64) for j, n in enumerate(arrays["steps"].tolist())]
    p = np.clip(arrays["clip_scores"].astype(np.float64), 1e-12, 1 - 1e-12)
    return steps, np.log(p) - np.log1p(-p), arrays["targets"].astype(np.int64)


def soft_max(x: np.ndarray, temperature: float) -> np.ndarray:
    """``T * log(mean(exp(x / T)))`` over axis 0, computed stably: the mean of ``x`` as ``T`` grows, its maximum as
    ``T`` falls to 0."""
    z = x / temperature
    m = z.max(axis=0)
    return temperature * (m + np.log(np.exp(z - m).mean(axis=0)))


def top_k_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` largest values over axis 0 (all of them when there are fewer)."""
    k = min(k, x.shape[0])
    return np.sort(x, axis=0)[-k:].mean(axis=0)


def poolings(steps: list[np.ndarray], clip: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate's clip logits ``(N, C)`` by name."""
    out = {"model (mean of coarse steps)": clip,
           "mean of steps": np.stack([s.mean(0) for s in steps]),
           "max of steps": np.stack([s.max(0) for s in steps])}
    for t in (0.5, 1.0, 2.0, 4.0):
        out[f"soft max T={t:g}"] = np.stack([soft_max(s, t) for s in steps])
    for k in (3, 6, 12, 25):
        out[f"top-{k} mean"] = np.stack([top_k_mean(s, k) for s in steps])
    for name in ("max of steps", "soft max T=1", "top-6 mean"):
        for w in (0.25, 0.5, 0.75):
            out[f"{w:g} model + {1 - w:g} {name}"] = w * clip + (1 - w) * out[name]
    return out


def score(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Clip mAP and mAUC, and top-1 accuracy over the clips with exactly one class."""
    from audiomamba.evaluation import tagging_metrics

    m = tagging_metrics(1.0 / (1.0 + np.exp(-logits)), targets)
    single = targets.sum(1) == 1
    top1 = float((targets[single].argmax(1) == logits[single].argmax(1)).mean()) if single.any() else float("nan")
    return {"mAP": float(m["mAP"]), "mAUC": float(m["mAUC"]), "top1_single": top1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", required=True, help="steps.npz of scripts/compare_eval.py")
    ap.add_argument("--json", default=None, help="also write the table here")
    a = ap.parse_args(argv)
    steps, clip, targets = load_steps(a.steps)
    rows = {name: score(x, targets) for name, x in poolings(steps, clip).items()}
    width = max(map(len, rows))
    print(f"{'pooling':<{width}}  mAP    mAUC   top-1 (single-class clips)")
    for name, r in rows.items():
        print(f"{name:<{width}}  {r['mAP']:.4f} {r['mAUC']:.4f} {r['top1_single']:.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"steps": str(a.steps), "clips": len(steps), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
