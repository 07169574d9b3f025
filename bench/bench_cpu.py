"""CPU real-time factor of Audio Mamba tagging: native one pass vs windowed, 10 s clip and 10 min file.

    python bench/bench_cpu.py --threads 2 --models audiomamba_nano,audiomamba_tiny --long-minutes 10

RTF = seconds of audio / seconds of wall time (higher is faster; 30x = 10 min tagged in 20 s).  Random
weights (speed does not depend on them); 527 classes; clip-level tagging (Tagger.tag).  Windowed runs on
the long file are timed on their first ``--window-sample`` windows and extrapolated (every window costs the
same); such rows say so.  ``--profile`` also reports the share of time spent in the scan (the numba kernel on
CPU) and the time of the loop-free "blocked" scan (the export backend, ``ops.export_mode()``) on the same model for
comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import audiomamba
from audiomamba import Tagger
import sys
from audiomamba.models import vmamba


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class ScanTimer:
    """Wraps SS2D's scan (``cross_selective_scan``: the numba kernel of CPU inference, or whichever backend
    runs it) and sums its wall time."""

    def __init__(self) -> None:
        self.total = 0.0
        self._orig = [(vmamba, "cross_selective_scan")]
        self._orig = [(mod, name, getattr(mod, name)) for mod, name in self._orig]

    def __enter__(self):
        def timed_call(fn):
            def wrapped(*a, **k):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    self.total += time.perf_counter() - t0

            return wrapped

        for mod, name, fn in self._orig:
            setattr(mod, name, timed_call(fn))
        return self

    def __exit__(self, *exc):
        for mod, name, fn in self._orig:
            setattr(mod, name, fn)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="audiomamba_nano,audiomamba_tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--window-sample", type=int, default=4, help="windows timed on the long file (extrapolated)")
    p.add_argument("--skip-long-native", default="", help="comma list of models whose long native run is skipped")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sr = 32000
    rng = np.random.default_rng(0)
    short = (rng.standard_normal(10 * sr) * 0.1).astype(np.float32)
    long_s = args.long_minutes * 60
    longw = (rng.standard_normal(int(long_s * sr)) * 0.1).astype(np.float32)
    machine = (f"{_cpu_model()} ({platform.machine()}), {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, "
               f"numba {numba_version()}, threads {torch.get_num_threads()}")
    load_start = os.getloadavg()
    print(f"# {machine}, load average {load_start[0]:.2f}", flush=True)
    rows = []

    def report(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    for name in args.models.split(","):
        torch.manual_seed(0)
        model = audiomamba.create_model(name, num_classes=527).eval()
        native = Tagger(model, mode="native", chunk_s=max(600.0, long_s + 1))
        windowed = Tagger(model, mode="windowed", window_s=10.0, hop_s=10.0)  # non-overlapping 10 s windows
        windowed_hts = Tagger(model, mode="windowed", window_s=10.0, hop_s=5.0)  # HTS-AT/AST-style overlap
        native.tag(short[: 2 * sr], sample_rate=sr)  # warm-up
        for label, t in (("native", native), ("windowed", windowed)):
            with ScanTimer() as st:
                sec = timed(lambda: t.tag(short, sample_rate=sr), repeats=2)
            report({"model": name, "audio_s": 10, "mode": label, "wall_s": round(sec, 3), "rtf": round(10 / sec, 2),
                    "scan_share": round(st.total / 2 / sec, 2) if args.profile else None})
        if name not in args.skip_long_native.split(","):
            with ScanTimer() as st:
                sec = timed(lambda: native.tag(longw, sample_rate=sr))
            report({"model": name, "audio_s": long_s, "mode": "native one pass", "wall_s": round(sec, 2),
                    "rtf": round(long_s / sec, 2), "scan_share": round(st.total / sec, 2) if args.profile else None})
        for label, t, hop in (("windowed 10 s / hop 10 s", windowed, 10.0), ("windowed 10 s / hop 5 s", windowed_hts, 5.0)):
            n = args.window_sample
            part = longw[: int((10.0 + (n - 1) * hop) * sr)]
            sec = timed(lambda: t.tag(part, sample_rate=sr))
            total_windows = int(np.ceil((long_s - 10.0) / hop)) + 1
            est = sec / n * total_windows
            report({"model": name, "audio_s": long_s, "mode": label, "wall_s": round(est, 1), "rtf": round(long_s / est, 2),
                    "note": f"extrapolated from {n} windows ({sec:.1f} s)"})
        if args.profile:
            from audiomamba.inference.export import export_mode

            with export_mode():
                sec = timed(lambda: native.tag(short, sample_rate=sr), repeats=2)
            report({"model": name, "audio_s": 10, "mode": "native, blocked scan (export backend)", "wall_s": round(sec, 3), "rtf": round(10 / sec, 2)})
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "command": "python " + " ".join(sys.argv), "machine": machine,
                "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)}}
        with open(args.json, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def numba_version() -> str:
    try:
        import numba
    except ImportError:
        return "absent"
    return numba.__version__


if __name__ == "__main__":
    main()
