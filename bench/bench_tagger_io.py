"""The tagger's file pipeline without the model: decode in DataLoader workers, hand the waves to the main
process, build the results.  The backbone and the front end are replaced by stubs that return zeros, so what
is timed is what ``Tagger.tag_files`` adds around the model (on a GPU the model itself runs a batch of 64
ten-second clips in ~10 ms, docs/benchmarks.md, so this pipeline sets the end-to-end speed).

    PYTHONPATH=src python3 bench/bench_tagger_io.py [--files 256] [--workers 0,2] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

import audiomamba


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=256, help="10 s wav files to tag")
    ap.add_argument("--workers", default="0,2", help="DataLoader worker counts to time (comma-separated)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = audiomamba.create_model("audiomamba_nano").eval()
    tagger = audiomamba.Tagger(model, window_s=10.24, hop_s=5.12, batch_size=args.batch)
    C, D = model.num_classes, model.num_features
    # the whole device side (front end, pieces, model, stitching) of a block of equal-length waves
    tagger._infer_unpadded = lambda waves, framewise: (
        torch.zeros(len(waves), C), None if not framewise else torch.zeros(len(waves), model.frontend.num_frames(waves.shape[1]), C),
        torch.zeros(len(waves), D))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = [os.path.join(tmp, f"clip{i:04d}.wav") for i in range(args.files)]
        for p in paths:
            sf.write(p, (0.1 * rng.standard_normal(320000)).astype(np.float32), 32000)
        for workers in [int(w) for w in args.workers.split(",")]:
            list(tagger.tag_files(paths[: args.batch], num_workers=workers))  # warm the page cache
            t0 = time.perf_counter()
            out = list(tagger.tag_files(paths, num_workers=workers))
            wall = time.perf_counter() - t0
            assert all(isinstance(o, audiomamba.TagResult) for o in out)
            rows.append({"workers": workers, "files": args.files, "wall_s": wall, "files_s": args.files / wall})
            print(f"| {workers} | {args.files / wall:.0f} | {wall:.2f} |", flush=True)
    meta = {"date": datetime.date.today().isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
            "torch": torch.__version__}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
