"""Tagging a folder of short files end to end (files in, tags out): the shipped tagger with short inputs centred
in silence (the default, ``min_input_s`` = :data:`audiomamba.inference.pieces.MIN_INPUT_S`) against the same
tagger running each file at its own length (``min_input_s=0``), side by side in one process.

Writes ``--files`` 32 kHz mono 16-bit WAV files whose lengths are drawn uniformly from ``--seconds A B`` (a sound
effects folder: most files a second or two), then times ``list(tagger.tag_files(paths, num_workers=W))`` for
each setting after a warm-up pass (CUDA graphs captured, page cache warm).  Padding costs compute (a 0.5 s file
runs as 2.5 s), but files of many lengths then share one length: they batch together and, on CUDA, one graph.

    PYTHONPATH=src python bench/bench_short_files.py --device cpu --files 64 --workers 0 --json FILE
    PYTHONPATH=src python3 bench/bench_short_files.py --device cuda --files 2048 --workers 8 --json FILE
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import soundfile as sf
import torch

from audiomamba import TagResult, Tagger
from audiomamba.inference.pieces import MIN_INPUT_S

SR = 32000


def write_files(folder: str, n: int, low: float, high: float, seed: int = 0) -> list[str]:
    """``n`` WAV files of noise and a tone, lengths uniform in ``[low, high]`` seconds, rounded to 10 ms."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        samples = int(round(rng.uniform(low, high) * 100)) * SR // 100
        t = np.arange(samples) / SR
        x = 0.05 * rng.standard_normal(samples) + 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
        path = os.path.join(folder, f"f{i:05d}.wav")
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
        paths.append(path)
    return paths


def files_per_s(tagger: Tagger, paths: list[str], workers: int, repeats: int) -> tuple[float, float]:
    """``(files/s, wall s)`` of the best of ``repeats`` timed ``tag_files`` passes, after one warm-up pass."""
    list(tagger.tag_files(paths, num_workers=workers))
    best = float("inf")
    for _ in range(repeats):
        if tagger.device.type == "cuda":
            torch.cuda.synchronize(tagger.device)
        t0 = time.perf_counter()
        out = list(tagger.tag_files(paths, num_workers=workers))
        if tagger.device.type == "cuda":
            torch.cuda.synchronize(tagger.device)
        best = min(best, time.perf_counter() - t0)
        if not all(isinstance(o, TagResult) for o in out):
            raise RuntimeError("a file was not tagged")
    return len(paths) / best, best


def arguments(description: str, seconds: tuple[float, float], files: int) -> argparse.Namespace:
    """The command line both folder benchmarks share (this one and ``bench_grid_batching.py``)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--files", type=int, default=files)
    ap.add_argument("--seconds", type=float, nargs=2, default=seconds, metavar=("LOW", "HIGH"))
    ap.add_argument("--workers", default="0", help="DataLoader worker counts (comma-separated)")
    ap.add_argument("--batch", type=int, default=None, help="files per batch (default 8 on CPU, 64 on CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", default="eager,cuda_graph",
                    help="comma-separated: eager, cuda_graph (CUDA only; ignored on the CPU)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not set(a.modes.split(",")) <= {"eager", "cuda_graph"}:
        ap.error(f"--modes: {a.modes!r} names a mode other than eager and cuda_graph")
    if a.threads:
        torch.set_num_threads(a.threads)
    return a


def side_by_side(a: argparse.Namespace, column: str, settings: dict[str, Callable[..., Tagger]]) -> None:
    """Write the files, then time the shipped tagger under each setting (a name and a function that makes the
    tagger from the keyword arguments of :meth:`Tagger.from_pretrained` for the device, dtype, batch and mode),
    per mode (eager; CUDA graphs on CUDA) and worker count, the first setting the baseline of the ratio; print a
    table and write ``--json``."""
    cuda = a.device.startswith("cuda")
    batch = a.batch or (64 if cuda else 8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_files_") as tmp:
        paths = write_files(tmp, a.files, *a.seconds)
        lengths = [sf.info(p).frames / SR for p in paths]
        padded = len({-(-(1 + round(s * SR) // 320) // 32) for s in lengths})
        print(f"# {len(paths)} files, {min(lengths):.2f}-{max(lengths):.2f} s (median {np.median(lengths):.2f} s), "
              f"{len(set(lengths))} distinct lengths ({padded} on the 0.32 s grid); batch {batch} on {a.device}",
              flush=True)
        print(f"| {column} | mode | workers | files/s | wall s | ratio |", flush=True)
        modes = [(m, m == "cuda_graph") for m in a.modes.split(",") if m == "eager" or (m == "cuda_graph" and cuda)]
        for mode, graph in modes:
            for w in [int(x) for x in a.workers.split(",")]:
                base = None
                for name, make in settings.items():
                    tagger = make(device=a.device, dtype="bfloat16" if cuda else None, batch_size=batch,
                                  cuda_graph=graph)
                    rate, wall = files_per_s(tagger, paths, w, a.repeats)
                    base = base or rate
                    rows.append({column: name, "mode": mode, "workers": w, "files_s": round(rate, 1),
                                 "wall_s": round(wall, 3), "ratio": round(rate / base, 3)})
                    print(f"| {name} | {mode} | {w} | {rate:.1f} | {wall:.2f} | {rate / base:.2f} |", flush=True)
    if a.json:
        dev = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "device": f"{a.device} ({dev})", "cpus": len(os.sched_getaffinity(0)), "torch": torch.__version__,
                "command": "python " + " ".join(sys.argv), "files": a.files, "seconds": list(a.seconds),
                "median_s": round(float(np.median(lengths)), 3), "distinct_lengths": len(set(lengths)),
                "grid_lengths": padded, "batch": batch}
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


def main() -> None:
    a = arguments(__doc__.split("\n\n")[0], (0.3, 4.0), 64)
    side_by_side(a, "min_input_s", {f"{m:g}": functools.partial(Tagger.from_pretrained, min_input_s=m)
                                    for m in (0.0, MIN_INPUT_S)})


if __name__ == "__main__":
    main()
