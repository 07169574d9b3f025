"""A folder with one subfolder per class: ``root/<class>/*.wav``.

If ``root/<split>/`` exists (e.g. ``train/``, ``validation/``), that split's folder is read; otherwise the
whole of ``root`` is split deterministically by a hash of the file name: ``validation`` gets ``val_fraction``
of each class, ``train`` the rest (``all`` takes everything).  Single-label; classes sorted by name.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from audiomamba.audio import is_audio_file
from audiomamba.datasets.core import Clip, ClipSet, DatasetError


__all__ = ["read_folder"]


def read_folder(root: str | Path, split: str = "all", val_fraction: float = 0.1) -> ClipSet:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    base, pick = root, None
    if (root / split).is_dir():
        base = root / split
    elif split in ("train", "validation", "val", "test"):
        if split == "test":
            raise DatasetError(f"{root}: no 'test' folder (folder datasets split off only a validation part)")
        pick = "validation" if split in ("validation", "val") else "train"
    elif split != "all":
        raise DatasetError(f"{root}: no split folder {split!r}")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [c for c in classes if c not in ("train", "validation", "val", "test")] or classes
    if not classes:
        raise DatasetError(f"{base}: no class subfolders")
    labels = [{"index": i, "mid": "", "display_name": c} for i, c in enumerate(classes)]
    clips = []
    for i, c in enumerate(classes):
        for p in sorted((base / c).rglob("*")):
            if not is_audio_file(p):
                continue
            rel = str(p.relative_to(base))
            if pick is not None:
                is_val = (zlib.crc32(rel.encode()) % 10000) < val_fraction * 10000
                if is_val != (pick == "validation"):
                    continue
            clips.append(Clip(str(p), (i,), (), 0.0, None, str(p), key=rel))
    return ClipSet(labels, clips, False, name=f"{base} ({split})").require_nonempty()
