"""A/B of two versions of the Triton scan kernels on the GPU: the package's ``ops/triton/scan_kernels.py`` against
other copies of that file (``--alt``, e.g. the previous commit's, from ``git show HEAD~1:src/...``), on SS2D's
cross scan at model shapes, channels-last bf16 as the models call it.

    PYTHONPATH=src python3 bench/dev/scan_ab.py --alt /tmp/old.py [/tmp/other.py ...] [--cases tiny,tiny_v2]
        [--bwd-warps 1,2] [--out DIR]

For each case: each version's outputs and gradients against the package's (relative difference), the forward and
the forward + backward time of each (median of CUDA-event timings) for each backward warp count, and the
per-kernel table of the package's forward + backward.  Writes ``scan_ab.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from scan_sweep import CASES, cuda_ms, inputs, kernel_table  # noqa: E402

from audiomamba.ops import scan_config  # noqa: E402
from audiomamba.ops.triton import scan as scan_triton  # noqa: E402

CASES = {**CASES, "micro_s0": (64, 128, 16, 64, 64), "nano_s0": (64, 96, 16, 64, 64)}  # stage 0 of micro, nano
NAMES = ("scan_fwd_kernel", "scan_bwd_kernel", "sum4_kernel")


def _load(path: str):
    spec = importlib.util.spec_from_file_location("scan_kernels_alt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _use(kernels: dict) -> None:
    for name, fn in kernels.items():
        setattr(scan_triton, name, fn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alt", nargs="*", default=[], help="other scan_kernels.py files (taking the same arguments)")
    ap.add_argument("--cases", default="tiny,tiny_v2")
    ap.add_argument("--no-warp-reduce", action="store_true", help="also time the package without WARP_RED")
    ap.add_argument("--bwd-warps", default="1", help="backward num_warps to time (ScanConfig.triton_bwd_warps)")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    pkg = {n: getattr(scan_triton, n) for n in NAMES + ("warp_reduce",)}
    versions = [("package", pkg)] + [(path, {n: getattr(_load(path), n) for n in NAMES}) for path in args.alt]
    if args.no_warp_reduce:  # the package's kernels with tl.sum in place of the warp reduce-scatter
        versions.append(("package, no warp reduce", {**pkg, "warp_reduce": lambda n: False}))
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for name in args.cases.split(","):
        b, e, n, h, w = CASES[name]
        ins = inputs(b, e, n, h, w, torch.bfloat16, channels_last=True)
        gy = torch.randn(b, h, w, e, device="cuda", dtype=torch.bfloat16).permute(0, 3, 1, 2)
        out = {}
        for tag, kernels in versions:
            _use(kernels)
            leaves = [t.detach().clone().requires_grad_(True) for t in ins]
            y = scan_triton.cross_selective_scan_triton(*leaves)
            y.backward(gy)
            out[tag] = [y.detach().float().clone()] + [t.grad.float().clone() for t in leaves]  # .float() can alias

            def fwdbwd():
                yy = scan_triton.cross_selective_scan_triton(*leaves)
                yy.backward(gy)

            fwd_ms = cuda_ms(lambda: scan_triton.cross_selective_scan_triton(*ins))
            for warps in [int(v) for v in args.bwd_warps.split(",")]:
                with scan_config(triton_bwd_warps=warps):
                    fb_ms = cuda_ms(fwdbwd, iters=5)
                    if tag == "package" and warps == 1:
                        print(kernel_table(fwdbwd), flush=True)
                row = dict(case=name, version=tag, bwd_warps=warps, fwd_ms=round(fwd_ms, 3), fwd_bwd_ms=round(fb_ms, 3))
                res["rows"].append(row)
                print(row, flush=True)
            if tag != "package":
                errs = {k: float((a - r).norm() / r.norm().clamp_min(1e-30))
                        for k, a, r in zip("y x delta A B C D bias".split(), out[tag], out["package"])}
                res["rows"].append(dict(case=name, version=tag, rel_diff_vs_package=errs))
                print(name, tag, "vs package:", {k: f"{v:.1e}" for k, v in errs.items()}, flush=True)
        _use(pkg)
        torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scan_ab.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
