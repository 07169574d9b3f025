"""Why ``torch.compile`` gains little for audiomamba_tiny_v2: graph breaks (``torch._dynamo.explain``) and where
the compiled forward's time goes (device time from the profiler against wall time per call).

    PYTHONPATH=src python3 bench/dev/compile_explain.py [--model audiomamba_tiny_v2 --batch 64] > explain.txt
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

import audiomamba


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="audiomamba_tiny_v2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mode", default="default", help="torch.compile mode")
    ap.add_argument("--breaks-only", action="store_true", help="only the graph breaks (no compilation)")
    ap.add_argument("--train", action="store_true", help="explain the training forward (train mode, with grad)")
    args = ap.parse_args()
    m = audiomamba.create_model(args.model).cuda().train(args.train)
    spec = torch.randn(args.batch, 1001, 64, device="cuda")

    def fn(x):
        return m.forward_head(*m.forward_features(x), x.shape[1]).logits

    with torch.set_grad_enabled(args.train), torch.autocast("cuda", dtype=torch.bfloat16):
        ex = torch._dynamo.explain(fn)(spec)
    print(f"graphs {ex.graph_count}, graph breaks {ex.graph_break_count}, ops per graph "
          f"{[len(o) for o in ex.ops_per_graph]}")
    seen = set()
    for r in ex.break_reasons:
        key = str(r.reason)[:300]
        if key in seen:
            continue
        seen.add(key)
        print("break:", key, "\n   at", " <- ".join(str(f) for f in reversed(r.user_stack[-5:])))
    torch._dynamo.reset()
    if args.breaks_only:
        return

    comp = torch.compile(fn, mode=None if args.mode == "default" else args.mode)

    def call():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return comp(spec)

    t0 = time.perf_counter()
    call()
    torch.cuda.synchronize()
    print(f"first call (compilation) {time.perf_counter() - t0:.0f} s")
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        ref = fn(spec).float()
    got = call().float()  # (reduce-overhead: the graph's output buffer, read before the next call)
    rel = float((got - ref).norm() / ref.norm())
    print(f"compiled vs eager logits: relative difference {rel:.2e}")
    n = 10
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    host = (time.perf_counter() - t0) / n * 1e3
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / n * 1e3
    print(f"compiled ({args.mode}): host enqueue {host:.1f} ms per forward, wall {wall:.1f} ms per forward")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            call()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.self_device_time_total for e in events) / 3 / 1e3
    launches = sum(e.count for e in events if e.self_device_time_total > 0) / 3
    print(f"profiler rows with device time: {total:.1f} ms per forward (a custom op's row and its kernels' rows "
          f"both count), ~{launches:.0f} per forward")
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=70))


if __name__ == "__main__":
    main()
