"""The common clip representation shared by every dataset format.

A dataset split is a :class:`ClipSet`: the label set (``class_labels_indices`` dicts), whether the task is
multi-label, and a list of :class:`Clip` -- an audio file (or a member of a shard), an optional time range,
the indices of its labels, and optional strong labels (events with onset/offset in seconds, relative to the
clip's start).  Readers validate eagerly: a label not in the label set, a missing file (or a folder where a file
is listed) or an empty split is a :class:`DatasetError` naming the file and line.  Clips whose audio cannot be
used (undecodable, truncated, NaN or infinite samples) are skipped and counted while training and evaluating
(:class:`~audiomamba.datasets.loader.ClipDataset`), not here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from audiomamba.errors import DatasetError

log = logging.getLogger("audiomamba.datasets")

__all__ = ["Clip", "ClipSet", "DatasetError", "LabelIndex"]



@dataclass(frozen=True)
class Clip:
    """One example. ``path`` is a local audio file; for packed data ``shard`` + ``member`` locate it, and for a
    source bank ``path`` is the bank and ``plan`` how to mix the clip.

    ``offset``/``duration`` (seconds) select part of the file (``duration`` None: to the end).
    ``targets``: label indices.  ``events``: ``(label_index, onset, offset)`` in seconds from ``offset``.
    ``source``: where the clip was declared (``file:line``), for messages.
    """

    path: str
    targets: tuple[int, ...]
    events: tuple[tuple[int, float, float], ...] = ()
    offset: float = 0.0
    duration: float | None = None
    source: str = ""
    shard: str | None = None
    member: tuple[int, int] | None = None  # (byte offset, size) of the audio inside ``shard``
    key: str = ""
    plan: tuple | None = None  # a source bank's mixing plan: ``path`` is the bank, the audio is rendered from it

    @property
    def name(self) -> str:
        return self.key or self.path

    @property
    def strongly_labelled(self) -> bool:
        """Whether every label of the clip has its events, so that where no event is, no labelled sound is (a
        clip without labels counts: nothing is in it)."""
        return set(self.targets) <= {e[0] for e in self.events}


@dataclass
class ClipSet:
    """A split: ``labels`` (list of ``{"index","mid","display_name"}``), ``multi_label``, ``clips``."""

    labels: list[dict[str, Any]]
    clips: list[Clip]
    multi_label: bool = True
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def label_names(self) -> list[str]:
        return [lab["display_name"] for lab in self.labels]

    @property
    def has_events(self) -> bool:
        return any(c.events for c in self.clips)

    def class_counts(self) -> list[int]:
        counts = [0] * self.num_classes
        for c in self.clips:
            for t in c.targets:
                counts[t] += 1
        return counts

    def require_nonempty(self) -> "ClipSet":
        if not self.clips:
            raise DatasetError(f"{self.name or 'dataset'}: the split is empty (no clips)")
        return self


class LabelIndex:
    """Maps a label written in a dataset (display name, or mid) to its index; errors name the source."""

    def __init__(self, labels: list[dict[str, Any]]) -> None:
        self.labels = labels
        self._map: dict[str, int] = {}
        for lab in labels:
            self._map[lab["display_name"]] = lab["index"]
            self._map.setdefault(lab["display_name"].lower(), lab["index"])
            if lab.get("mid"):
                self._map.setdefault(lab["mid"], lab["index"])

    def __call__(self, name: str, source: str) -> int:
        name = name.strip()
        idx = self._map.get(name, self._map.get(name.lower()))
        if idx is None:
            known = ", ".join(lab["display_name"] for lab in self.labels[:8])
            more = "" if len(self.labels) <= 8 else f", ... ({len(self.labels)} in all)"
            raise DatasetError(f"{source}: label {name!r} is not in the label set ({known}{more})")
        return idx


def read_text(path: Path, what: str = "file") -> str:
    """A dataset's text file (manifest, metadata, index), decoded as UTF-8 (a leading byte-order mark dropped):
    a ``DatasetError`` naming the file -- and the line of the first byte that is not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); save the {what} as "
                           "UTF-8") from None


def check_file(path: Path, source: str) -> None:
    """A listed audio file must be a file: a missing one, or a folder of that name, is a ``DatasetError`` naming
    ``source`` (the manifest's ``file:line``)."""
    if path.is_dir():
        raise DatasetError(f"{source}: {path} is a directory, not an audio file")
    if not path.is_file():
        raise DatasetError(f"{source}: audio file not found: {path}")
