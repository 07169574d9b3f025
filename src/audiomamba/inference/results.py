"""What the :class:`~audiomamba.inference.Tagger` gives back: a :class:`TagResult` per input, or a :class:`FileError`
in place of a file that could not be tagged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiomamba.inference.events import Event

__all__ = ["TagResult", "FileError"]


@dataclass
class TagResult:
    """What :meth:`Tagger.tag` / :meth:`Tagger.detect` return for one input.

    ``scores``: (classes,) clip scores; ``framewise``: (frames, classes) probabilities at ``frame_rate``
    frames/s (``detect`` only); ``events``: merged events (``detect`` only); ``warnings``: e.g. silent input.
    """

    labels: list[str]
    scores: np.ndarray
    duration_s: float
    file: str | None = None
    top_k: int = 5
    framewise: np.ndarray | None = None
    frame_rate: float = 100.0
    events: list[Event] = field(default_factory=list)
    embedding: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def top(self, k: int | None = None, threshold: float | None = None) -> list[tuple[str, float]]:
        """The ``k`` best (label, score) pairs, best first, keeping only scores >= ``threshold`` if given."""
        k = self.top_k if k is None else k
        order = np.argsort(-self.scores, kind="stable")[: max(0, k)]
        return [(self.labels[i], float(self.scores[i])) for i in order if threshold is None or self.scores[i] >= threshold]

    @property
    def tags(self) -> list[tuple[str, float]]:
        return self.top()

    @property
    def frame_times(self) -> np.ndarray:
        """Centre time (s) of each framewise row."""
        n = 0 if self.framewise is None else self.framewise.shape[0]
        return np.arange(n) / self.frame_rate

    def to_dict(self, top_k: int | None = None, threshold: float | None = None) -> dict[str, Any]:
        """The CLI's JSON object: ``{"file", "duration_s", "tags": [{"label", "score"}], "events": [...]}``.

        Always valid JSON: a non-finite number (which the Tagger never gives: it refuses a non-finite model
        output) is written as ``null``, not as ``NaN``."""
        return {
            "file": self.file,
            "duration_s": _finite(self.duration_s, 3),
            "tags": [{"label": lab, "score": _finite(s, 4)} for lab, s in self.top(top_k, threshold)],
            "events": [e.to_dict() for e in self.events],
        }


def _finite(x: float, digits: int) -> float | None:
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


@dataclass
class FileError:
    """A file that could not be tagged (yielded by :meth:`Tagger.tag_files` in its place)."""

    file: str
    message: str
    kind: str = "error"  # "not_found", "decode", "invalid", "model" (the model's output is not finite)

    def __str__(self) -> str:
        return self.message
