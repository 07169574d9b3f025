"""Steps per second of the real trainer (``audiomamba.training.trainer.train``) on a GPU: eager vs
``train.cuda_graph``, data loading, loss, fused AdamW and EMA included.

    PYTHONPATH=src python3 bench/bench_train_loop.py --out results/ [--model audiomamba_tiny_v2 --batch 64]

Data: a synthetic tagging set of 10 s clips at 32 kHz written to a temporary folder (audiomamba.soundscapes.toy).
Each mode trains twice in one process, ``--short`` and ``--long`` optimiser steps; the time per step is the
difference of the two runs' wall times over the difference of their steps, so model building, the first
batches, Triton's compilation and the graph capture cancel out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time

import torch

from audiomamba.soundscapes.toy import make_toy_dataset
from audiomamba.training.config import load_config
from audiomamba.training.trainer import train


# mode name -> config overrides ("section.key=value"), on top of the base run (spectrogram mixup, EMA, grad clip)
MODES = {
    "eager": [],
    "cuda_graph": ["train.cuda_graph=true"],
    "cuda_graph-no_ema": ["train.cuda_graph=true", "train.ema_decay=null"],
    "cuda_graph-no_mixup": ["train.cuda_graph=true", "augment.mixup=none"],
    "cuda_graph-no_clip": ["train.cuda_graph=true", "optim.grad_clip=null"],
}


def run(root: str, out: str, args, overrides: list[str], steps: int) -> float:
    cfg = load_config(raw={
        "model": {"name": args.model, "layout": "fold"},
        "data": {"root": root, "validation": None, "clip_seconds": 10.0, "num_workers": args.workers},
        "sampling": {"epoch_size": args.batch * (args.long + 2)},
        "augment": {"random_crop": False, "mixup": "spec"},
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"output_dir": out, "epochs": 1, "batch_size": args.batch, "precision": "bf16", "progress": False,
                  "tensorboard": False, "device": "cuda", "ema_decay": 0.999,
                  "stop_after_steps": steps, "checkpoint_every": 10_000}}, overrides=overrides)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = train(cfg)
    torch.cuda.synchronize()
    assert res["steps"] == steps, res["steps"]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--model", default="audiomamba_tiny_v2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--short", type=int, default=5)
    ap.add_argument("--long", type=int, default=35)
    ap.add_argument("--modes", default="eager,cuda_graph", help=f"comma-separated, of: {', '.join(MODES)}")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    root = str(make_toy_dataset(os.path.join(tmp, "data"), {"train": args.clips}, seconds=10.0, sample_rate=32000))
    print(f"data: {args.clips} clips of 10 s in {time.perf_counter() - t0:.0f} s", flush=True)
    run(root, os.path.join(tmp, "warmup"), args, [], 2)  # Triton compilation, cuDNN autotuning, page cache
    rows = []
    for k, mode in enumerate(args.modes.split(",")):
        walls = {n: run(root, os.path.join(tmp, f"run_{k}_{n}"), args, MODES[mode], n) for n in (args.short, args.long)}
        ms = (walls[args.long] - walls[args.short]) / (args.long - args.short) * 1e3
        row = {"mode": mode, "ms_per_step": ms, "clips_per_s": args.batch / ms * 1e3,
               "wall_s": walls, "peak_GiB": torch.cuda.max_memory_reserved() / 2**30}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        rows.append(row)
        print(row, flush=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "model": args.model, "batch": args.batch, "precision": "bf16", "workers": args.workers,
            "command": "bench/bench_train_loop.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items())}
    with open(os.path.join(args.out, "bench_train_loop.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"\n## trainer, {args.model}, batch {args.batch}, 10 s clips, bf16, spectrogram mixup, EMA ({meta['device']})")
    print("| mode | ms/step | clips/s | peak GiB reserved |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['ms_per_step']:.1f} | {r['clips_per_s']:.0f} | {r['peak_GiB']:.2f} |")


if __name__ == "__main__":
    main()
