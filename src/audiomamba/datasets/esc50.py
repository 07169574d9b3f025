"""ESC-50 layout: ``meta/esc50.csv`` (filename, fold, target, category, ...) + ``audio/``.

Splits by fold: ``folds`` lists the folds to take (e.g. validation fold 1 -> train on 2-5).  Single-label;
label ``target`` t is the ``category`` name (the label set is built from the CSV, ordered by target).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from audiomamba.datasets.core import Clip, ClipSet, DatasetError, check_file, read_text

__all__ = ["read_esc50", "esc50_folds"]


def _rows(root: Path) -> list[tuple[str, dict]]:
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise DatasetError(f"ESC-50 metadata not found: {meta}")
    with io.StringIO(read_text(meta, "metadata"), newline="") as f:
        reader = csv.DictReader(f)
        need = {"filename", "fold", "target", "category"}
        if not need <= set(reader.fieldnames or []):
            raise DatasetError(f"{meta}:1: expected columns {sorted(need)}, got {reader.fieldnames}")
        rows = []
        for n, r in enumerate(reader, 2):
            if any(not (r.get(k) or "").strip() for k in need):
                raise DatasetError(f"{meta}:{n}: every row needs {', '.join(sorted(need))}; got {r}")
            rows.append((f"{meta}:{n}", {k: r[k].strip() for k in need}))
        return rows


def esc50_folds(root: str | Path) -> list[int]:
    folds = set()
    for src, r in _rows(Path(root)):
        try:
            folds.add(int(r["fold"]))
        except ValueError:
            raise DatasetError(f"{src}: fold and target must be integers") from None
    return sorted(folds)


def read_esc50(root: str | Path, folds: list[int] | None = None, check_files: bool = True) -> ClipSet:
    root = Path(root)
    rows = _rows(root)
    cats: dict[int, str] = {}
    for src, r in rows:
        try:
            t = int(r["target"])
            int(r["fold"])
        except ValueError:
            raise DatasetError(f"{src}: fold and target must be integers") from None
        if cats.setdefault(t, r["category"]) != r["category"]:
            raise DatasetError(f"{src}: target {t} is {r['category']!r} here but {cats[t]!r} elsewhere")
    if sorted(cats) != list(range(len(cats))):
        raise DatasetError(f"{root / 'meta' / 'esc50.csv'}: targets must be 0..{len(cats) - 1}")
    labels = [{"index": t, "mid": "", "display_name": cats[t]} for t in range(len(cats))]
    clips = []
    for src, r in rows:
        if folds is not None and int(r["fold"]) not in folds:
            continue
        p = root / "audio" / r["filename"]
        if check_files:
            check_file(p, src)
        clips.append(Clip(str(p), (int(r["target"]),), (), 0.0, None, src, key=r["filename"]))
    name = f"{root} folds {folds}" if folds else str(root)
    return ClipSet(labels, clips, False, name=name, info={"folds": folds}).require_nonempty()
