"""Tuning sweep for the Triton scan (``ops/triton/``): num_warps (32 channels per warp) of the forward and backward
kernels, and the forward's segments per stream, on SS2D's cross scan at the shapes that dominate the models, each
config checked against the PyTorch path before it is timed.

    PYTHONPATH=src python3 bench/dev/scan_sweep.py [--out DIR] [--cases tiny_v2,tiny] [--budget-s 500]
        [--fwd 1,2] [--bwd 1,2] [--segments 1,4,8]

Prints one line per config and writes ``scan_sweep.json``.  Bandwidth is quoted for the bytes a fully fused
cross scan must move (x and the merged output once, the four deltas, B and C) against the device's copy
bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from audiomamba.ops import ScanConfig, cross_selective_scan, plan_segments, scan_config
from audiomamba.ops.triton import scan as scan_triton

CASES = {  # name: (batch, E, N, H, W)
    "tiny_v2": (64, 96, 1, 64, 64),
    "tiny_v2_b1": (1, 96, 1, 64, 64),  # batch-1 latency, stage 0 of the fold layout
    "tiny_v2_600s": (1, 96, 1, 16, 15000),  # a 10-minute file in one native pass, stage 0
    "tiny_v2_s2": (64, 384, 1, 16, 16),
    "tiny": (64, 192, 16, 64, 64),
}
def cuda_ms(fn, iters=10):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def kernel_table(fn, rows: int = 8) -> str:
    """Per-kernel CUDA time of ``fn`` (5 calls) from torch.profiler: where the time goes (scan, merge, copies)."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=60)


def copy_tbps() -> float:
    a = torch.empty(1 << 29, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    return 2 * a.numel() / cuda_ms(lambda: b.copy_(a)) / 1e9


def inputs(b, e, n, h, w, dtype, channels_last=False):
    """Random SS2D scan inputs; ``channels_last``: x and delta with unit channel stride, as the model makes them."""
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    if channels_last:
        x = r(b, h, w, e).to(dtype).permute(0, 3, 1, 2)
        delta = (r(b, 4, h, w, e) * 0.5 - 1).to(dtype).permute(0, 1, 4, 2, 3)
    else:
        x = r(b, e, h, w).to(dtype)
        delta = (r(b, 4, e, h, w) * 0.5 - 1).to(dtype)
    A = -torch.rand(4 * e, n, device="cuda", generator=g) - 0.5
    B, C = r(b, 4, n, h, w).to(dtype), r(b, 4, n, h, w).to(dtype)
    D = torch.ones(4 * e, device="cuda")
    bias = r(4 * e) - 3
    return x, delta, A, B, C, D, bias


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=".")
    ap.add_argument("--cases", default="tiny_v2,tiny_v2_s2,tiny")
    ap.add_argument("--budget-s", type=float, default=500.0, help="stop starting new configs after this")
    ap.add_argument("--channels-last", action="store_true", help="x and delta channels-last, as in the model")
    ap.add_argument("--fwd", default="1,2,4", help="forward num_warps to try")
    ap.add_argument("--bwd", default="1,2,4", help="backward num_warps to try")
    ap.add_argument("--segments", default="1", help="forward segments per stream to try (ScanConfig.segments; "
                    "0: the rule of ops.plan_segments)")
    args = ap.parse_args()
    parse = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    t_start = time.time()
    bw = copy_tbps()
    res = {"device": torch.cuda.get_device_name(), "copy_TBps": bw, "rows": []}
    print(f"{res['device']}: copy {bw:.2f} TB/s", flush=True)
    for name in args.cases.split(","):
        b, e, n, h, w = CASES[name]
        L = h * w
        ins = inputs(b, e, n, h, w, torch.bfloat16, args.channels_last)
        fused_bytes = b * e * L * (2 + 4 * 2 + 2) + 2 * (b * 4 * n * L * 2)
        ref = cross_selective_scan(*(t.float() for t in ins), backend="torch").float()
        leaves = [t.detach().clone().requires_grad_(True) for t in ins]
        gy = torch.randn(b, h, w, e, device="cuda", dtype=torch.bfloat16).permute(0, 3, 1, 2)
        gy = gy if args.channels_last else gy.contiguous()

        def fwdbwd():
            y = scan_triton.cross_selective_scan_triton(*leaves)
            y.backward(gy)

        for fcfg, segs in [(f, sg) for f in parse(args.fwd) for sg in parse(args.segments)]:
            if time.time() - t_start > args.budget_s:
                break
            try:
                with scan_config(triton_fwd_warps=fcfg, segments=segs or None):
                    y = scan_triton.cross_selective_scan_triton(*ins)
                    err = float((y.float() - ref).norm() / ref.norm())
                    ms = cuda_ms(lambda: scan_triton.cross_selective_scan_triton(*ins))
            except Exception as exc:  # a config the compiler rejects (e.g. out of registers): record and go on
                print(f"{name} fwd {fcfg} segments {segs}: failed: {exc!r}"[:300], flush=True)
                continue
            row = dict(case=name, kind="fwd", cfg=fcfg, segments=segs, ms=ms, rel_err=err,
                       frac_of_copy=fused_bytes / ms / 1e9 / bw)
            res["rows"].append(row)
            if not segs:
                row["auto_segments"] = plan_segments(b * 4 * e, scan_triton.n_chunks(h, w, True), ScanConfig())
            print(f"{name} fwd {fcfg} segments {segs or 'rule=' + str(row['auto_segments'])}: {ms:.3f} ms  err {err:.1e}  {row['frac_of_copy']:.1%} of copy",
                  flush=True)
        best = min((r for r in res["rows"] if r["case"] == name and r["kind"] == "fwd"), key=lambda r: r["ms"], default=None)
        if best is None:
            continue
        best_knobs = dict(triton_fwd_warps=best["cfg"], segments=best["segments"] or None)
        with scan_config(**best_knobs):
            print(kernel_table(lambda: scan_triton.cross_selective_scan_triton(*ins)), flush=True)
        for warps in parse(args.bwd):
            if time.time() - t_start > args.budget_s:
                break
            try:
                with scan_config(**best_knobs, triton_bwd_warps=warps):
                    ms = cuda_ms(fwdbwd, iters=5)
            except Exception as exc:
                print(f"{name} bwd {warps}: failed: {exc!r}"[:300], flush=True)
                continue
            res["rows"].append(dict(case=name, kind="fwd+bwd", cfg={"fwd": best["cfg"], "bwd": warps},
                                    segments=best["segments"], ms=ms))
            print(f"{name} fwd+bwd fwd warps {best['cfg']} segments {best['segments']} bwd warps {warps}: "
                  f"{ms:.3f} ms", flush=True)
        torch.cuda.empty_cache()
        _write(args.out, res)  # after every case: a cut-off run keeps what it measured
    _write(args.out, res)


def _write(out: str, res: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scan_sweep.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
