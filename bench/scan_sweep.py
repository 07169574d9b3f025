"""Tuning sweep for the Triton scan: forward time of (BLOCK_E, T, num_warps) configs, cross vs plain mode.

    PYTHONPATH=src python3 bench/scan_sweep.py
Plain mode reads every direction contiguously (B, 4E, L); cross mode reads the grid in four orders: the
difference is the cost of the column-major directions' strided access.
"""

import statistics
import sys

import torch

from audiomamba.ops import scan_triton


def t(fn, iters=10):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record(); fn(); e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def main():
    cases = [(64, 96, 1, 64, 64), (64, 192, 16, 64, 64)]
    configs = [None, (8, 64, 4), (4, 64, 2), (2, 128, 1), (4, 32, 1), (16, 64, 4), (4, 128, 2), (2, 64, 1)]
    dt = torch.bfloat16
    for b, e, n, h, w in cases:
        L = h * w
        x = torch.randn(b, e, h, w, device="cuda", dtype=dt)
        delta = (torch.randn(b, 4, e, h, w, device="cuda") * 0.5 - 1).to(dt)
        A = -torch.rand(4 * e, n, device="cuda") - 0.5
        B = torch.randn(b, 4, n, h, w, device="cuda", dtype=dt)
        C = torch.randn(b, 4, n, h, w, device="cuda", dtype=dt)
        D = torch.ones(4 * e, device="cuda")
        bias = torch.randn(4 * e, device="cuda") - 3
        u4 = x.flatten(2).repeat(1, 4, 1)
        d4 = delta.reshape(b, 4 * e, L)
        B4, C4 = B.flatten(3), C.flatten(3)
        nbytes = b * e * L * 4 + b * 4 * e * L * 2 + 4 * b * 4 * n * L
        ref = None
        for cfg in configs:
            if cfg is not None and n == 16 and cfg[0] * cfg[1] * 16 > 8192:
                continue
            scan_triton._CONFIG_OVERRIDE = cfg
            try:
                with torch.no_grad():
                    y = scan_triton.cross_selective_scan_triton(x, delta, A, B, C, D, bias)
                    if ref is None:
                        ref = y.float()
                    err = float((y.float() - ref).norm() / ref.norm())
                    tc = t(lambda: scan_triton.cross_selective_scan_triton(x, delta, A, B, C, D, bias))
                    tp = t(lambda: scan_triton.selective_scan_triton(u4, d4, A, B4, C4, D, bias))
                used = cfg or scan_triton._config(b, 1, e, n, L)
                print(f"B{b} E{e} N{n} {h}x{w} cfg={used} cross {tc:.3f} ms ({nbytes / tc / 1e9:.2f} TB/s) "
                      f"plain {tp:.3f} ms  err {err:.1e}", flush=True)
            except Exception as exc:  # noqa: BLE001
                print(f"cfg={cfg} failed: {exc!r}"[:300], flush=True)
    scan_triton._CONFIG_OVERRIDE = None


if __name__ == "__main__":
    sys.exit(main())
