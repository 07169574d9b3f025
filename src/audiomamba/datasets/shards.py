"""Packed datasets: clips re-encoded at the model's sample rate into tar shards (WebDataset layout).

``audiomamba data pack --data D --out DIR`` writes, per split::

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
import logging
import tarfile
import time
from pathlib import Path

import numpy as np

from audiomamba.datasets.core import Clip, ClipSet, DatasetError

log = logging.getLogger("audiomamba.datasets")

__all__ = ["read_shards", "read_member", "pack", "add_arguments", "run"]


def read_shards(root: str | Path, split: str) -> ClipSet:
    root = Path(root)
    index_path = root / f"{split}.index.json"
    if not index_path.is_file():
        raise DatasetError(f"no packed split {split!r}: {index_path} not found")
    with open(index_path, encoding="utf-8") as f:
        idx = json.load(f)
    from audiomamba.labels import read_class_labels

    labels = read_class_labels(root / "class_labels_indices.csv")
    shards = [str(root / s) for s in idx["shards"]]
    for s in shards:
        if not Path(s).is_file():
            raise DatasetError(f"{index_path}: shard {s} is missing")
    clips = [
        Clip(f"{shards[sh]}::{key}", tuple(t), tuple((int(e[0]), float(e[1]), float(e[2])) for e in ev), 0.0, dur,
             f"{index_path}:clip {n}", shard=shards[sh], member=(off, size), key=key)
        for n, (sh, off, size, key, t, ev, dur) in enumerate(idx["clips"])
    ]
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
    from audiomamba.datasets.loader import load_clip
    from audiomamba.labels import write_class_labels

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_class_labels(cs.labels, out / "class_labels_indices.csv")
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
        except Exception as e:  # noqa: BLE001 - any undecodable clip is skipped and counted
            log.warning("skipping %s (%s): %s", clip.name, clip.source, e)
            skipped += 1
            continue
        if tar is None or in_shard >= shard_size:
            if tar is not None:
                tar.close()
            shards.append(f"{split}-{len(shards):06d}.tar")
            tar = tarfile.open(out / shards[-1], "w", format=tarfile.USTAR_FORMAT)
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
    if not entries:
        raise DatasetError(f"{cs.name}: no clip could be packed")
    index = {"sample_rate": sample_rate, "multi_label": cs.multi_label, "shards": shards, "clips": entries}
    from audiomamba.utils.io import atomic_write

    atomic_write(out / f"{split}.index.json", lambda tmp: Path(tmp).write_text(json.dumps(index)))
    summary = {"split": split, "clips": len(entries), "skipped": skipped, "shards": len(shards),
               "seconds": round(time.time() - t0, 2)}
    log.info("packed %s", summary)
    return summary


# ----------------------------------------------------------------------------- command line
def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="dataset to pack (manifest, AudioSet, ESC-50 or class-folder root)")
    p.add_argument("--format", default="auto", choices=["auto", "manifest", "audioset", "esc50", "folder"])
    p.add_argument("--splits", default="train,validation,test",
                   help="comma-separated splits to pack (missing ones are skipped with a warning); for AudioSet "
                        "'name=seg.csv+seg2.csv' pairs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sample-rate", type=int, default=32000, help="rate to store clips at (the model's)")
    p.add_argument("--shard-size", type=int, default=1000, help="clips per tar shard")
    p.add_argument("--labels", default=None, help="class_labels_indices.csv (default: the dataset's)")


def run(args) -> int:
    from audiomamba.datasets.loader import open_split

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    done = 0
    for spec in [s.strip() for s in args.splits.split(",") if s.strip()]:
        name, _, src = spec.partition("=")
        try:
            cs = open_split(args.data, (src or name).replace("+", ","), fmt=args.format, labels=args.labels)
        except DatasetError as e:
            if src:
                raise
            log.warning("split %s not packed: %s", name, e)
            continue
        summary = pack(cs, args.out, name, args.sample_rate, args.shard_size)
        print(json.dumps(summary))
        done += 1
    if not done:
        raise SystemExit("error: no split could be packed")
    return 0
