"""GPU benchmarks: scan kernel, models at 10 s in every mode, a profile, LayerNorm, length scaling, batch-1 latency.

The sections reproduce the GPU tables of docs/benchmarks.md (bench/README.md says which section gives which table).

One command prints a table per section and writes JSON + a PNG plot::

    PYTHONPATH=src python3 bench/bench_gpu.py --out results/   [--sections ceil,kernel,check,models,profile,norm,frontend,length,latency]

Everything is timed with CUDA events after warm-up (median of the repeats); inputs are random, never zeros.
Models are timed from the log-mel spectrogram ``(B, frames, 64)`` to clip logits (the mel front end, the same
for every model, is timed on its own in the ``frontend`` section); bf16 autocast; random weights.
The peers are :mod:`audiomamba.models.peers` (the same front end and head API; the timm ones need timm):
an HTS-AT-like Swin-T with the token-semantic head, an AST-like ViT-B/16 (1212 tokens for 10 s) and a
PANNs-CNN14-like CNN.  The ``models`` section times each model in every mode a user can run it in (eager, CUDA
graph, ``torch.compile``, compile "reduce-overhead") and ends with the headline: each model's best mode against
each peer's best.  The ``profile`` section says where tiny_v2's device time goes, by kernel family, against the
floors of its FLOPs (bf16 matrix rate) and of the bytes its scans must move (copy bandwidth).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time

# compiled modes keep their artifacts in the caches on disk (read when torch's inductor config is imported), which a
# run with --warm-jobs fills first
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

# audiomamba is imported from PYTHONPATH / the installed package, never from a path fixed here: A/B runs
# (bench/dev/ab_models.sh) point PYTHONPATH at different source trees, and the JSON records which one ran.
import audiomamba
from audiomamba.ops import cross_selective_scan
from audiomamba.utils.cuda_graphs import GraphedTraining

FRAMES_10S = 1001  # 10 s at 32 kHz, hop 320, centred STFT
AM_MODELS = ["audiomamba_nano", "audiomamba_micro", "audiomamba_tiny", "audiomamba_tiny_v2"]
RESULTS: dict = {}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------ timing helpers


def cuda_time(fn, warmup=3, iters=10, min_time_s=0.0):
    """Median milliseconds of fn() by CUDA events (after warm-up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    t_start = time.perf_counter()
    while len(times) < iters or (time.perf_counter() - t_start) < min_time_s:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
        if len(times) > 1000:
            break
    return statistics.median(times), times


def peak_mem(fn):
    """Peak GiB allocated while running fn() once (from the current allocation baseline)."""
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def free():
    gc.collect()
    torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ models

PEERS = ["swin_t_htsat_like", "vit_b_ast_like", "cnn14_panns_like"]  # audiomamba.models.peers


def build(name, layout=None):
    """(module, fn(spec) -> logits) for a registered model name (Audio Mamba sizes and the peers of
    :mod:`audiomamba.models.peers`, which share Audio Mamba's forward API)."""
    m = audiomamba.create_model(name, **({"layout": layout} if layout else {}))
    return m, lambda spec: m.forward_head(*m.forward_features(spec), spec.shape[1]).logits


def _save(args):
    with open(os.path.join(args.out, "bench_gpu.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)


# ------------------------------------------------------------------------------------------ sections


def sec_ceil(args):
    n = 2**28  # 1 GiB of float32
    a = torch.randn(n, device="cuda")
    b = torch.empty_like(a)
    ms, _ = cuda_time(lambda: b.copy_(a), warmup=3, iters=20)
    copy_tbs = 2 * a.numel() * 4 / ms / 1e9
    del a, b
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms_mm, _ = cuda_time(lambda: x @ y, warmup=3, iters=10)
    tflops = 2 * 8192**3 / ms_mm / 1e9
    del x, y
    free()
    RESULTS["ceilings"] = {"copy_TBps": copy_tbs, "bf16_matmul_TFLOPs": tflops}
    log(f"\n## ceilings\ncopy {copy_tbs:.2f} TB/s (read+write), bf16 8192^3 matmul {tflops:.0f} TFLOP/s")


def _scan_inputs(b, e, n, h, w, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    x = r(b, e, h, w).to(dtype)
    delta = (r(b, 4, e, h, w) * 0.5 - 1).to(dtype)
    A = -torch.exp(torch.log(torch.arange(1, n + 1, device="cuda", dtype=torch.float32))).repeat(4 * e, 1)
    B, C = r(b, 4, n, h, w).to(dtype), r(b, 4, n, h, w).to(dtype)
    D = torch.ones(4 * e, device="cuda")
    bias = r(4 * e) * 0.5 - 3
    return [x, delta, A, B, C, D, bias]


def sec_kernel(args):
    copy_tbs = RESULTS.get("ceilings", {}).get("copy_TBps")
    # SS2D shapes of the models at batch 64, fold layout (256x256 image): stage 0 is 64x64, stage 2 16x16
    cases = [
        ("tiny_v2 stage0 (E96 N1 64x64)", 64, 96, 1, 64, 64, torch.bfloat16),
        ("tiny_v2 stage2 (E384 N1 16x16)", 64, 384, 1, 16, 16, torch.bfloat16),
        ("tiny stage0 (E192 N16 64x64)", 64, 192, 16, 64, 64, torch.bfloat16),
        ("tiny stage2 (E768 N16 16x16)", 64, 768, 16, 16, 16, torch.bfloat16),
        ("tiny_v2 stage0 fp32", 64, 96, 1, 64, 64, torch.float32),
        ("native 10 min stage0 b1 (E96 N1 16x15008)", 1, 96, 1, 16, 15008, torch.bfloat16),
    ]
    rows = []
    for label, b, e, n, h, w, dt in cases:
        inp = _scan_inputs(b, e, n, h, w, dt)
        L = h * w
        sx, sd = inp[0].element_size(), inp[1].element_size()
        fwd_bytes = b * e * L * 2 * sx + b * 4 * e * L * sd + 2 * b * 4 * n * L * sd
        row = {"case": label, "B": b, "E": e, "N": n, "H": h, "W": w, "dtype": str(dt), "fwd_bytes": fwd_bytes}
        with torch.no_grad():
            y_t = cross_selective_scan(*inp, backend="triton")
            ms, _ = cuda_time(lambda: cross_selective_scan(*inp, backend="triton"), iters=20)
            row["triton_fwd_ms"] = ms
            row["triton_fwd_TBps"] = fwd_bytes / ms / 1e9
            if copy_tbs:
                row["fwd_frac_of_copy"] = row["triton_fwd_TBps"] / copy_tbs
            if b * e * L * n <= 2**31:
                try:
                    y_r = cross_selective_scan(*inp, backend="torch")
                    row["rel_err_vs_torch"] = float((y_t.float() - y_r.float()).norm() / y_r.float().norm())
                    ms, _ = cuda_time(lambda: cross_selective_scan(*inp, backend="torch"), warmup=1, iters=3)
                    row["torch_fwd_ms"] = ms
                    del y_r
                except torch.OutOfMemoryError:
                    row["torch_fwd_ms"] = None
        free()
        leaves = [t.clone().requires_grad_(True) for t in inp]
        gy = torch.randn_like(y_t)

        def fb(backend):
            for t in leaves:
                t.grad = None
            cross_selective_scan(*leaves, backend=backend).backward(gy)

        row["triton_fwdbwd_ms"], _ = cuda_time(lambda: fb("triton"), iters=10)
        row["triton_fwdbwd_peak_GiB"] = peak_mem(lambda: fb("triton"))
        if b > 1 and b * e * L * n <= 2**30:
            try:
                row["torch_fwdbwd_ms"], _ = cuda_time(lambda: fb("torch"), warmup=1, iters=3)
                row["torch_fwdbwd_peak_GiB"] = peak_mem(lambda: fb("torch"))
            except torch.OutOfMemoryError:
                row["torch_fwdbwd_ms"] = None
        del leaves, inp, y_t
        free()
        rows.append(row)
        log(row)
    RESULTS["kernel"] = rows
    log("\n## scan kernel (cross_selective_scan, fused Triton vs PyTorch path)")
    log(f"| case | dtype | fwd ms | fwd TB/s | % of copy | torch fwd ms | speed-up | fwd+bwd ms | torch fwd+bwd ms |")
    log("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tf, tb = r.get("torch_fwd_ms"), r.get("torch_fwdbwd_ms")
        tfs = "-" if not tf else "%.2f" % tf
        sp = "-" if not tf else "%.1fx" % (tf / r["triton_fwd_ms"])
        tbs = "-" if not tb else "%.2f" % tb
        frac = 100 * r.get("fwd_frac_of_copy", float("nan"))
        log(f"| {r['case']} | {r['dtype'][6:]} | {r['triton_fwd_ms']:.3f} | {r['triton_fwd_TBps']:.2f} | "
            f"{frac:.0f}% | {tfs} | {sp} | {r['triton_fwdbwd_ms']:.3f} | {tbs} |")


def sec_check(args):
    """Model-level: logits with the Triton kernel vs the PyTorch path (fp32, eval)."""
    from audiomamba.ops.triton import scan as scan_triton

    out = {}
    for name in ["audiomamba_nano", "audiomamba_tiny_v2"]:
        for layout in ["fold", "native"]:
            m, fn = build(name, layout)
            m = m.cuda().eval()
            spec = torch.randn(2, 777, 64, device="cuda")
            with torch.no_grad():
                y1 = fn(spec)
                supports = scan_triton.supports
                scan_triton.supports = lambda *a: False  # "auto" falls back to the PyTorch scan
                try:
                    y2 = fn(spec)
                finally:
                    scan_triton.supports = supports
            rel = float((y1 - y2).norm() / y2.norm())
            out[f"{name}/{layout}"] = rel
            log(f"model check {name} {layout}: rel diff triton vs torch logits {rel:.2e}")
            del m
            free()
    RESULTS["model_check"] = out


def _train_step(m, fn, spec, target, opt):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.binary_cross_entropy_with_logits(fn(spec).float(), target)
    loss.backward()
    opt.step()


class _FnModule(nn.Module):
    """A model and its spectrogram -> logits function as one module (what CUDA-graph capture takes)."""

    def __init__(self, m, fn):
        super().__init__()
        self.m, self.fn = m, fn

    def forward(self, spec):
        return self.fn(spec)


def _graphed_train_step(m, fn, spec, target, opt):
    """The training step with forward + backward replayed from CUDA graphs (train.cuda_graph's mechanism,
    audiomamba.training.cuda_graph.GraphedTraining); loss and fused AdamW eager, as in the trainer."""
    g = GraphedTraining(_FnModule(m, fn), (spec,), torch.bfloat16)

    def step():
        opt.zero_grad(set_to_none=False)
        F.binary_cross_entropy_with_logits(g(spec).float(), target).backward()
        opt.step()

    return step


INFER_MODES = ("eager", "graph", "compile", "compile_ro")
TRAIN_MODES = ("eager", "graph", "compile", "compile_ro")
MODE_NAMES = {"eager": "eager", "graph": "CUDA graph", "compile": "torch.compile",
              "compile_ro": 'compile "reduce-overhead"'}


def _infer_fn(fn, mode):
    """The inference callable of one mode (``graph`` is built by :func:`_graphed` instead)."""
    if mode == "compile":
        return torch.compile(fn)
    if mode == "compile_ro":
        return torch.compile(fn, mode="reduce-overhead")
    return fn


def _time_infer(m, fn, spec, mode, batch, row):
    """Inference clips/s of one mode into ``row`` (``infer_<mode>_clips_s``; first call's seconds, peak GiB)."""
    m.eval()
    if mode == "graph":  # replayed as Tagger(cuda_graph=True) replays it: device time, no Python launch cost
        g, _, _ = _graphed(fn, spec)
        ms, _ = cuda_time(g.replay, warmup=3, iters=20)
        del g
    else:
        f = _infer_fn(fn, mode)

        def inf():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                return f(spec)

        t0 = time.perf_counter()
        inf()
        torch.cuda.synchronize()
        row[f"infer_{mode}_first_call_s"] = time.perf_counter() - t0
        ms, _ = cuda_time(inf, warmup=3, iters=10)
        if mode == "eager":
            row["infer_peak_GiB"] = peak_mem(inf)
    row[f"infer_{mode}_clips_s"] = batch / ms * 1e3


def _time_train(m, fn, spec, mode, batch, row):
    """Training-step clips/s of one mode (forward, BCE loss, backward, fused AdamW) into ``row``."""
    m.train()
    target = torch.rand(batch, m_num_classes(m), device="cuda")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    if mode == "graph":
        step = _graphed_train_step(m, fn, spec, target, opt)
    else:
        f = _infer_fn(fn, mode)
        step = lambda: _train_step(m, f, spec, target, opt)  # noqa: E731
    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    row[f"train_{mode}_first_call_s"] = time.perf_counter() - t0
    ms, _ = cuda_time(step, warmup=3, iters=8)
    row[f"train_{mode}_clips_s"] = batch / ms * 1e3
    if mode == "eager":
        row["train_peak_GiB"] = peak_mem(step)
    del step, opt


def m_num_classes(m):
    return getattr(m, "num_classes", None) or 527


def _best(row, kind):
    """(mode, clips/s) of the fastest mode of ``kind`` ("infer" or "train") in ``row``."""
    got = [(row[f"{kind}_{mode}_clips_s"], mode) for mode in INFER_MODES if f"{kind}_{mode}_clips_s" in row]
    if not got:
        return None, None
    v, mode = max(got)
    return mode, v


def _warm_one(args):
    """``--warm-one MODEL,KIND,MODE``: build the model and make the mode's first call (compiling it), so that the
    compile caches on disk (Triton's, inductor's FX-graph and AOTAutograd caches) hold its artifacts; prints one
    JSON line with the first call's seconds."""
    name, kind, mode = args.warm_one.split(",")
    m, fn = build(name)
    m = m.cuda()
    spec = torch.randn(args.batch, FRAMES_10S, 64, device="cuda")
    f = _infer_fn(fn, mode)
    t0 = time.perf_counter()
    if kind == "infer":
        m.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            f(spec)
    else:
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
        _train_step(m, f, spec, torch.rand(args.batch, m_num_classes(m), device="cuda"), opt)
    torch.cuda.synchronize()
    print(json.dumps({"unit": args.warm_one, "first_call_s": time.perf_counter() - t0}), flush=True)


def _warm_caches(args, units: list[tuple[str, str, str]]) -> dict[str, float]:
    """Compile every unit (model, kind, mode) once in its own process, ``--warm-jobs`` at a time, before any
    timing: compiling is host work (tracing, lowering, Triton's compiler), so units compile side by side on the
    machine's cores, and the timed run that follows finds their artifacts in the caches on disk.  Nothing is timed
    while the units compile.  Returns each unit's cold first-call seconds (or the failure's last line)."""
    import subprocess

    env = dict(os.environ, TORCHINDUCTOR_FX_GRAPH_CACHE="1", TORCHINDUCTOR_AUTOGRAD_CACHE="1",
               TORCHINDUCTOR_COMPILE_THREADS=str(max(1, (os.cpu_count() or 2) // args.warm_jobs)))
    pending = list(units)
    running: list[tuple[str, subprocess.Popen, float]] = []
    cold: dict = {}
    t_start = time.time()
    while pending or running:
        while pending and len(running) < args.warm_jobs:
            unit = ",".join(pending.pop(0))
            cmd = [sys.executable, os.path.abspath(__file__), "--warm-one", unit, "--batch", str(args.batch)]
            running.append((unit, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   text=True), time.time()))
        time.sleep(0.5)
        for item in list(running):
            unit, proc, t0 = item
            if proc.poll() is None and time.time() - t0 < args.warm_timeout_s:
                continue
            if proc.poll() is None:
                proc.kill()
            out, err = proc.communicate()
            running.remove(item)
            got = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
            cold[unit] = got[0]["first_call_s"] if got else (err.strip().splitlines() or ["killed"])[-1][:200]
            log(f"warm {unit}: {cold[unit]}")
    log(f"[warm-up: {len(units)} units, {args.warm_jobs} at a time, {time.time() - t_start:.0f} s]")
    return cold


def _resumed_rows(path: str | None) -> dict[str, dict]:
    """The model rows of an earlier bench_gpu.json (``--resume``), by model name."""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        old = json.load(f)
    RESULTS.setdefault("meta", {})["resumed_from"] = old.get("meta")
    return {r["model"]: r for r in old.get("models", []) if "error" not in r}


def sec_models(args):
    """Every model in every mode a user can run it in (eager, CUDA graph, torch.compile, compile
    "reduce-overhead"), inference and training step, and the headline: each model's best against each peer's best.
    ``--compile-models`` limits the compiled modes to some models (compiling costs 20-110 s per model and mode);
    ``--warm-jobs N`` compiles them all side by side first (:func:`_warm_caches`); ``--resume FILE`` keeps the
    modes an earlier run of this section measured and times only the rest."""
    batch = args.batch
    rows = []
    names = [n for n in args.models.split(",") if n]
    comp = set(names if args.compile_models == "all" else [n for n in args.compile_models.split(",") if n])
    done = _resumed_rows(args.resume)
    plan = [(name, kind, mode) for name in names
            for kind, modes in (("infer", args.infer_modes), ("train", args.train_modes))
            for mode in modes.split(",") if mode and (not mode.startswith("compile") or name in comp)
            and f"{kind}_{mode}_clips_s" not in done.get(name, {})]
    cold = {}
    if args.warm_jobs > 1:
        # the train units first (the longest compiles), then one eager unit per model (Triton's scan kernels)
        units = sorted({u for u in plan if u[2].startswith("compile")}, key=lambda u: (u[1] != "train", u))
        units += sorted({(n, "infer", "eager") for n, _, _ in plan})
        cold = _warm_caches(args, units)
        RESULTS["meta"]["warm_jobs"] = args.warm_jobs
    deadline = time.time() + args.budget_s if args.budget_s else None
    for name in names:
        row = dict(done.get(name, {"model": name, "batch": batch}))
        rows.append(row)
        RESULTS["models"] = rows
        for unit, v in cold.items():
            n, kind, mode = unit.split(",")
            if n == name and isinstance(v, float):
                row[f"{kind}_{mode}_cold_first_call_s"] = v
        if not any(u[0] == name for u in plan):
            continue  # every mode kept from --resume
        try:
            m, fn = build(name)
            m = m.cuda()
            row["params_M"] = sum(p.numel() for p in m.parameters()) / 1e6
            spec = torch.randn(batch, FRAMES_10S, 64, device="cuda")
            for kind, modes, timer in (("infer", args.infer_modes.split(","), _time_infer),
                                       ("train", args.train_modes.split(","), _time_train)):
                for mode in [m for m in modes if m]:
                    if (name, kind, mode) not in plan:
                        continue
                    if deadline and mode.startswith("compile") and time.time() > deadline:
                        row[f"{kind}_{mode}_error"] = "skipped: --budget-s reached"
                        continue
                    try:
                        timer(m, fn, spec, mode, batch, row)
                    except Exception as exc:  # noqa: BLE001 (a mode that fails for a model: record and go on)
                        row[f"{kind}_{mode}_error"] = repr(exc)[:300]
                    torch._dynamo.reset()
                    free()
                    _save(args)  # after every mode: a run stopped by its time limit keeps what it measured
            del m
        except torch.OutOfMemoryError as exc:
            row["error"] = f"OOM: {exc}"[:200]
        free()
        log(row)
        _save(args)
    log(f"\n## models, 10 s clips, batch {batch}, bf16 autocast (spectrogram -> logits), clips/s")
    cols = [("infer", m) for m in INFER_MODES] + [("train", m) for m in TRAIN_MODES]
    log("| model | params M | " + " | ".join(f"{k} {MODE_NAMES[m]}" for k, m in cols) + " |")
    log("|---|---|" + "---|" * len(cols))
    for r in rows:
        if "error" in r:
            log(f"| {r['model']} | {r['error']} |")
            continue
        cells = [f"{r[f'{k}_{m}_clips_s']:.0f}" if f"{k}_{m}_clips_s" in r else "-" for k, m in cols]
        log(f"| {r['model']} | {r['params_M']:.1f} | " + " | ".join(cells) + " |")
    _headline(rows)


def _headline(rows):
    """Each model's best mode against each peer's best, inference and training."""
    ok = {r["model"]: r for r in rows if "error" not in r}
    peers = [p for p in PEERS if p in ok]
    head = []
    for name, r in ok.items():
        for kind in ("infer", "train"):
            mode, v = _best(r, kind)
            if v is None:
                continue
            entry = {"model": name, "kind": kind, "best_mode": mode, "clips_s": v}
            for p in peers:
                pm, pv = _best(ok[p], kind)
                if pv:
                    entry[f"vs_{p}"] = v / pv
                    entry[f"{p}_best_mode"] = pm
            head.append(entry)
    RESULTS["headline"] = head
    log("\n## headline: each model at its best against each peer at its best (ratio of clips/s)")
    log("| model | kind | best mode | clips/s | " + " | ".join(f"x {p}" for p in peers) + " |")
    log("|---|---|---|---|" + "---|" * len(peers))
    for e in head:
        log(f"| {e['model']} | {e['kind']} | {MODE_NAMES[e['best_mode']]} | {e['clips_s']:.0f} | "
            + " | ".join(f"{e[f'vs_{p}']:.2f}" if f"vs_{p}" in e else "-" for p in peers) + " |")


def _kernel_family(name: str) -> str:
    n = name.lower()
    if "scan" in n:
        return "selective scan (Triton)"
    if "layer_norm" in n or "layernorm" in n:
        return "layer norm"
    if any(k in n for k in ("gemm", "sm90_xmma", "cutlass", "nvjet", "matmul", "wgmma", "ampere_", "sm80_")):
        return "matmul (cuBLAS/CUTLASS)"
    if "conv" in n or "implicit" in n or "winograd" in n:
        return "convolution"
    if "triton" in n:
        return "fused elementwise (Triton, inductor)"
    if "elementwise" in n or "vectorized" in n or "copy" in n or "reduce" in n or "cat" in n:
        return "elementwise / copies / reductions (PyTorch)"
    return "other"


def sec_profile(args):
    """tiny_v2 inference and training step at batch 64 (10 s, bf16): device time by kernel family
    (torch.profiler), FLOPs (torch.utils.flop_counter) and the floors they imply on this GPU."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    name = "audiomamba_tiny_v2"
    ceil = RESULTS.get("ceilings") or {}
    tflops = ceil.get("bf16_matmul_TFLOPs", 790.0)
    out = {}
    m, fn = build(name)
    m = m.cuda()
    spec = torch.randn(args.batch, FRAMES_10S, 64, device="cuda")
    target = torch.rand(args.batch, m.num_classes, device="cuda")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)

    def inf():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            fn(spec)

    for kind, step, train in (("inference", inf, False), ("training step", lambda: _train_step(m, fn, spec, target, opt), True)):
        m.train(train)
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with FlopCounterMode(display=False) as fc:
            step()
        flops = fc.get_total_flops()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        fam: dict[str, float] = {}
        for e in prof.key_averages():
            t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
            if t and e.key and not e.key.startswith(("aten::", "cudaGraph", "ProfilerStep")):
                fam[_kernel_family(e.key)] = fam.get(_kernel_family(e.key), 0.0) + t / 1e3 / 5
        total = sum(fam.values())
        out[kind] = {"device_ms": total, "by_family_ms": dict(sorted(fam.items(), key=lambda kv: -kv[1])),
                     "GFLOP": flops / 1e9, "flop_floor_ms": flops / (tflops * 1e12) * 1e3,
                     "clips_s_at_device_time": args.batch / total * 1e3 if total else None}
        log(f"\n## where tiny_v2's {kind} time goes (batch {args.batch}, 10 s, bf16): {total:.2f} ms of kernels, "
            f"{flops / 1e9:.0f} GFLOP = {out[kind]['flop_floor_ms']:.2f} ms at {tflops:.0f} TFLOP/s")
        log("| kernel family | ms | share |\n|---|---|---|")
        for k, v in out[kind]["by_family_ms"].items():
            log(f"| {k} | {v:.2f} | {100 * v / total:.0f}% |")
    scan_rows = [r for r in RESULTS.get("kernel", []) if r["case"].startswith("tiny_v2 stage0 (")]
    if scan_rows and ceil.get("copy_TBps"):
        out["scan_stage0_fwd_floor_ms"] = scan_rows[0]["fwd_bytes"] / (ceil["copy_TBps"] * 1e12) * 1e3
        out["scan_stage0_fwd_ms"] = scan_rows[0]["triton_fwd_ms"]
    RESULTS["profile"] = out
    del m, opt
    free()


def _graph_ms(fn, grad: bool, reps: int = 10) -> float:
    """Milliseconds per call of fn() replayed from a CUDA graph of ``reps`` calls: device time, free of the
    host's launch cost (which exceeds the device time of a small kernel)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.set_grad_enabled(grad):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.set_grad_enabled(grad):
        for _ in range(reps):
            fn()
    ms, _ = cuda_time(g.replay, warmup=2, iters=10)
    del g
    return ms / reps


def sec_norm(args):
    """LayerNorm at VMamba's stage shapes (batch 64, 10 s): the Triton kernel (float32 residual in, bf16 out, as
    the blocks' norms run under autocast) against PyTorch's under autocast (float32 out) plus the cast the next
    matmul makes; forward and forward + backward; bandwidth of the bytes each must move."""
    from audiomamba.ops.triton.layer_norm import layer_norm_triton

    rows = []
    for tokens, c in [(64 * 64 * 64, 96), (64 * 32 * 32, 192), (64 * 16 * 16, 384), (64 * 8 * 8, 768)]:
        x = torch.randn(tokens, c, device="cuda", requires_grad=True)
        w = torch.randn(c, device="cuda", requires_grad=True)
        b = torch.randn(c, device="cuda", requires_grad=True)
        dy = torch.randn(tokens, c, device="cuda", dtype=torch.bfloat16)
        torch_fwd = lambda: F.layer_norm(x, (c,), w, b).to(torch.bfloat16)  # noqa: E731
        ours_fwd = lambda: layer_norm_triton(x, w, b, 1e-5, torch.bfloat16)  # noqa: E731
        err = float((ours_fwd().float() - torch_fwd().float()).norm() / torch_fwd().float().norm())
        row = {"tokens": tokens, "C": c, "rel_err": err}
        for name, fn in (("torch", torch_fwd), ("triton", ours_fwd)):  # device time: 10 calls in a CUDA graph
            row[f"{name}_fwd_ms"] = _graph_ms(fn, grad=False)
            row[f"{name}_fwdbwd_ms"] = _graph_ms(lambda: torch.autograd.grad(fn(), (x, w, b), dy), grad=True)
        row["fwd_GBps_triton"] = tokens * c * (4 + 2) / row["triton_fwd_ms"] / 1e6  # read f32, write bf16
        rows.append(row)
        log(row)
        del x, w, b, dy
        free()
    RESULTS["norm"] = rows
    log("\n## LayerNorm, float32 in, bf16 out (ms; speed-up = torch / triton)")
    log("| tokens x C | torch fwd | triton fwd | speed-up | triton GB/s | torch fwd+bwd | triton fwd+bwd | speed-up |")
    log("|---|---|---|---|---|---|---|---|")
    for r in rows:
        log(f"| {r['tokens']} x {r['C']} | {r['torch_fwd_ms']:.3f} | {r['triton_fwd_ms']:.3f} | "
            f"{r['torch_fwd_ms'] / r['triton_fwd_ms']:.2f}x | {r['fwd_GBps_triton']:.0f} | {r['torch_fwdbwd_ms']:.3f} | "
            f"{r['triton_fwdbwd_ms']:.3f} | {r['torch_fwdbwd_ms'] / r['triton_fwdbwd_ms']:.2f}x |")


def sec_frontend(args):
    m = audiomamba.create_model("audiomamba_nano").cuda().eval()
    wave = torch.randn(args.batch, 320000, device="cuda")
    with torch.no_grad():
        ms, _ = cuda_time(lambda: m.spectrogram(wave), iters=10)
    RESULTS["frontend"] = {"batch": args.batch, "ms": ms}
    log(f"\nfront end (log-mel + BatchNorm), batch {args.batch} x 10 s: {ms:.2f} ms")
    del m
    free()


def sec_length(args):
    rows = []
    for name, layout in [("audiomamba_tiny_v2", "native"), ("audiomamba_tiny", "native"), ("vit_b_ast_like", None)]:
        m, fn = build(name, layout)
        m = m.cuda().eval()
        for secs in [10, 60, 300, 600]:
            frames = secs * 100 + 1
            row = {"model": name, "layout": layout, "seconds": secs, "frames": frames}
            spec = torch.randn(1, frames, 64, device="cuda")

            def inf():
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    fn(spec)

            try:
                ms, _ = cuda_time(inf, warmup=2, iters=5)
                row["ms"] = ms
                row["clips_s"] = 1e3 / ms
                row["peak_GiB"] = peak_mem(inf)
            except torch.OutOfMemoryError:
                row["error"] = "OOM"
            free()
            rows.append(row)
            log(row)
        del m
        free()
    RESULTS["length"] = rows
    log("\n## length scaling, batch 1, bf16 (native layout for Audio Mamba; ViT on 12 x (T-16)/10 tokens)")
    log("| model | audio | ms | clips/s | peak GiB |")
    log("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            log(f"| {r['model']} | {r['seconds']} s | {r['error']} | | |")
        else:
            log(f"| {r['model']} | {r['seconds']} s | {r['ms']:.1f} | {r['clips_s']:.1f} | {r['peak_GiB']:.2f} |")


def _graphed(fn, spec):
    static = spec.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        for _ in range(3):
            fn(static)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        out = fn(static)
    g.replay()  # the captured output holds values only after a replay
    torch.cuda.synchronize()
    return g, static, out


def sec_latency(args):
    rows = []
    for name, layout in [("audiomamba_tiny_v2", "fold"), ("audiomamba_tiny_v2", "native"),
                         ("audiomamba_tiny", "fold"), ("audiomamba_nano", "fold"),
                         ("swin_t_htsat_like", None), ("vit_b_ast_like", None)]:
        m, fn = build(name, layout)
        m = m.cuda().eval()
        spec = torch.randn(1, FRAMES_10S, 64, device="cuda")
        row = {"model": name, "layout": layout}

        def inf():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                fn(spec)

        row["eager_ms"], _ = cuda_time(inf, warmup=5, iters=30)
        try:
            g, static, out = _graphed(fn, spec)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                ref = fn(static)
            row["graph_rel_err"] = float((out.float() - ref.float()).norm() / ref.float().norm())
            row["graph_ms"], _ = cuda_time(g.replay, warmup=5, iters=50)
            del g
        except Exception as exc:  # noqa: BLE001 - report, keep going
            row["graph_error"] = repr(exc)[:300]
        rows.append(row)
        log(row)
        del m
        free()
    RESULTS["latency"] = rows
    log("\n## batch-1 latency, 10 s clip, bf16")
    log("| model | layout | eager ms | CUDA graph ms |")
    log("|---|---|---|---|")
    for r in rows:
        gm = r.get("graph_ms")
        gms = "-" if gm is None else "%.2f" % gm
        log(f"| {r['model']} | {r['layout'] or '-'} | {r['eager_ms']:.2f} | {gms} |")


def plot(path):
    """One panel per section present in RESULTS: models (every mode, inference and training), length, kernel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("models", "length", "kernel") if RESULTS.get(k)]
    if not panels:
        return
    widths = {"models": 2.2, "length": 1.0, "kernel": 1.0}
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(6 * widths[p] for p in panels), 5), squeeze=False,
                             gridspec_kw={"width_ratios": [widths[p] for p in panels]})
    for ax, panel in zip(axes[0], panels):
        if panel == "models":
            rows = [r for r in RESULTS["models"] if "error" not in r]
            names = [r["model"].replace("audiomamba_", "am_").replace("_htsat_like", "").replace("_ast_like", "")
                     .replace("_panns_like", "") for r in rows]
            cols = [(k, m) for k in ("infer", "train") for m in INFER_MODES]
            w = 0.8 / len(cols)
            for i, (k, mode) in enumerate(cols):
                xs = [x - 0.4 + (i + 0.5) * w for x in range(len(rows))]
                ax.bar(xs, [r.get(f"{k}_{mode}_clips_s", 0) for r in rows], w,
                       label=f"{'inference' if k == 'infer' else 'training'}, {MODE_NAMES[mode]}",
                       color=plt.cm.Blues(0.35 + 0.17 * i) if k == "infer" else plt.cm.Oranges(0.35 + 0.17 * (i - 4)))
            ax.set_xticks(list(range(len(rows))), names, rotation=20, ha="right")
            ax.set_ylabel("clips/s (10 s, batch 64, bf16)")
            ax.set_title("every model in every mode")
            ax.legend(fontsize=7, ncol=2)
        elif panel == "length":
            for name in sorted({r["model"] for r in RESULTS["length"]}):
                pts = [(r["seconds"], r["ms"]) for r in RESULTS["length"] if r["model"] == name and "ms" in r]
                ax.loglog(*zip(*pts), "o-", label=name)
            ax.set_xlabel("audio seconds (batch 1)")
            ax.set_ylabel("ms per clip")
            ax.legend()
        else:
            rows = RESULTS["kernel"]
            xs = range(len(rows))
            ax.bar(list(xs), [r["triton_fwd_TBps"] for r in rows])
            if "ceilings" in RESULTS:
                ax.axhline(RESULTS["ceilings"]["copy_TBps"], color="k", ls="--", label="device copy")
                ax.axhline(RESULTS["ceilings"]["copy_TBps"] / 2, color="r", ls=":", label="50% target")
            ax.set_xticks(list(xs), [r["case"].split(" (")[0] for r in rows], rotation=30, ha="right")
            ax.set_ylabel("scan fwd TB/s (bytes it must move)")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sections", default="ceil,kernel,check,models,profile,frontend,length,latency")
    ap.add_argument("--models", default=",".join(AM_MODELS + PEERS),
                    help="models section: models to time (comma-separated)")
    ap.add_argument("--compile-models", default="all", help="models section: the models also timed under "
                    "torch.compile and compile 'reduce-overhead' ('all', or comma-separated names)")
    ap.add_argument("--infer-modes", default=",".join(INFER_MODES), help="models section: inference modes to time")
    ap.add_argument("--train-modes", default=",".join(TRAIN_MODES), help="models section: training modes to time")
    ap.add_argument("--budget-s", type=float, default=0, help="models section: skip compiled modes once this many "
                    "seconds have passed (0: no limit)")
    ap.add_argument("--warm-jobs", type=int, default=0, help="models section: compile every compiled mode in "
                    "this many processes side by side before timing (0: compile while timing, one at a time)")
    ap.add_argument("--warm-timeout-s", type=float, default=420, help="models section: a warm-up unit's time limit")
    ap.add_argument("--resume", default=None, help="models section: an earlier bench_gpu.json whose measured modes "
                    "are kept (only the missing ones are timed)")
    ap.add_argument("--warm-one", default=None, help=argparse.SUPPRESS)  # a warm-up unit (--warm-jobs)
    ap.add_argument("--plot", default=None, metavar="JSON", help="only draw the plot of an earlier bench_gpu.json "
                    "(into --out)")
    ap.add_argument("--segments", type=int, default=None, help="set the scan forward's segments per stream "
                    "(ops.ScanConfig.segments; 0: its rule, ops.plan_segments); default: the config's own setting")
    args = ap.parse_args()
    import contextlib

    from audiomamba import ops

    knobs = contextlib.ExitStack()  # scan knobs for the whole run (never closed: the process ends with it)
    if args.segments is not None:
        knobs.enter_context(ops.scan_config(segments=args.segments or None))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    if args.warm_one:
        return _warm_one(args)
    os.makedirs(args.out, exist_ok=True)
    if args.plot:
        with open(args.plot) as f:
            RESULTS.update(json.load(f))
        return plot(os.path.join(args.out, "bench_gpu.png"))
    RESULTS["meta"] = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "triton": __import__("triton").__version__, "date": datetime.date.today().isoformat(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "host": platform.node(),
        "audiomamba_from": os.path.dirname(audiomamba.__file__),
        "scan_segments": ops.get_scan_config().segments,
    }
    log(RESULTS["meta"])
    for sec in args.sections.split(","):
        t0 = time.time()
        try:
            globals()[f"sec_{sec}"](args)
        except Exception as exc:  # noqa: BLE001 - keep the other sections
            import traceback

            traceback.print_exc()
            RESULTS.setdefault("errors", {})[sec] = repr(exc)[:500]
        log(f"[{sec}: {time.time() - t0:.0f} s]")
        _save(args)
    try:
        plot(os.path.join(args.out, "bench_gpu.png"))
    except Exception as exc:  # noqa: BLE001
        log("plot failed:", exc)


if __name__ == "__main__":
    main()
