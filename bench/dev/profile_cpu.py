"""Where the CPU time of native tagging goes: op -> ms and share, from torch.profiler.

    PYTHONPATH=src python bench/dev/profile_cpu.py --model audiomamba_tiny --seconds 60 --threads 2

Runs the model (random weights, 527 classes, native layout) once to warm up, times two forward passes (best
kept), then profiles one more.  The numba scan kernel is not a torch op: it is wrapped in a ``record_function`` named
``ss2d_scan (numba)`` so that it shows up as a row.  Like :class:`audiomamba.Tagger` on the CPU, it runs inside
``keep_freed_memory`` (glibc keeps freed memory instead of page-faulting it in again).  Rows are torch ops by self CPU time; the share is of the
profiled pass's total.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import audiomamba
from audiomamba.ops import scan_cpu
from audiomamba.utils.memory import keep_freed_memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="audiomamba_tiny")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = audiomamba.create_model(args.model, num_classes=527, layout="native").eval()
    kernel = scan_cpu.cross_selective_scan_cpu

    def labelled(*a, **k):
        with record_function("ss2d_scan (numba)"):
            return kernel(*a, **k)

    scan_cpu.cross_selective_scan_cpu = labelled  # the backend table looks it up at each call
    wave = torch.randn(1, int(args.seconds * model.sample_rate)) * 0.1
    with torch.inference_mode(), keep_freed_memory():  # as Tagger runs it on the CPU
        model(wave[:, : 2 * model.sample_rate])
        wall = float("inf")
        for _ in range(2):  # best of two
            t0 = time.perf_counter()
            model(wave)
            wall = min(wall, time.perf_counter() - t0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(wave)
    rows = sorted(prof.key_averages(), key=lambda r: -r.self_cpu_time_total)
    total = sum(r.self_cpu_time_total for r in rows) / 1e3
    print(f"# {args.model}, {args.seconds:g} s native, {args.threads} threads, load average {os.getloadavg()[0]:.2f}: "
          f"wall {wall:.2f} s (RTF {args.seconds / wall:.1f}x), profiled {total:.0f} ms")
    print("| op | ms | share |\n|---|---|---|")
    for r in rows[: args.rows]:
        print(f"| {r.key} | {r.self_cpu_time_total / 1e3:.0f} | {r.self_cpu_time_total / 1e3 / total:.1%} |")


if __name__ == "__main__":
    main()
