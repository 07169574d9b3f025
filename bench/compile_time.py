"""Triton's compile time for the scan kernels a model launches, for an H100/H200 (sm_90), on any machine.

A model's first GPU forward and backward compile every scan-kernel variant its stages need (each stage's shape
picks the masked or unmasked variant; the kernels specialise no size or stride, so stages share the rest).  On a fresh machine
that is the user's first-call wait, and on the device tool it is time the lease pays for.  This script needs no
GPU: it replays the Triton scan's launchers (``ops/triton/``) on CPU tensors laid out as SS2D lays them out on the GPU
(channels-last map, delta/B/C as slices of one projection output), with a stand-in Triton driver for sm_90, and
the launches compile (ptxas included) without running.  Each distinct variant is timed once, with an empty
cache::

    PYTHONPATH=src python3 bench/compile_time.py --model audiomamba_tiny_v2 [--batch 64] [--dtype bf16] [--json F]

Shapes come from one CPU forward of the model at batch 1 (hooks on SS2D record each stage's map).

With ``--cache-dir DIR --jobs N`` it fills a kept Triton cache instead, N processes side by side, each compiling
every Nth variant, so the d_state-16 models' serial first-call compile (minutes on a GPU machine) becomes the
slowest single variant's.  A training looks the kernels up under keys of its own, though: on the H200 (Triton 3.6)
it found the replay's forwards but compiled both backwards again, to machine code byte for byte the same as the
replay's (which input of Triton's key differs was not found; the replay runs the backward on its main thread,
autograd on a thread of its own).  So on the GPU machine use ``--on-gpu``: each process runs real scans on the
device, the backward from autograd as in a training, for its share of the variant groups (masked or not x training
forward and backward, inference forward, validation's float32 forward).  There a training that followed found
every scan kernel (scripts/pretrain_gpu.sh; docs/benchmarks.md, "Triton compile time").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class _Sm90Driver:
    """The few driver calls a Triton launch makes before it compiles, answered for an sm_90 device."""

    def __init__(self) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", 90, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")


def stage_shapes(model_name: str, layout: str | None = None) -> list[tuple[int, int, int, int]]:
    """(E, H, W, d_state) of each distinct SS2D call in a 10 s forward of the model (its default layout unless
    ``layout`` is given: the maps' shapes decide which variants a launch needs)."""
    from audiomamba import create_model
    from audiomamba.models.vmamba import SS2D

    model = create_model(model_name, num_classes=527, **({"layout": layout} if layout else {})).eval()
    seen: list[tuple[int, int, int, int]] = []

    def hook(mod, inputs):
        _, h, w, _ = inputs[0].shape
        key = (mod.x_proj_weight.shape[2], h, w, mod.d_state)
        if key not in seen:
            seen.append(key)

    for m in model.modules():
        if isinstance(m, SS2D):
            m.register_forward_pre_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 10 * model.sample_rate) * 0.1)
    return seen


def scan_operands(batch: int, e: int, h: int, w: int, n: int, dtype: torch.dtype, device: str = "cpu"):
    """x (B, E, H, W) channels-last, delta (B, 4, E, H, W), B and C (B, 4, N, H, W) as views of one
    (B, H, W, 4E + 8N) projection output, as ``SS2D.scan_inputs(composed=True)`` returns them."""
    x = torch.empty(batch, h, w, e, dtype=dtype, device=device).permute(0, 3, 1, 2)
    out = torch.empty(batch, h, w, 4 * e + 8 * n, dtype=dtype, device=device)
    delta = out[..., : 4 * e].unflatten(-1, (4, e)).permute(0, 3, 4, 1, 2)
    bc = out[..., 4 * e:].unflatten(-1, (4, 2 * n))
    B, C = bc[..., :n].permute(0, 3, 4, 1, 2), bc[..., n:].permute(0, 3, 4, 1, 2)
    A = torch.empty(4 * e, n, device=device)
    D, bias = torch.empty(4 * e, device=device), torch.empty(4 * e, device=device)
    return x, delta, A, B, C, D, bias


def compile_variants(shapes: list[tuple[int, int, int, int]], batch: int, dtype: str,
                     share: tuple[int, int] = (0, 1), eval_dtype: str | None = "fp32") -> list[dict]:
    """Compile, for sm_90 into ``$TRITON_CACHE_DIR``, the scan variants of a forward with saved states, an
    inference forward and a backward of every stage in ``shapes`` (:func:`stage_shapes`), and an inference
    forward in ``eval_dtype`` (a training's validation and ``audiomamba evaluate`` run in float32; None: skip);
    return one row per variant compiled here.
    ``share=(i, n)`` compiles only every nth variant from the ith, in the order the replay meets them (one of n
    processes: each replays every launch, so all number the variants alike)."""
    os.environ.pop("TRITON_INTERPRET", None)
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    from audiomamba.ops.triton import scan as st
    from audiomamba.ops.triton import scan_kernels as sk

    driver.set_active(_Sm90Driver())
    rows: list[dict] = []
    current: dict = {}
    seen: dict[str, int] = {}  # variant key -> its ordinal

    def timed_run(self, *a, grid, warmup, **kw):  # compile only, never launch; time each new variant
        flags = {k: v for k, v in kw.items() if k.isupper()}
        key = repr((self.fn.__name__, sorted(flags.items()), kw.get("num_warps"),
                    [str(t.dtype) for t in a if isinstance(t, torch.Tensor)]))
        if seen.setdefault(key, len(seen)) % share[1] != share[0]:
            return
        before = len(self.device_caches[0][0])
        t0 = time.perf_counter()
        JITFunction.run(self, *a, grid=grid, warmup=True, **kw)
        if len(self.device_caches[0][0]) > before:
            row = dict(current, kernel=self.fn.__name__, seconds=round(time.perf_counter() - t0, 2),
                       num_warps=kw.get("num_warps"), dtype=str(a[0].dtype).removeprefix("torch."), **flags)
            rows.append(row)
            print(json.dumps(row), flush=True)

    for kern in (sk.scan_fwd_kernel, sk.scan_bwd_kernel, sk.sum4_kernel):
        kern.run = timed_run.__get__(kern)
    for e, h, w, n in shapes:
        current.clear()
        current.update(stage=f"E{e} N{n} {h}x{w}")
        x, delta, A, B, C, D, bias = scan_operands(batch, e, h, w, n, DTYPES[dtype])
        _, hs = st._cross_fwd(x, delta, A, B, C, D, bias, True, True)  # the training forward (saves states)
        st._cross_fwd(x, delta, A, B, C, D, bias, True, False)  # inference
        st._cross_bwd(torch.empty_like(x), x, delta, A, B, C, D, bias, hs, True)
        if eval_dtype and eval_dtype != dtype:
            x, delta, A, B, C, D, bias = scan_operands(batch, e, h, w, n, DTYPES[eval_dtype])
            st._cross_fwd(x, delta, A, B, C, D, bias, True, False)
    return rows


def _even(e: int, h: int, w: int) -> tuple[bool, bool]:
    """Whether a cross-scan of an ``h x w`` map with ``e`` channels takes the unmasked forward and the unmasked
    backward (their channel blocks differ)."""
    from audiomamba.ops.triton import scan as st

    return tuple(st.unmasked(e, h, w, st._config(kind)[0], cross=True) for kind in ("fwd", "bwd"))


def variant_groups(shapes: list[tuple[int, int, int, int]], dtype: str, eval_dtype: str | None = "fp32"
                   ) -> dict[tuple[tuple[bool, bool], str], tuple[int, int, int, int]]:
    """((forward unmasked?, backward unmasked?), "train" | "infer" | "eval") -> the first stage shape that
    launches that group of variants."""
    groups: dict[tuple[tuple[bool, bool], str], tuple[int, int, int, int]] = {}
    for e, h, w, n in shapes:
        for kind in ("train", "infer") + (("eval",) if eval_dtype and eval_dtype != dtype else ()):
            groups.setdefault((_even(e, h, w), kind), (e, h, w, n))
    return groups


def warm_on_gpu(shapes: list[tuple[int, int, int, int]], batch: int, dtype: str,
                share: tuple[int, int] = (0, 1), eval_dtype: str | None = "fp32") -> list[dict]:
    """On a CUDA device: run the scan as a training runs it (``cross_selective_scan_triton``, the backward from
    autograd) for every stage's variant group in this share, so the cache holds the keys a training looks up.
    Groups (:func:`variant_groups`): (forward's and backward's masks) x (training forward + backward, inference
    forward, ``eval_dtype`` inference forward); ``share=(i, n)`` runs every nth group from the ith.  One row per
    group run here."""
    from audiomamba.ops.triton.scan import cross_selective_scan_triton

    rows = []
    for i, ((even, kind), (e, h, w, n)) in enumerate(variant_groups(shapes, dtype, eval_dtype).items()):
        if i % share[1] != share[0]:
            continue
        dt = DTYPES[eval_dtype if kind == "eval" else dtype]
        t0 = time.perf_counter()
        x, delta, A, B, C, D, bias = scan_operands(batch, e, h, w, n, dt, "cuda")
        for t in (x, delta, B, C):
            t.normal_().mul_(0.1)
        A.uniform_(-1.5, -0.5)
        D.fill_(1.0)
        bias.zero_()
        if kind == "train":
            x, A, D, bias = (t.requires_grad_() for t in (x, A, D, bias))
            y = cross_selective_scan_triton(x, delta, A, B, C, D, bias)
            y.float().sum().backward()  # autograd's own CUDA thread runs the backward, as in a training
        else:
            with torch.no_grad():
                cross_selective_scan_triton(x, delta, A, B, C, D, bias)
        torch.cuda.synchronize()
        rows.append(dict(stage=f"E{e} N{n} {h}x{w}", group=kind, EVEN=even, dtype=str(dt).removeprefix("torch."),
                         seconds=round(time.perf_counter() - t0, 2)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="audiomamba_tiny_v2")
    ap.add_argument("--layout", default=None, help="the model's layout (default: its own), as the training's config")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--eval-dtype", choices=sorted(DTYPES) + ["none"], default="fp32",
                    help="also an inference forward in this dtype, as validation runs it (none: skip)")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--cache-dir", default=None, help="compile into this kept cache (default: a new empty one)")
    ap.add_argument("--jobs", type=int, default=1, help="processes side by side, each compiling every Nth variant")
    ap.add_argument("--on-gpu", action="store_true",
                    help="run the scans on this machine's CUDA device, backward from autograd, in variant groups")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    if args.on_gpu and not torch.cuda.is_available():
        ap.error("--on-gpu needs a CUDA device")
    cache = args.cache_dir or tempfile.mkdtemp(prefix="triton-cache-")  # by default every variant compiles afresh
    os.makedirs(cache, exist_ok=True)
    os.environ["TRITON_CACHE_DIR"] = os.path.abspath(cache)
    import triton

    shapes = stage_shapes(args.model, args.layout)
    t_all = time.perf_counter()
    eval_dtype = None if args.eval_dtype == "none" else args.eval_dtype
    work = warm_on_gpu if args.on_gpu else compile_variants
    if args.jobs == 1:
        rows = work(shapes, args.batch, args.dtype, eval_dtype=eval_dtype)
    else:
        # spawned, not forked: this process has run a forward, and a fork copies torch's thread pool's locks
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = pool.map(work, *zip(*[(shapes, args.batch, args.dtype, (i, args.jobs), eval_dtype)
                                          for i in range(args.jobs)]))
            rows = [r for part in parts for r in part]
    total = time.perf_counter() - t_all
    print(f"\n## Triton compile for sm_90, {args.model} ({args.layout or 'default'} layout), batch {args.batch}, "
          f"{args.dtype} (triton {triton.__version__}, {args.jobs} process(es))")
    print("| stage | kernel | dtype | EVEN | SAVE | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        what = r.get("kernel", r.get("group"))
        flags = f"{r.get('EVEN', '-')} | {r.get('SAVE', '-')}"
        print(f"| {r['stage']} | {what} | {r['dtype']} | {flags} | {r['seconds']:.1f} |")
    print(f"| all | {len(rows)} variants | | | | {total:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "layout": args.layout, "batch": args.batch, "dtype": args.dtype,
                       "eval_dtype": eval_dtype,
                       "triton": triton.__version__, "jobs": args.jobs, "rows": rows, "total_s": total}, f, indent=1)


if __name__ == "__main__":
    main()
