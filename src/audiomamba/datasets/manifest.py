"""Manifest datasets: a JSONL or CSV file listing clips, paths relative to the manifest's folder.

JSONL, one object per line (the soundscape builder's output)::

    {"path": "audio/train/000001.wav", "labels": ["Dog", "Speech"],
     "events": [{"label": "Dog", "onset": 1.25, "offset": 2.1}], "duration": 10.0}

``labels`` may be a list or a ``;``-separated string; optional ``offset`` / ``duration`` (seconds) select part
of the file; ``events`` are strong labels (their labels are added to ``labels``).  Other keys are ignored.

CSV, with a header.  Weak labels: columns ``path`` (required), ``labels`` (``;``-separated names), optional
``offset``, ``duration``.  Strong labels: one row per event with columns ``path,label,onset,offset`` (DCASE
style; ``event_label`` also accepted); rows of the same ``path`` are merged.  A CSV has either a ``labels`` column (weak) or ``label``+``onset``+``offset`` (strong),
or both (rows with an empty onset are weak labels).

Labels are matched by display name (case-insensitive) or mid against the label set: the manifest folder's
``class_labels_indices.csv`` unless one is given; without any label file, the sorted set of labels found.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from audiomamba.datasets.core import Clip, ClipSet, DatasetError, LabelIndex, check_file, read_text
from audiomamba.labels import read_class_labels

__all__ = ["read_manifest", "find_manifest"]


def find_manifest(root: Path, split: str) -> Path:
    """``split`` as a path, or ``root/split.jsonl`` / ``root/split.csv``."""
    p = Path(split)
    cands = [p, root / split] if p.suffix in (".jsonl", ".csv", ".json") else []
    cands += [root / f"{split}.jsonl", root / f"{split}.csv"]
    for c in cands:
        if c.is_file():
            return c
    raise DatasetError(f"no manifest for split {split!r}: looked for {', '.join(str(c) for c in cands)}")


def _split_labels(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace(",", ";").split(";") if v.strip()] if value.strip() else []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ValueError(f"labels must be a list or a ';'-separated string, got {type(value).__name__}")


def _opt_float(v, what: str, source: str, low: float | None = None, above: float | None = None) -> float | None:
    """A number of seconds (or None when absent); finite, at least ``low`` / more than ``above``."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        if isinstance(v, bool):
            raise TypeError
        x = float(v)
    except (TypeError, ValueError):
        raise DatasetError(f"{source}: {what} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise DatasetError(f"{source}: {what} must be a finite number, got {v!r}")
    if low is not None and x < low:
        raise DatasetError(f"{source}: {what} must be at least {low:g}, got {x:g}")
    if above is not None and x <= above:
        raise DatasetError(f"{source}: {what} must be more than {above:g}, got {x:g}")
    return x


def _event(ev, src: str) -> tuple[str, float, float]:
    try:
        label = ev.get("label", ev.get("event_label"))
        on, off = ev["onset"], ev["offset"]
    except (KeyError, TypeError, AttributeError):
        raise DatasetError(f"{src}: each event needs label, onset and offset, got {ev!r}") from None
    if not isinstance(label, str) or not label.strip():
        raise DatasetError(f"{src}: each event needs label, onset and offset, got {ev!r}")
    return label, _opt_float(on, "event onset", src, low=0.0), _opt_float(off, "event offset", src, low=0.0)


def _raw_rows(path: Path) -> list[tuple[str, dict]]:
    """(source, {path, labels: [..], events: [(label, on, off)], offset, duration}) per clip."""
    rows: list[tuple[str, dict]] = []
    text = read_text(path, "manifest")
    if path.suffix in (".jsonl", ".json"):
        for n, line in enumerate(text.split("\n"), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            src = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{src}: not valid JSON ({e})") from None
            if not isinstance(obj, dict) or "path" not in obj:
                raise DatasetError(f"{src}: each line must be an object with a 'path'")
            if not isinstance(obj["path"], str) or not obj["path"].strip():
                raise DatasetError(f"{src}: 'path' must be a non-empty string, got {obj['path']!r}")
            try:
                labels = _split_labels(obj.get("labels", obj.get("label")))
            except ValueError as e:
                raise DatasetError(f"{src}: {e}") from None
            evs = obj.get("events") or []
            if not isinstance(evs, list):
                raise DatasetError(f"{src}: 'events' must be a list of objects, got {evs!r}")
            events = [_event(ev, src) for ev in evs]
            rows.append((src, {"path": obj["path"], "labels": labels, "events": events,
                               "offset": _opt_float(obj.get("offset"), "offset", src, low=0.0),
                               "duration": _opt_float(obj.get("duration"), "duration", src, above=0.0)}))
        return rows
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if "path" not in cols:
            raise DatasetError(f"{path}:1: a CSV manifest needs a 'path' column (got {sorted(cols)})")
        label_col = "label" if "label" in cols else ("event_label" if "event_label" in cols else None)
        strong = label_col is not None and "onset" in cols
        if "labels" not in cols and not strong:
            raise DatasetError(f"{path}:1: a CSV manifest needs a 'labels' column, or 'label','onset','offset' columns")
        by_path: dict[str, dict] = {}
        for n, r in enumerate(reader, 2):
            src = f"{path}:{n}"
            p = (r.get("path") or "").strip()
            if not p:
                raise DatasetError(f"{src}: empty path")
            entry = by_path.get(p)
            if entry is None:
                entry = {"path": p, "labels": [], "events": [], "offset": None, "duration": None}
                if "duration" in cols:
                    entry["duration"] = _opt_float(r.get("duration"), "duration", src, above=0.0)
                if not strong and "offset" in cols:
                    entry["offset"] = _opt_float(r.get("offset"), "offset", src, low=0.0)
                by_path[p] = entry
                rows.append((src, entry))
            entry["labels"] += _split_labels(r.get("labels"))
            if strong and (r.get("onset") or "").strip():
                on = _opt_float(r.get("onset"), "onset", src, low=0.0)
                off = _opt_float(r.get("offset"), "offset", src, low=0.0)
                if off is None or not (r.get(label_col) or "").strip():
                    raise DatasetError(f"{src}: a strong label needs {label_col}, onset and offset")
                entry["events"].append((r[label_col].strip(), on, off))
            elif strong and (r.get(label_col) or "").strip():
                entry["labels"].append(r[label_col].strip())
    return rows


def read_manifest(path: str | Path, labels: list[dict] | str | Path | None = None, check_files: bool = True,
                  multi_label: bool | None = None) -> ClipSet:
    """Read a JSONL/CSV manifest into a :class:`ClipSet` (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    rows = _raw_rows(path)
    if labels is None and (path.parent / "class_labels_indices.csv").is_file():
        labels = path.parent / "class_labels_indices.csv"
    if isinstance(labels, (str, Path)):
        labels = read_class_labels(labels)
    if labels is None:
        names = sorted({n for _, r in rows for n in r["labels"]} | {e[0] for _, r in rows for e in r["events"]})
        labels = [{"index": i, "mid": "", "display_name": n} for i, n in enumerate(names)]
    index = LabelIndex(labels)
    clips = []
    for src, r in rows:
        audio = path.parent / r["path"]
        if check_files:
            check_file(audio, src)
        events = tuple((index(lab, src), on, off) for lab, on, off in r["events"])
        for _, on, off in events:
            if off < on:
                raise DatasetError(f"{src}: event offset {off} is before its onset {on}")
        targets = sorted({index(lab, src) for lab in r["labels"]} | {e[0] for e in events})
        clips.append(Clip(str(audio), tuple(targets), events, r["offset"] or 0.0, r["duration"], src, key=r["path"]))
    if multi_label is None:
        multi_label = any(len(c.targets) != 1 for c in clips) or len(labels) == 1
    return ClipSet(labels, clips, multi_label, name=str(path)).require_nonempty()
