"""Live tagging (audiomamba.inference.stream): latency per hop and real-time factor.

    PYTHONPATH=src python bench/bench_stream.py --threads 2 --models audiomamba_nano,audiomamba_micro,audiomamba_tiny \
        --seconds 60 --window 10 --hop 1 --json FILE

A stream of generated audio (quiet noise with loud bursts) is fed to :class:`~audiomamba.inference.stream.StreamTagger`
one hop at a time, as a live source delivers it, as fast as the tagger takes it.  Latency = wall time of one hop's
``feed`` (scoring the window and deciding the hop's frames): the delay between a hop's audio arriving and its JSON
line; CPU time per hop (all threads) is given too, since wall time also counts other processes on a busy machine.
Real-time factor = hop / median latency: above 1 the tagger keeps up with a live source at that hop; below,
a live source skips hops (``realtime``).  Each hop re-scores the whole window, so the cost of a hop is about one
forward pass on ``--window`` seconds whatever the hop.  The first ``--warmup`` hops (compilation, allocator) are
not timed.  RSS at the start and after each quarter of the timed hops shows that memory stays flat.  Random
weights (speed does not depend on them), 527 classes, float32.
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
from audiomamba.inference.stream import StreamTagger


def rss_mb() -> float:
    """Resident set size of this process (Linux), MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def stream_audio(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Quiet noise with a loud noise burst of 1-3 s every 5-10 s."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * sr)).astype(np.float32) * 0.003
    t = 0.0
    while t < seconds:
        t += rng.uniform(5, 10)
        a, b = int(t * sr), int((t + rng.uniform(1, 3)) * sr)
        x[a:b] += rng.standard_normal(max(0, min(b, x.size) - a)).astype(np.float32) * 0.3
    return x


def bench(name: str, args) -> dict:
    torch.manual_seed(0)
    model = audiomamba.create_model(name, layout=args.layout).eval()
    tagger = Tagger(model, device=args.device)
    streamer = StreamTagger(tagger, args.window, args.hop, lookahead_s=args.lookahead)
    sr = tagger.sample_rate
    hop = streamer.hop
    x = stream_audio(args.seconds + (args.warmup + 1) * args.hop + args.window, sr)
    blocks = (x[i : i + hop] for i in range(0, x.size - hop + 1, hop))
    for _ in range(args.warmup + int(args.window / args.hop)):  # warm up, and fill the window
        streamer.feed(next(blocks))
    hops = int(round(args.seconds / args.hop))
    rss = [rss_mb()]  # at the start and after each quarter of the timed hops
    latencies, cpu, lines = [], [], 0
    for i in range(hops):
        block = next(blocks)
        t0, c0 = time.perf_counter(), time.process_time()
        lines += len(streamer.feed(block))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        latencies.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if (i + 1) % max(1, hops // 4) == 0:
            rss.append(rss_mb())
    lat = np.array(latencies) * 1000
    return {
        "model": name,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "layout": args.layout,
        "window_s": args.window,
        "hop_s": args.hop,
        "lookahead_s": args.lookahead,
        "hops": len(latencies),
        "lines": lines,
        "latency_ms_median": round(float(np.median(lat)), 1),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
        "latency_ms_max": round(float(lat.max()), 1),
        "cpu_ms_median": round(float(np.median(cpu)) * 1000, 1),
        "rtf": round(args.hop * 1000 / float(np.median(lat)), 2),
        "keeps_up": bool(np.percentile(lat, 95) < args.hop * 1000),
        "rss_mb": [round(r, 1) for r in rss],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="audiomamba_nano,audiomamba_micro,audiomamba_tiny")
    ap.add_argument("--layout", choices=("native", "fold"), default="native")
    ap.add_argument("--seconds", type=float, default=60.0, help="stream time timed per model")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--hop", type=float, default=1.0)
    ap.add_argument("--lookahead", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=3, help="hops run before timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="write the rows and the setup here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'model':<20} {'params':>7} {'window':>6} {'hop':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} "
          f"{'CPU ms':>7} {'RTF':>6} {'keeps up':>8}  RSS MB (start, each quarter)")
    for name in args.models.split(","):
        r = bench(name, args)
        rows.append(r)
        print(f"{r['model']:<20} {r['params_m']:>6}M {r['window_s']:>6g} {r['hop_s']:>5g} {r['latency_ms_median']:>10} "
              f"{r['latency_ms_p95']:>8} {r['latency_ms_max']:>8} {r['cpu_ms_median']:>7} {r['rtf']:>6} {'yes' if r['keeps_up'] else 'no':>8} "
              f"{' '.join(f'{m:.0f}' for m in r['rss_mb'])}", flush=True)
    if args.json:
        setup = {"date": time.strftime("%Y-%m-%d"), "device": args.device, "threads": args.threads,
                 "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "load_average": os.getloadavg(), "torch": torch.__version__}
        with open(args.json, "w") as f:
            json.dump({"setup": setup, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
