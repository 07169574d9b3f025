"""Training end to end: clips/s of the real trainer (data loading, waveform front end, mixup, loss, fused AdamW,
EMA) on decoded 10 s clips, WAV files and packed FLAC shards, eager and with ``train.cuda_graph``, next to the
model-level graphed step (spectrogram in, no data) measured in the same process.

    PYTHONPATH=src python3 bench/bench_train_loop.py --out OUT [--model audiomamba_tiny_v2 --batch 64 --workers 14]

Data: a synthetic tagging set of 10 s clips at 32 kHz (audiomamba.soundscapes.toy), written as WAV files and
packed into FLAC shards (audiomamba.datasets.pack).  Timing: one trainer per row; the clock starts after
``--warmup`` optimiser steps (the loader's start, Triton's compilation and the graph capture are behind it) and
stops after ``--steps`` more, both ends after ``torch.cuda.synchronize()``.  An earlier version took the
difference of two whole runs of different lengths; the one-time costs of the shorter run (the first graph
capture of the process, cuDNN's autotuning) then came out of the longer run's per-step time, which made the
graphed trainer look twice as fast as its own training step (3285 against 1719 clips/s).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import torch

from audiomamba.datasets.loader import open_split
from audiomamba.datasets.pack import pack
from audiomamba.soundscapes.toy import make_toy_dataset
from audiomamba.training.config import load_config
from audiomamba.training.trainer import Trainer

# row name -> (data format, config overrides "section.key=value") on top of the base run
MODES = {
    "wav-eager": ("wav", []),
    "wav-cuda_graph": ("wav", ["train.cuda_graph=true"]),
    "shards-cuda_graph": ("shards", ["train.cuda_graph=true"]),
    "wav-compile": ("wav", ["train.compile=inductor"]),
}


class _TimedTrainer(Trainer):
    """The trainer with a clock on its optimiser steps: :meth:`_report_step` runs after each one."""

    def __init__(self, cfg, device: torch.device, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps  # read by _report_step, which the constructor does not call
        super().__init__(cfg, device)

    def _report_step(self) -> None:
        super()._report_step()
        step = self.progress.step
        if step == self.warmup:
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()
        elif step == self.warmup + self.steps:
            torch.cuda.synchronize()
            self.t1 = time.perf_counter()


def run(root: str, fmt: str, out: str, args, overrides: list[str]) -> float:
    """Seconds per optimiser step of the trainer in steady state."""
    cfg = load_config(raw={
        "model": {"name": args.model, "layout": "fold"},
        "data": {"root": root, "format": "shards" if fmt == "shards" else "auto", "validation": None,
                 "clip_seconds": 10.0, "num_workers": args.workers},
        "sampling": {"epoch_size": args.batch * (args.warmup + args.steps + 2)},
        "augment": {"random_crop": False, "mixup": "spec"},
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"output_dir": out, "epochs": 1, "batch_size": args.batch, "precision": "bf16", "progress": False,
                  "tensorboard": False, "device": "cuda", "ema_decay": 0.999,
                  "stop_after_steps": args.warmup + args.steps, "checkpoint_every": 100_000}}, overrides=overrides)
    trainer = _TimedTrainer(cfg, torch.device("cuda"), args.warmup, args.steps)
    trainer.fit()
    return (trainer.t1 - trainer.t0) / args.steps


def model_level_graphed_step(args) -> float:
    """Seconds per training step of the model alone: spectrogram in, forward and backward replayed from CUDA
    graphs (GraphedTraining), BCE, fused AdamW; as bench_gpu.py's models section measures it."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_gpu

    m, fn = bench_gpu.build(args.model)
    m = m.cuda().train()
    spec = torch.randn(args.batch, bench_gpu.FRAMES_10S, 64, device="cuda")
    target = torch.rand(args.batch, m.num_classes, device="cuda")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    step = bench_gpu._graphed_train_step(m, fn, spec, target, opt)
    ms, _ = bench_gpu.cuda_time(step, warmup=3, iters=20)
    del m, opt, step
    torch.cuda.empty_cache()
    return ms / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--model", default="audiomamba_tiny_v2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--clips", type=int, default=512)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--modes", default="wav-eager,wav-cuda_graph,shards-cuda_graph", help=f"comma-separated, of: {', '.join(MODES)}")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    root = str(make_toy_dataset(os.path.join(tmp, "data"), {"train": args.clips}, seconds=10.0, sample_rate=32000))
    shards = os.path.join(tmp, "shards")
    pack(open_split(root, "train"), shards, "train", 32000, shard_size=128)
    print(f"data: {args.clips} clips of 10 s as WAV and FLAC shards in {time.perf_counter() - t0:.0f} s", flush=True)
    ref = model_level_graphed_step(args)
    rows = [{"mode": "model-level graphed step (spectrogram in, no data)", "ms_per_step": ref * 1e3,
             "clips_per_s": args.batch / ref}]
    print(rows[-1], flush=True)
    for k, mode in enumerate(args.modes.split(",")):
        fmt, over = MODES[mode]
        try:
            s = run(shards if fmt == "shards" else root, fmt, os.path.join(tmp, f"run{k}"), args, over)
            rows.append({"mode": mode, "ms_per_step": s * 1e3, "clips_per_s": args.batch / s,
                         "of_model_level_graphed": ref / s, "peak_GiB": torch.cuda.max_memory_reserved() / 2**30})
        except Exception as exc:  # noqa: BLE001 (record and go on)
            rows.append({"mode": mode, "error": repr(exc)[:300]})
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        print(rows[-1], flush=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "model": args.model, "batch": args.batch, "precision": "bf16", "workers": args.workers,
            "cpus": os.cpu_count(), "command": "bench/bench_train_loop.py " + " ".join(sys.argv[1:])}
    with open(os.path.join(args.out, "bench_train_loop.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"\n## trainer end to end, {args.model}, batch {args.batch}, 10 s clips, bf16, spectrogram mixup, EMA "
          f"({meta['device']}, {args.workers} workers)")
    print("| mode | ms/step | clips/s | of the model-level graphed step |\n|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['mode']} | {r['error']} | | |")
        else:
            print(f"| {r['mode']} | {r['ms_per_step']:.1f} | {r['clips_per_s']:.0f} | "
                  f"{100 * r.get('of_model_level_graphed', 1.0):.0f}% |")


if __name__ == "__main__":
    main()
