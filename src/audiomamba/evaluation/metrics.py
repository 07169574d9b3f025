"""Tagging and detection metrics.

Clip level (``scores`` (N, C) probabilities, ``targets`` (N, C) in {0, 1}):
mAP (macro average precision over classes with at least one positive, scikit-learn's
``average_precision_score``), mAUC (macro ROC AUC over classes with both positives and negatives),
d' = sqrt(2) * Phi^-1(mAUC), micro/macro F1 at a threshold, top-1 accuracy (single-label data).
Event level (strong labels): collar-based event F1 and PSDS via ``sed_scores_eval`` (optional).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["tagging_metrics", "per_class_table", "d_prime", "event_metrics", "sed_inputs"]


def d_prime(auc: float) -> float:
    auc = min(max(auc, 1e-6), 1 - 1e-6)
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def _per_class(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    c = scores.shape[1]
    ap, auc = np.full(c, np.nan), np.full(c, np.nan)
    for k in range(c):
        pos = targets[:, k] > 0.5
        if pos.any():
            ap[k] = average_precision_score(pos, scores[:, k])
            if not pos.all():
                auc[k] = roc_auc_score(pos, scores[:, k])
    return ap, auc


def tagging_metrics(scores, targets, threshold: float = 0.5, multi_label: bool = True) -> dict:
    """Summary metrics (see the module docstring); classes absent from ``targets`` do not count in mAP."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = (np.asarray(targets) > 0.5).astype(np.int64)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (clips, classes)")
    ap, auc = _per_class(scores, targets)
    out: dict = {"clips": int(len(scores)), "classes_evaluated": int(np.sum(~np.isnan(ap)))}
    out["mAP"] = float(np.nanmean(ap)) if out["classes_evaluated"] else float("nan")
    out["mAUC"] = float(np.nanmean(auc)) if np.any(~np.isnan(auc)) else float("nan")
    out["d_prime"] = d_prime(out["mAUC"]) if not math.isnan(out["mAUC"]) else float("nan")
    if multi_label:
        pred = (scores >= threshold).astype(np.int64)
    else:  # single label: the top class is the prediction
        pred = np.zeros_like(targets)
        pred[np.arange(len(scores)), scores.argmax(1)] = 1
    tp = (pred * targets).sum(0)
    fp = (pred * (1 - targets)).sum(0)
    fn = ((1 - pred) * targets).sum(0)
    micro = 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum())
    present = targets.sum(0) > 0
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(1, 2 * tp + fp + fn), 0.0)
    out.update(threshold=threshold, micro_f1=float(micro), macro_f1=float(f1[present].mean()) if present.any() else float("nan"))
    if not multi_label or (targets.sum(1) == 1).all():
        out["top1_accuracy"] = float(np.mean(targets[np.arange(len(scores)), scores.argmax(1)] == 1))
    out["_per_class"] = {"ap": ap, "auc": auc, "f1": f1, "positives": targets.sum(0), "tp": tp, "fp": fp, "fn": fn}
    return out


def per_class_table(metrics: dict, labels: list[str]) -> list[dict]:
    pc = metrics["_per_class"]
    rows = []
    for k, name in enumerate(labels):
        def f(v):
            return "" if np.isnan(v) else round(float(v), 6)
        rows.append({"index": k, "label": name, "positives": int(pc["positives"][k]), "ap": f(pc["ap"][k]),
                     "auc": f(pc["auc"][k]), "f1": round(float(pc["f1"][k]), 6), "tp": int(pc["tp"][k]),
                     "fp": int(pc["fp"][k]), "fn": int(pc["fn"][k])})
    return rows


def _merge_events(events) -> list[tuple[float, float, str]]:
    """Join overlapping or touching events of the same class (the reference must not overlap itself)."""
    out: list[list] = []
    for a, b, lab in sorted(((float(a), float(b), lab) for a, b, lab in events), key=lambda e: (e[2], e[0])):
        if out and out[-1][2] == lab and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b, lab])
    return [tuple(e) for e in out]


def sed_inputs(framewise: dict[str, np.ndarray], frame_hop: float, ground_truth: dict[str, list],
               durations: dict[str, float], labels: list[str]) -> tuple[dict, dict, list[str]]:
    """``sed_scores_eval``'s inputs from framewise probabilities (see :func:`event_metrics`): score data frames of
    the classes that have events, the merged reference events by clip, and those classes (sorted)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sed_scores_eval.base_modules.scores import create_score_dataframe

    classes = sorted({lab for evs in ground_truth.values() for _, _, lab in evs})
    if not classes:
        raise ValueError("no strong labels (events) in the reference")
    cols = [labels.index(c) for c in classes]
    scores = {}
    for cid, fw in framewise.items():
        n = fw.shape[0]
        ts = np.arange(n + 1) * frame_hop
        ts[-1] = max(ts[-1], durations.get(cid, ts[-1]))
        scores[cid] = create_score_dataframe(fw[:, cols].astype(np.float64), ts, classes)
    gt = {cid: _merge_events(ground_truth.get(cid, [])) for cid in scores}
    return scores, gt, classes


def event_metrics(framewise: dict[str, np.ndarray], frame_hop: float, ground_truth: dict[str, list],
                  durations: dict[str, float], labels: list[str], threshold: float = 0.5,
                  collar: float = 0.2, psds: bool = True) -> dict:
    """Event-based scores from framewise probabilities.

    ``framewise[clip_id]``: (frames, C) probabilities, frame k covering ``[k*hop, (k+1)*hop)`` seconds;
    ``ground_truth[clip_id]``: ``[(onset, offset, label), ...]``.  Returns collar-based (onset collar
    ``collar`` s, offset collar max(``collar``, 20% of the event)) event F1 (micro and macro over classes
    with events) at ``threshold``, and PSDS (DCASE scenario 1: DTC=GTC=0.7, alpha_st=1) when ``psds``.
    Needs ``sed_scores_eval`` (``pip install audiomamba[sed]``).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sed_scores_eval

    scores, gt, classes = sed_inputs(framewise, frame_hop, ground_truth, durations, labels)
    f, p, r, _ = sed_scores_eval.collar_based.fscore(scores, gt, threshold, onset_collar=collar,
                                                      offset_collar=collar, offset_collar_rate=0.2)
    out = {"event_f1_micro": float(f["micro_average"]), "event_f1_macro": float(f["macro_average"]),
           "event_precision_micro": float(p["micro_average"]), "event_recall_micro": float(r["micro_average"]),
           "event_classes": classes, "event_threshold": threshold, "event_collar_s": collar}
    if psds:
        value, *_ = sed_scores_eval.intersection_based.psds(
            scores=scores, ground_truth=gt, audio_durations={c: float(durations[c]) for c in scores},
            dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0,
            unit_of_time="hour", max_efpr=100.0)
        out["psds1"] = float(value)
    return out
