"""Soundscapes mixed on the fly from a source bank: clips/s through the training DataLoader.

    PYTHONPATH=src python bench/bench_bank.py --bank DIR [--workers 0,2,16] [--clips 4096] [--batch-size 64]
        [--augment none,speed=0.35:eq_db=15,speed=0.35:eq_db=15:reverb=1]

What training sees: ``open_split(bank, "train")`` planned clips, the training ``ClipDataset`` (10 s crops,
targets from the strong labels) and the DataLoader with ``--workers`` processes, batches of ``--batch-size``.  Also
reports the time to open the bank (decode) and to plan the split.  ``--augment`` measures each source
augmentation setting (``SourceAugment`` fields as ``key=value`` joined by ``:``; ``none`` for none) in turn, each
at every worker count.  Build a bank first:
``audiomamba data bank --out DIR``.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from audiomamba.datasets import ClipDataset, collate, open_split
from audiomamba.soundscapes.bank import SourceAugment, open_bank


def parse_augment(text: str) -> SourceAugment:
    """``none`` or ``speed=0.35:eq_db=15:reverb=1`` -> :class:`SourceAugment`."""
    if text == "none":
        return SourceAugment()
    try:
        fields = dict(kv.split("=", 1) for kv in text.split(":"))
        return SourceAugment(**{k: float(v) for k, v in fields.items()})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"error: --augment {text!r}: {e} (keys: speed, eq_db, reverb)") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", required=True)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--clips", type=int, default=2048, help="clips read per worker setting")
    ap.add_argument("--train-clips", type=int, default=100000, help="clips planned in the train split")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--augment", default="none", help="comma-separated source augmentation settings")
    a = ap.parse_args()
    t = time.perf_counter()
    bank = open_bank(a.bank)
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    cs = open_split(a.bank, f"train:{a.train_clips}")
    plan_s = time.perf_counter() - t
    rows = []
    for setting, w in [(s, int(x)) for s in a.augment.split(",") for x in a.workers.split(",")]:
        ds = ClipDataset(cs, bank.sample_rate, train=True, clip_seconds=a.seconds, source_augment=parse_augment(setting))
        batches = [[(i, i) for i in range(b, b + a.batch_size)] for b in range(0, a.clips, a.batch_size)]
        loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=w,
                                             prefetch_factor=4 if w else None, persistent_workers=False)
        it = iter(loader)
        next(it)  # workers started and the first batch made
        t = time.perf_counter()
        n = sum(len(b["index"]) for b in it)
        dt = time.perf_counter() - t
        rows.append({"augment": setting, "workers": w, "clips_per_s": round(n / dt, 1), "audio_s_per_s": round(n * a.seconds / dt, 1)})
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "bank": a.bank, "recordings": len(bank.recordings), "bank_seconds": round(len(bank.audio) / bank.sample_rate),
        "bank_mb": round(sum(p.stat().st_size for p in set(bank.stream_files.values()) if p.is_file()) / 1e6, 1),
        "open_s": round(open_s, 1),
        "plan_s": round(plan_s, 1), "train_clips": len(cs), "clip_seconds": a.seconds, "batch_size": a.batch_size,
        "loader": rows}, indent=1))


if __name__ == "__main__":
    main()
