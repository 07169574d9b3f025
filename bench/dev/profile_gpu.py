"""Where the GPU time goes: torch.profiler tables of the cross scan and of whole models (inference and one
training step), bf16 autocast, batch 64, 10 s inputs.

    PYTHONPATH=src python3 bench/dev/profile_gpu.py [--out DIR] [--models audiomamba_tiny_v2] [--rows 25]

Writes ``profile_<name>.txt`` per table (kernels sorted by their own GPU time).
"""

from __future__ import annotations

import argparse
import os

import torch
from torch.profiler import ProfilerActivity, profile

import audiomamba
from audiomamba.ops.triton import scan as scan_triton


def table(fn, rows: int, steps: int = 3) -> str:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=70)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=".")
    ap.add_argument("--models", default="audiomamba_tiny_v2")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-scan", action="store_true", help="only the model tables")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    def emit(key: str, text: str) -> None:  # written as soon as measured: a call that runs out of time keeps them
        print(f"===== {key}\n{text}", flush=True)
        with open(os.path.join(args.out, f"profile_{key}.txt"), "w") as f:
            f.write(text)

    g = torch.Generator(device="cuda").manual_seed(0)
    b, e, n, h, w = args.batch, 96, 1, 64, 64
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    ins = [r(b, e, h, w).bfloat16(), (r(b, 4, e, h, w) * 0.5 - 1).bfloat16(), -torch.rand(4 * e, n, device="cuda") - 0.5,
           r(b, 4, n, h, w).bfloat16(), r(b, 4, n, h, w).bfloat16(), torch.ones(4 * e, device="cuda"), r(4 * e) - 3]
    if not args.no_scan:
        emit("scan_fwd", table(lambda: scan_triton.cross_selective_scan_triton(*ins), args.rows))
        leaves = [t.detach().clone().requires_grad_(True) for t in ins]
        gy = torch.randn(b, e, h, w, device="cuda", dtype=torch.bfloat16)
        emit("scan_fwdbwd", table(lambda: scan_triton.cross_selective_scan_triton(*leaves).backward(gy), args.rows))
    spec = torch.randn(args.batch, 1001, 64, device="cuda")
    for name in args.models.split(","):
        model = audiomamba.create_model(name, num_classes=527).cuda()
        model.eval()

        def infer():
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
                model.forward_head(*model.forward_features(spec), spec.shape[1])

        emit(f"{name}_infer", table(infer, args.rows))
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with torch.autocast("cuda", torch.bfloat16):
                loss = model.forward_head(*model.forward_features(spec), spec.shape[1]).logits.float().sigmoid().mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        emit(f"{name}_train", table(step, args.rows))
        del model, opt
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
