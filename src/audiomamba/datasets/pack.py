"""Writing packed datasets: any readable dataset split re-encoded as FLAC members of uncompressed tar shards.

The layout, and how training reads it back by random access, is described in :mod:`audiomamba.datasets.shards`.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from pathlib import Path

import numpy as np

from audiomamba.datasets.core import ClipSet, DatasetError
from audiomamba.datasets.loader import describe_failure, load_clip, open_split
from audiomamba.labels import write_class_labels
from audiomamba.utils.io import atomic_write, write_error

log = logging.getLogger("audiomamba.datasets")

__all__ = ["pack", "pack_splits"]


def _encode_flac(x: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Add a member; returns the byte offset of its data in the (uncompressed) tar."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))
    return tar.offset - tarfile.BLOCKSIZE * ((len(data) + tarfile.BLOCKSIZE - 1) // tarfile.BLOCKSIZE)


def pack(cs: ClipSet, out: str | Path, split: str, sample_rate: int, shard_size: int = 1000,
         progress: bool = True) -> dict:
    """Write ``cs`` as shards of ``split`` under ``out``; bad clips are skipped and counted."""
    out = Path(out)
    writing = out  # the file being written, for the message of a failed write
    try:
        out.mkdir(parents=True, exist_ok=True)
        writing = out / "class_labels_indices.csv"
        write_class_labels(cs.labels, writing)
        shards, entries, skipped = [], [], 0
        tar, in_shard = None, 0
        t0 = time.time()
        it = cs.clips
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"pack {split}", unit="clip")
        for n, clip in enumerate(it):
            try:
                x = load_clip(clip, sample_rate)
            except Exception as e:  # noqa: BLE001 - any unusable clip is skipped and counted
                log.warning("skipping %s", describe_failure(clip, e))
                skipped += 1
                continue
            if tar is None or in_shard >= shard_size:
                if tar is not None:
                    tar.close()
                shards.append(f"{split}-{len(shards):06d}.tar")
                writing = out / shards[-1]
                tar = tarfile.open(writing, "w", format=tarfile.USTAR_FORMAT)
                in_shard = 0
            in_shard += 1
            key = f"{n:08d}"
            flac = _encode_flac(x, sample_rate)
            off, size = _add(tar, f"{key}.flac", flac), len(flac)
            meta = {"targets": list(clip.targets), "events": [list(e) for e in clip.events], "source": clip.name}
            _add(tar, f"{key}.json", json.dumps(meta).encode())
            entries.append([len(shards) - 1, off, size, key, list(clip.targets), [list(e) for e in clip.events],
                            round(len(x) / sample_rate, 6)])
        if tar is not None:
            tar.close()
    except OSError as e:  # disk full, permission, a file where the folder should be
        raise write_error(writing, e) from e
    if not entries:
        raise DatasetError(f"{cs.name}: no clip could be packed")
    index = {"sample_rate": sample_rate, "multi_label": cs.multi_label, "shards": shards, "clips": entries}
    atomic_write(out / f"{split}.index.json", lambda tmp: Path(tmp).write_text(json.dumps(index)))
    summary = {"split": split, "clips": len(entries), "skipped": skipped, "shards": len(shards),
               "seconds": round(time.time() - t0, 2)}
    log.info("packed %s", summary)
    return summary


def pack_splits(data: str | Path, out: str | Path, splits: str = "train,validation,test", fmt: str = "auto",
                labels: str | None = None, sample_rate: int = 32000, shard_size: int = 1000) -> list[dict]:
    """Pack each split of ``splits`` (comma-separated; ``name=seg.csv+seg2.csv`` pairs name AudioSet segment
    files); a split that does not exist is skipped with a warning unless it was named with ``=``.  Returns one
    summary per packed split; raises :class:`DatasetError` when none could be packed."""
    done = []
    for spec in [s.strip() for s in splits.split(",") if s.strip()]:
        name, _, src = spec.partition("=")
        try:
            cs = open_split(data, (src or name).replace("+", ","), fmt=fmt, labels=labels)
        except DatasetError as e:
            if src:
                raise
            log.warning("split %s not packed: %s", name, e)
            continue
        done.append(pack(cs, out, name, sample_rate, shard_size))
    if not done:
        raise DatasetError(f"{data}: no split of {splits!r} could be packed")
    return done
