"""Host cost of one call (microseconds, median of many) on small tensors, where the GPU work is negligible:
where eager-mode time goes besides the kernels.  Each line times one layer of the LayerNorm / scan call path.

    PYTHONPATH=src python3 bench/dev/launch_overhead.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
import triton

from audiomamba.models.layers import LayerNorm
from audiomamba.ops import cross_selective_scan
from audiomamba.ops.triton import layer_norm as lnt
from audiomamba.ops.triton import layer_norm_kernels as lnk


def host_us(fn, n: int = 300) -> float:
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    return statistics.median(times)


def main() -> None:
    dev = "cuda"
    x = torch.randn(64, 96, device=dev)
    w, b = torch.randn(96, device=dev), torch.randn(96, device=dev)
    xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, w, b))
    mean = torch.empty(64, device=dev)
    rstd = torch.empty_like(mean)
    y = torch.empty(64, 96, device=dev, dtype=torch.bfloat16)
    bm, bc, warps = lnt.row_blocks(96)
    grid = (triton.cdiv(64, bm),)

    def raw():
        lnk.ln_fwd_kernel[grid](x, w, b, y, mean, rstd, 64, 96, 96, 96, 1e-5, BLOCK_M=bm, BLOCK_C=bc, HAS_W=True,
                                HAS_B=True, num_warps=warps)

    mod = LayerNorm(96, cast_output=True).to(dev)
    dy = torch.randn(64, 96, device=dev, dtype=torch.bfloat16)
    rows = [
        ("torch.empty", lambda: torch.empty(64, 96, device=dev)),
        ("F.layer_norm", lambda: F.layer_norm(x, (96,), w, b)),
        ("triton launch (ln fwd kernel)", raw),
        ("ln forward (buffers + launch), no autograd", lambda: lnt._forward(x, w, b, 1e-5, torch.bfloat16)),
        ("layer_norm_triton, grad", lambda: lnt.layer_norm_triton(xg, wg, bg, 1e-5, torch.bfloat16)),
        ("F.layer_norm fwd+bwd", lambda: torch.autograd.grad(F.layer_norm(xg, (96,), wg, bg), (xg, wg, bg), dy.float())),
        ("layer_norm_triton fwd+bwd", lambda: torch.autograd.grad(lnt.layer_norm_triton(xg, wg, bg, 1e-5, torch.bfloat16),
                                                                  (xg, wg, bg), dy)),
        ("LayerNorm module, autocast", lambda: _autocast(mod, x)),
    ]
    g = torch.Generator(device=dev).manual_seed(0)
    xs = torch.randn(2, 32, 8, 8, device=dev, generator=g).contiguous(memory_format=torch.channels_last)
    d = torch.randn(2, 4, 32, 8, 8, device=dev, generator=g)
    A = -torch.rand(128, 1, device=dev)
    Bs, Cs = torch.randn(2, 4, 1, 8, 8, device=dev), torch.randn(2, 4, 1, 8, 8, device=dev)
    D, bias = torch.randn(128, device=dev), torch.randn(128, device=dev)
    rows.append(("cross_selective_scan (triton), no grad", lambda: _nograd(cross_selective_scan, xs, d, A, Bs, Cs, D, bias)))
    for name, fn in rows:
        print(f"| {name} | {host_us(fn):.1f} us |", flush=True)


def _autocast(mod, x):
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        return mod(x)


def _nograd(fn, *args):
    with torch.no_grad():
        return fn(*args)


if __name__ == "__main__":
    main()
