"""Reading packed datasets: clips re-encoded at the model's sample rate into tar shards (WebDataset layout).

:func:`audiomamba.datasets.pack.pack` (``audiomamba data pack --data D --out DIR``) writes, per split::

    DIR/class_labels_indices.csv
    DIR/<split>-000000.tar, <split>-000001.tar, ...   # members <key>.flac + <key>.json (WebDataset naming)
    DIR/<split>.index.json                             # {"sample_rate", "multi_label", "shards",
                                                       #  "clips": [[shard_no, offset, size, key, targets, events, duration]]}

Tars are uncompressed, so a member is a contiguous byte range: training reads clips by random access
(seek + read one FLAC, no resampling), which keeps balanced sampling and exact resumption; the tars can also
be streamed as-is by ``webdataset`` from object storage.  FLAC is 16-bit PCM, decoded by libsndfile.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from audiomamba.datasets.core import Clip, ClipSet, DatasetError, read_text
from audiomamba.labels import read_class_labels

__all__ = ["read_shards", "read_member"]


def read_shards(root: str | Path, split: str) -> ClipSet:
    """The clips of packed split ``split`` under ``root`` (its index, labels and shards checked)."""
    root = Path(root)
    index_path = root / f"{split}.index.json"
    if not index_path.is_file():
        raise DatasetError(f"no packed split {split!r}: {index_path} not found")
    try:
        idx = json.loads(read_text(index_path, "index"))
    except ValueError as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{index_path}: damaged index, not valid JSON ({e})") from None
    labels = read_class_labels(root / "class_labels_indices.csv")
    try:
        shards = [str(root / s) for s in idx["shards"]]
        clips = []
        for n, (sh, off, size, key, t, ev, dur) in enumerate(idx["clips"]):
            targets = tuple(int(i) for i in t)
            if any(not 0 <= i < len(labels) for i in targets) or not 0 <= int(sh) < len(shards):
                raise ValueError(f"clip {n}: a label or shard index out of range")
            clips.append(Clip(f"{shards[sh]}::{key}", targets,
                              tuple((int(e[0]), float(e[1]), float(e[2])) for e in ev), 0.0, dur,
                              f"{index_path}:clip {n}", shard=shards[sh], member=(int(off), int(size)), key=str(key)))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DatasetError(f"{index_path}: damaged index ({type(e).__name__}: {e})") from None
    for s in shards:
        if not Path(s).is_file():
            raise DatasetError(f"{index_path}: shard {s} is missing")
    cs = ClipSet(labels, clips, bool(idx.get("multi_label", True)), name=f"{root}:{split}",
                 info={"sample_rate": idx.get("sample_rate")})
    return cs.require_nonempty()


_handles: dict[str, object] = {}


def read_member(clip: Clip) -> tuple[np.ndarray, int]:
    """Decode a packed clip: (mono float32, sample_rate)."""
    import soundfile as sf

    f = _handles.get(clip.shard)
    if f is None:
        if len(_handles) > 64:
            for h in _handles.values():
                h.close()
            _handles.clear()
        f = _handles[clip.shard] = open(clip.shard, "rb")
    off, size = clip.member
    f.seek(off)
    data = f.read(size)
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return x.mean(axis=1) if x.shape[1] > 1 else x[:, 0], sr
