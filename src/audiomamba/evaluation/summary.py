"""Cross-validation summaries: each fold's scores and their mean and standard deviation.

Written by ``audiomamba train --cv-folds`` (each fold's best validation scores) and ``audiomamba evaluate --cv``
(each fold's model on its held-out fold) as ``cv_summary.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["mean_std", "cv_summary"]


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of ``values``; the population standard deviation (divided by n, as usually reported
    over cross-validation folds).  ``ValueError`` when there are none."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std of no values")
    mean = math.fsum(vals) / len(vals)
    # plain float arithmetic: statistics.pstdev trips over some float inputs on Python 3.11
    var = math.fsum((v - mean) ** 2 for v in vals) / len(vals)
    return {"mean": mean, "std": math.sqrt(var)}


def cv_summary(per_fold: Mapping[int, Mapping[str, float | None]], keys: Sequence[str]) -> dict:
    """``{"folds": {fold: {key: value}}, key: {"mean", "std"}, ...}`` for each of ``keys`` that some fold has
    (a fold's missing or None value is left out of that key's mean).  Fold keys stay as given (JSON makes
    them strings)."""
    summary: dict = {"folds": {k: {key: scores.get(key) for key in keys} for k, scores in per_fold.items()}}
    for key in keys:
        vals = [scores[key] for scores in per_fold.values() if scores.get(key) is not None]
        if vals:
            summary[key] = mean_std(vals)
    return summary
