"""Label sets: AudioSet's ``class_labels_indices.csv`` format (index, mid, display_name)."""

from __future__ import annotations

import csv
import os
from importlib import resources
from pathlib import Path

__all__ = ["read_class_labels", "write_class_labels", "audioset_labels"]


def _parse(rows, source: str) -> list[dict]:
    labels = []
    for n, row in enumerate(rows, start=2):
        try:
            labels.append({"index": int(row["index"]), "mid": row["mid"].strip(), "display_name": row["display_name"].strip()})
        except (KeyError, ValueError, AttributeError) as e:
            raise ValueError(f"{source}:{n}: expected columns index,mid,display_name ({e})") from e
    if [lab["index"] for lab in labels] != list(range(len(labels))):
        raise ValueError(f"{source}: indices must be 0..{len(labels) - 1} in order")
    names = [lab["display_name"] for lab in labels]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: duplicate display names")
    if not labels:
        raise ValueError(f"{source}: no labels")
    return labels


def read_class_labels(path: str | os.PathLike) -> list[dict]:
    """Read a ``class_labels_indices.csv``: a list of ``{"index", "mid", "display_name"}`` dicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        return _parse(csv.DictReader(f), str(path))


def write_class_labels(labels: list[dict], path: str | os.PathLike) -> None:
    """Write labels in AudioSet's ``class_labels_indices.csv`` format."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        w.writerow(["index", "mid", "display_name"])
        for lab in labels:
            w.writerow([lab["index"], lab["mid"], lab["display_name"]])


def audioset_labels() -> list[dict]:
    """The 527 AudioSet classes shipped with the package (CC-BY 4.0, see resources/README.md)."""
    text = resources.files("audiomamba").joinpath("resources/audioset_class_labels_indices.csv").read_text(encoding="utf-8")
    return _parse(csv.DictReader(text.splitlines()), "audioset_class_labels_indices.csv")
