"""Tagging a folder of recordings of many lengths end to end (files in, tags out): the shipped tagger batching
files whose spectrograms the model pads to the same length (the default: a multiple of 32 frames, 0.32 s) against
the same tagger running one length at a time, side by side in one process.

Files longer than the short-input padding (2.5 s) keep their own lengths, so a folder of user recordings has
almost as many lengths as files; the model pads each spectrogram to a multiple of 32 frames anyway, so files whose
padded lengths agree can share a forward pass with exactly the results of each alone
(``Tagger._infer_on_grid``).  The "one length at a time" rows turn that off (``Tagger._grid = None``), which is
how the tagger ran before.  Files are written and timed as in ``bench_short_files.py``.

    PYTHONPATH=src python bench/bench_grid_batching.py --device cpu --files 48 --workers 0 --json FILE
    PYTHONPATH=src python3 bench/bench_grid_batching.py --device cuda --files 1024 --workers 8 --json FILE
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile

import numpy as np
import soundfile as sf
import torch

from audiomamba import Tagger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_short_files import SR, files_per_s, write_files  # noqa: E402  (one home for the files and the timing)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--seconds", type=float, nargs=2, default=(2.5, 10.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--workers", default="0", help="DataLoader worker counts (comma-separated)")
    ap.add_argument("--batch", type=int, default=None, help="files per batch (default 8 on CPU, 64 on CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    batch = a.batch or (64 if cuda else 8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        paths = write_files(tmp, a.files, *a.seconds)
        lengths = [sf.info(p).frames / SR for p in paths]
        print(f"# {len(paths)} files, {min(lengths):.2f}-{max(lengths):.2f} s (median {np.median(lengths):.2f} s), "
              f"{len(set(lengths))} distinct lengths; batch {batch} on {a.device}", flush=True)
        print("| batching | mode | workers | files/s | wall s | x one length at a time |", flush=True)
        modes = [("eager", False)] + ([("cuda_graph", True)] if cuda else [])
        for mode, graph in modes:
            for w in [int(x) for x in a.workers.split(",")]:
                base = None
                for setting in ("one length at a time", "padded lengths together"):
                    tagger = Tagger.from_pretrained(device=a.device, dtype="bfloat16" if cuda else None,
                                                    batch_size=batch, cuda_graph=graph)
                    if setting == "one length at a time":
                        tagger._grid = None
                    rate, wall = files_per_s(tagger, paths, w, a.repeats)
                    base = base or rate
                    rows.append({"batching": setting, "mode": mode, "workers": w, "files_s": round(rate, 1),
                                 "wall_s": round(wall, 3), "ratio": round(rate / base, 3)})
                    print(f"| {setting} | {mode} | {w} | {rate:.1f} | {wall:.2f} | {rate / base:.2f} |", flush=True)
    if a.json:
        dev = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "device": f"{a.device} ({dev})", "cpus": len(os.sched_getaffinity(0)), "torch": torch.__version__,
                "command": "python " + " ".join(sys.argv), "files": a.files, "seconds": list(a.seconds),
                "median_s": round(float(np.median(lengths)), 3), "distinct_lengths": len(set(lengths)),
                "padded_lengths": len({-(-(1 + round(s * SR) // 320) // 32) for s in lengths}), "batch": batch}
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
