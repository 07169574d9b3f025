"""Shard read throughput: clips/s decoded from packed tar shards vs. the original WAV files.

    PYTHONPATH=src python bench/bench_data.py [--data DIR --split train] [--clips 200]

Without --data a toy set of 10 s, 32 kHz clips is generated.  Reads every clip once (random order) through
the training Dataset (decode + resample where needed), single process.
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from audiomamba.datasets import ClipDataset, open_split
from audiomamba.datasets.pack import pack
from audiomamba.soundscapes.toy import make_toy_dataset


def rate(cs, sr, n):
    ds = ClipDataset(cs, sr, train=False)
    order = np.random.default_rng(0).permutation(len(cs))[:n]
    t = time.perf_counter()
    total = 0
    for i in order:
        total += len(ds[int(i)]["wave"])
    dt = time.perf_counter() - t
    return len(order) / dt, total / sr / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--split", default="train")
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--sample-rate", type=int, default=32000)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data = a.data or make_toy_dataset(tmp / "toy", {"train": a.clips}, seconds=10.0, sample_rate=32000)
    cs = open_split(data, a.split)
    t = time.perf_counter()
    pack(cs, tmp / "packed", a.split, a.sample_rate, shard_size=100, progress=False)
    pack_s = time.perf_counter() - t
    ps = open_split(tmp / "packed", a.split)
    files_rate = rate(cs, a.sample_rate, a.clips)
    shard_rate = rate(ps, a.sample_rate, a.clips)
    size = sum(p.stat().st_size for p in (tmp / "packed").glob("*.tar"))
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        "clips": min(a.clips, len(cs)), "data": str(a.data or "generated 10 s clips"),
        "pack_clips_per_s": round(len(cs) / pack_s, 1),
        "files_clips_per_s": round(files_rate[0], 1), "files_audio_s_per_s": round(files_rate[1], 1),
        "shards_clips_per_s": round(shard_rate[0], 1), "shards_audio_s_per_s": round(shard_rate[1], 1),
        "shard_mb": round(size / 1e6, 1)}, indent=1))


if __name__ == "__main__":
    main()
