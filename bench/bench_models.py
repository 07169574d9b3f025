"""Forward time and peak memory of each Audio Mamba size on a 10-second clip.

CPU (default): batch 1, float32, each model measured in its own subprocess so that peak RSS is its own.
CUDA (``--device cuda``): batch 64, bf16 autocast, peak from ``torch.cuda.max_memory_allocated``.

    python bench/bench_models.py                         # CPU, all sizes, fold + native
    python bench/bench_models.py --device cuda --batch 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date

import torch

MODELS = ["audiomamba_nano", "audiomamba_micro", "audiomamba_tiny", "audiomamba_tiny_v2", "audiomamba_small", "audiomamba_base"]


def measure(name: str, layout: str, device: str, batch: int, seconds: float, repeats: int, threads: int) -> dict:
    import audiomamba

    torch.set_num_threads(threads)
    model = audiomamba.create_model(name, layout=layout).eval().to(device)
    wave = torch.randn(batch, int(seconds * model.sample_rate), device=device) * 0.1
    cuda = device.startswith("cuda")
    times = []
    with torch.inference_mode(), torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
        model(wave)  # warm-up (and Triton compilation)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(wave)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "model": name, "layout": layout, "device": device, "batch": batch, "seconds": seconds,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "median_s": t, "clips_per_s": batch / t, "x_realtime": batch * seconds / t,
        "peak_GiB": peak, "peak_kind": "cuda allocated" if cuda else "process max RSS",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 64 on CUDA")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 20 on CUDA")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--layouts", nargs="+", default=["fold", "native"])
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)  # internal: measure one (model, layout) and print JSON
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    batch = args.batch or (64 if cuda else 1)
    repeats = args.repeats or (20 if cuda else 3)
    if args._one:
        print(json.dumps(measure(*args._one, args.device, batch, args.seconds, repeats, args.threads)))
        return
    rows = []
    for name in args.models:
        for layout in args.layouts:
            if cuda:
                rows.append(measure(name, layout, args.device, batch, args.seconds, repeats, args.threads))
            else:  # a fresh process per model, so that max RSS is this model's
                cmd = [sys.executable, __file__, "--_one", name, layout, "--device", args.device, "--batch", str(batch),
                       "--seconds", str(args.seconds), "--repeats", str(repeats), "--threads", str(args.threads)]
                rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
            r = rows[-1]
            print(f"{r['model']:20s} {r['layout']:6s} {r['params_M']:7.2f}M  {r['median_s'] * 1000:9.1f} ms  "
                  f"{r['clips_per_s']:8.1f} clips/s  {r['x_realtime']:7.1f}x RT  peak {r['peak_GiB']:.2f} GiB", flush=True)
    meta = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": args.threads, "command": " ".join(sys.argv)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
