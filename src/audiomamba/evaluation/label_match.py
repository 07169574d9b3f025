"""Scoring a model on a dataset whose classes are a subset of the model's, or only overlap them.

:func:`match_labels` pairs each class of the dataset with one of the model's: by AudioSet ``mid`` when both
carry the same one, else by display name after :func:`normalise_name` (case, punctuation and spacing ignored),
else by one of the comma-separated synonyms of an AudioSet-style name ("Violin, fiddle" matches a dataset's
"Fiddle") when exactly one model class has it.  Dataset classes left without a partner are *unmatched*: they are
reported by name and kept out of the metrics (their clips stay in as negatives of every matched class).  No match
at all is an error (:class:`LabelMatchError`).

:meth:`LabelMatch.restrict` keeps the model's score columns of the matched classes, in the dataset's class order;
:func:`subset_metrics` is the whole computation for arrays (the model's scores, the dataset's targets);
``audiomamba evaluate`` applies the same match to a checkpoint and a dataset on disk.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiomamba.datasets.core import DatasetError

__all__ = ["LabelMatch", "LabelMatchError", "match_labels", "normalise_name", "subset_metrics"]


class LabelMatchError(DatasetError):
    """No class of the dataset matches the model's (or two dataset classes claim the same model class)."""


def normalise_name(name: str) -> str:
    """``name`` compared loosely: Unicode NFKC, case-folded, ``&`` read as ``and``, every run of characters
    other than letters and digits one space ("Violin, fiddle" -> "violin fiddle", "Hi-hat" -> "hi hat")."""
    s = unicodedata.normalize("NFKC", str(name)).casefold().replace("&", " and ")
    return re.sub(r"[\W_]+", " ", s).strip()


def _synonyms(name: str) -> set[str]:
    """The normalised comma-separated parts of an AudioSet-style name ("Canidae, dogs, wolves")."""
    return {p for p in (normalise_name(part) for part in str(name).split(",")) if p}


def _as_labels(labels: Sequence[Any]) -> list[dict]:
    """Label dicts (``index``, ``mid``, ``display_name``) from dicts or plain names (list position = index)."""
    out = []
    for i, lab in enumerate(labels):
        if isinstance(lab, str):
            out.append({"index": i, "mid": "", "display_name": lab})
        else:
            out.append({"index": int(lab.get("index", i)), "mid": lab.get("mid") or "",
                        "display_name": lab["display_name"]})
    return out


@dataclass
class LabelMatch:
    """The pairing of a dataset's classes with a model's.

    ``pairs``: ``(dataset index, model index, how)`` for each matched dataset class, in the dataset's class
    order, ``how`` one of ``"mid"``, ``"name"``, ``"synonym"``; ``unmatched``: display names of the dataset
    classes the model does not have.
    """

    model_labels: list[dict]
    data_labels: list[dict]
    pairs: list[tuple[int, int, str]]
    unmatched: list[str] = field(default_factory=list)

    @property
    def data_columns(self) -> list[int]:
        return [d for d, _, _ in self.pairs]

    @property
    def model_columns(self) -> list[int]:
        return [m for _, m, _ in self.pairs]

    @property
    def names(self) -> list[str]:
        """Display names (the dataset's) of the matched classes, in the order of the restricted columns."""
        return [self.data_labels[d]["display_name"] for d in self.data_columns]

    @property
    def model_names(self) -> list[str]:
        return [self.model_labels[m]["display_name"] for m in self.model_columns]

    @property
    def data_to_model(self) -> dict[int, int]:
        return {d: m for d, m, _ in self.pairs}

    def restrict(self, model_scores: np.ndarray) -> np.ndarray:
        """The model's scores (``(..., model classes)``) of the matched classes: ``(..., matched)``, dataset order."""
        model_scores = np.asarray(model_scores)
        if model_scores.shape[-1] != len(self.model_labels):
            raise ValueError(f"scores have {model_scores.shape[-1]} classes, the model has {len(self.model_labels)}")
        return model_scores[..., self.model_columns]

    def restrict_targets(self, data_targets: np.ndarray) -> np.ndarray:
        """The dataset's targets (``(clips, dataset classes)``) of the matched classes: ``(clips, matched)``."""
        data_targets = np.asarray(data_targets)
        if data_targets.shape[-1] != len(self.data_labels):
            raise ValueError(f"targets have {data_targets.shape[-1]} classes, the dataset has {len(self.data_labels)}")
        return data_targets[..., self.data_columns]

    def report(self) -> dict:
        """What the summary records: counts, each matched pair and how, the unmatched names."""
        how = {k: sum(1 for *_, h in self.pairs if h == k) for k in ("mid", "name", "synonym")}
        return {"dataset_classes": len(self.data_labels), "model_classes": len(self.model_labels),
                "matched_classes": len(self.pairs), "matched_by": how,
                "matched": [{"dataset": self.data_labels[d]["display_name"],
                             "model": self.model_labels[m]["display_name"], "by": h} for d, m, h in self.pairs],
                "unmatched_classes": list(self.unmatched)}

    def describe(self) -> str:
        """One line for the log: how many classes matched, and how; the unmatched ones by name."""
        r = self.report()
        by = ", ".join(f"{n} by {k}" for k, n in r["matched_by"].items() if n)
        line = (f"labels: {r['matched_classes']} of the dataset's {r['dataset_classes']} classes matched to the "
                f"model's {r['model_classes']} ({by})")
        if self.unmatched:
            line += (f"; {len(self.unmatched)} not among the model's classes, left out of the metrics: "
                     + ", ".join(repr(n) for n in self.unmatched))
        return line


def match_labels(model_labels: Sequence[Any], data_labels: Sequence[Any], source: str = "dataset") -> LabelMatch:
    """Pair ``data_labels`` with ``model_labels`` (label dicts with ``display_name`` and optional ``mid``, or plain
    names) as the module docstring says.  :class:`LabelMatchError` when nothing matches, or when two dataset
    classes would share one model class."""
    model, data = _as_labels(model_labels), _as_labels(data_labels)
    by_mid = {lab["mid"]: k for k, lab in enumerate(model) if lab["mid"]}
    by_name: dict[str, int] = {}
    for k, lab in enumerate(model):
        by_name.setdefault(normalise_name(lab["display_name"]), k)
    by_synonym: dict[str, set[int]] = {}
    for k, lab in enumerate(model):
        for s in _synonyms(lab["display_name"]):
            by_synonym.setdefault(s, set()).add(k)

    pairs, unmatched, taken = [], [], {}
    for d, lab in enumerate(data):
        k, how = by_mid.get(lab["mid"]) if lab["mid"] else None, "mid"
        if k is None:
            k, how = by_name.get(normalise_name(lab["display_name"])), "name"
        if k is None:
            found = set().union(*(by_synonym.get(s, set()) for s in _synonyms(lab["display_name"])))
            k, how = (found.pop(), "synonym") if len(found) == 1 else (None, "")
        if k is None:
            unmatched.append(lab["display_name"])
            continue
        if k in taken:
            raise LabelMatchError(f"{source}: classes {data[taken[k]]['display_name']!r} and {lab['display_name']!r} "
                                  f"both match the model's class {model[k]['display_name']!r}")
        taken[k] = d
        pairs.append((d, k, how))
    if not pairs:
        show = ", ".join(repr(lab["display_name"]) for lab in data[:8]) + (", ..." if len(data) > 8 else "")
        known = ", ".join(repr(lab["display_name"]) for lab in model[:8]) + (", ..." if len(model) > 8 else "")
        raise LabelMatchError(f"{source}: no class of the data matches the model, so there is nothing to score: each "
                              f"of its {len(data)} classes ({show}) is not one of the checkpoint's {len(model)} "
                              f"labels ({known}), by mid or by name")
    return LabelMatch(model, data, pairs, unmatched)


def subset_metrics(model_scores, model_labels: Sequence[Any], data_targets, data_labels: Sequence[Any],
                   threshold: float = 0.5, multi_label: bool = True) -> dict:
    """Tagging metrics of a model on a dataset with other classes.

    ``model_scores``: (clips, model classes) probabilities; ``data_targets``: (clips, dataset classes) in {0, 1}.
    The classes are matched by :func:`match_labels`, both arrays restricted to the matched ones, and
    :func:`~audiomamba.evaluation.metrics.tagging_metrics` computed on them (single-label: the top class among the
    matched ones is the prediction).  The result also holds ``labels`` (the match's :meth:`LabelMatch.report`) and
    ``_match`` (the :class:`LabelMatch`).
    """
    from audiomamba.evaluation.metrics import tagging_metrics

    match = match_labels(model_labels, data_labels)
    out = tagging_metrics(match.restrict(model_scores), match.restrict_targets(data_targets), threshold, multi_label)
    out["labels"] = match.report()
    out["_match"] = match
    return out
