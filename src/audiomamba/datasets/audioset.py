"""AudioSet layout: ``class_labels_indices.csv`` + segment CSVs + an audio folder.

Segment CSVs are Google's (``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``,
``eval_segments.csv``)::

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Audio files are looked up under the audio folder (recursively) by YouTube id: ``<YTID>.<ext>``,
``Y<YTID>.<ext>`` (PANNs), or ``<YTID>_<start>...<ext>``, whole files holding just the segment.  Segments
whose audio is absent are normal for AudioSet (videos disappear): they are skipped and counted
(``ClipSet.info["missing"]``) unless ``strict``.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from audiomamba.audio import is_audio_file
from audiomamba.datasets.core import Clip, ClipSet, DatasetError, LabelIndex, read_text
from audiomamba.labels import audioset_labels, read_class_labels

log = logging.getLogger("audiomamba.datasets")

_YTID = re.compile(r"^Y?([A-Za-z0-9_-]{11})")

__all__ = ["read_segments", "read_audioset"]


def read_segments(path: Path) -> list[tuple[str, str, float, float, list[str]]]:
    """(source, ytid, start, end, mids) for each segment line; '#' lines are comments."""
    out = []
    for n, line in enumerate(read_text(path, "segment file").split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        src = f"{path}:{n}"
        row = next(csv.reader([line], skipinitialspace=True))
        if len(row) < 4:
            raise DatasetError(f"{src}: expected 'YTID, start_seconds, end_seconds, \"mid,mid\"', got {line.strip()!r}")
        try:
            start, end = float(row[1]), float(row[2])
        except ValueError:
            raise DatasetError(f"{src}: start/end seconds are not numbers: {row[1]!r}, {row[2]!r}") from None
        mids = [m.strip() for m in ",".join(row[3:]).split(",") if m.strip()]
        out.append((src, row[0].strip(), start, end, mids))
    return out


def _index_audio(audio_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(audio_dir.rglob("*")):
        if is_audio_file(p):
            m = _YTID.match(p.stem)
            stem = p.stem[1:] if p.stem.startswith("Y") and len(p.stem) > 11 and m and p.stem[1:12] == m.group(1) else p.stem
            found.setdefault(stem[:11], p)
    return found


def read_audioset(root: str | Path, segments: str | list[str], audio_dir: str | Path | None = None,
                  labels: str | Path | None = None, strict: bool = False) -> ClipSet:
    """Read segment CSV(s) (names relative to ``root``, comma-separated) against ``root/audio`` (or
    ``audio_dir``)."""
    root = Path(root)
    if isinstance(segments, str):
        segments = [s.strip() for s in segments.split(",") if s.strip()]
    label_file = Path(labels) if labels else root / "class_labels_indices.csv"
    label_list = read_class_labels(label_file) if label_file.is_file() else audioset_labels()
    index = LabelIndex(label_list)
    audio_dir = Path(audio_dir) if audio_dir else root / "audio"
    if not audio_dir.is_dir():
        raise DatasetError(f"AudioSet audio folder not found: {audio_dir}")
    files = _index_audio(audio_dir)
    clips, missing = [], 0
    for seg in segments:
        seg_path = Path(seg) if Path(seg).is_absolute() else root / seg
        if not seg_path.is_file():
            raise DatasetError(f"AudioSet segment file not found: {seg_path}")
        for src, ytid, start, end, mids in read_segments(seg_path):
            targets = tuple(sorted({index(m, src) for m in mids}))
            p = files.get(ytid)
            if p is None:
                if strict:
                    raise DatasetError(f"{src}: no audio for {ytid} under {audio_dir}")
                missing += 1
                continue
            clips.append(Clip(str(p), targets, (), 0.0, None, src, key=ytid))
    if missing:
        log.warning("AudioSet %s: %d segment(s) without audio under %s were skipped", ",".join(segments), missing, audio_dir)
    cs = ClipSet(label_list, clips, True, name=f"{root}:{','.join(segments)}", info={"missing": missing})
    return cs.require_nonempty()
