"""GPU benchmarks: scan kernel, models at 10 s, LayerNorm, the tagger end to end, length scaling, batch-1 latency.

The sections reproduce the GPU tables of docs/benchmarks.md (bench/README.md says which section gives which table).

One command prints a table per section and writes JSON + a PNG plot::

    PYTHONPATH=src python3 bench/bench_gpu.py --out results/   [--sections ceil,kernel,check,models,norm,frontend,tagger,length,latency]

Everything is timed with CUDA events after warm-up (median of the repeats); inputs are random, never zeros.
Models are timed from the log-mel spectrogram ``(B, frames, 64)`` to clip logits (the mel front end, the same
for every model, is timed on its own in the ``frontend`` section); bf16 autocast; random weights.
Peers, built here with the same front end:

- HTS-AT-like Swin-T: timm ``swin_tiny_patch4_window7_224`` with ``img_size=256, window_size=8, in_chans=1``
  on the same folded 256 x 256 image Audio Mamba's fold layout sees;
- AST-like ViT-B/16: 12 timm ``Block``s (dim 768, 12 heads, fused SDPA attention) on 16 x 16 patches with
  stride 10 of the spectrogram resized to 128 mel x 1024 frames: 12 x 101 = 1212 tokens (AST's count);
  for long inputs the time axis is not resized: 12 x ((frames - 16) // 10 + 1) tokens.
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

import torch
import torch.nn.functional as F
from torch import nn

# audiomamba is imported from PYTHONPATH / the installed package, never from a path fixed here: A/B runs
# (bench/dev/ab_models.sh) point PYTHONPATH at different source trees, and the JSON records which one ran.
import audiomamba
from audiomamba.models.audiomamba import AudioMamba
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


# ------------------------------------------------------------------------------------------ peers


class ASTLikeViT(nn.Module):
    """AST-like ViT-B/16: patch conv 16x16 stride 10 on (B, 1, 128, T), cls token, learned positions (sized
    for the input, interpolated along time when longer), 12 timm Blocks, mean of cls, linear head."""

    def __init__(self, num_classes=527, dim=768, depth=12, heads=12, max_tokens=1212):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.patch = nn.Conv2d(1, dim, 16, stride=10)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 12, 101, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, 4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    @staticmethod
    def image(spec, resize_time=True):
        """(B, T, 64) -> (B, 1, 128, 1024) (AST's input size) or (B, 1, 128, T) for long inputs."""
        x = spec.transpose(1, 2).unsqueeze(1)
        size = (128, 1024) if resize_time else (128, x.shape[-1])
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, img):
        x = self.patch(img)  # (B, D, 12, Tp)
        b, d, f, t = x.shape
        pos = self.pos if t == self.pos.shape[2] else F.interpolate(
            self.pos.permute(0, 3, 1, 2), size=(f, t), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        x = x.permute(0, 2, 3, 1) + pos
        x = torch.cat([self.cls.expand(b, -1, -1), x.reshape(b, f * t, d)], dim=1)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def make_swin():
    import timm

    return timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=256, window_size=8, in_chans=1, num_classes=527
    )


def build(name, layout="fold"):
    """(module, fn(spec) -> logits) for a model name."""
    if name == "swin_t_htsat_like":
        m = make_swin()
        return m, lambda spec: m(AudioMamba.fold(spec))
    if name == "vit_b_ast_like":
        m = ASTLikeViT()
        return m, lambda spec: m(ASTLikeViT.image(spec, resize_time=spec.shape[1] <= 1024))
    m = audiomamba.create_model(name, layout=layout)
    return m, lambda spec: m.forward_head(*m.forward_features(spec), spec.shape[1]).logits


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


def sec_models(args):
    batch = args.batch
    rows = []
    names = [n for n in args.models.split(",") if n]
    compiled = [n for n in args.compile.split(",") if n]
    for name, comp in [(n, False) for n in names] + [(n, True) for n in compiled]:
        row = {"model": name + (" +compile" if comp else ""), "batch": batch}
        try:
            m, fn = build(name)
            m = m.cuda()
            if comp:  # inductor fuses the elementwise / norm / layout work; the scan stays one custom op
                fn = torch.compile(fn)
            row["params_M"] = sum(p.numel() for p in m.parameters()) / 1e6
            spec = torch.randn(batch, FRAMES_10S, 64, device="cuda")
            m.eval()

            def inf():
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    fn(spec)

            t0 = time.perf_counter()
            inf()
            torch.cuda.synchronize()
            row["first_call_s"] = time.perf_counter() - t0
            ms, _ = cuda_time(inf, warmup=3, iters=10)
            row["infer_ms"] = ms
            row["infer_clips_s"] = batch / ms * 1e3
            row["infer_peak_GiB"] = peak_mem(inf)
            if not comp:  # the same forward replayed from a CUDA graph: device time without Python's launch cost
                try:
                    g, _, _ = _graphed(fn, spec)
                    row["graph_ms"], _ = cuda_time(g.replay, warmup=3, iters=20)
                    row["graph_clips_s"] = batch / row["graph_ms"] * 1e3
                    del g
                except Exception as exc:  # noqa: BLE001 (a model the graph cannot capture: record and go on)
                    row["graph_error"] = repr(exc)[:200]
            m.train()
            target = torch.rand(batch, 527, device="cuda")
            opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
            ms, _ = cuda_time(lambda: _train_step(m, fn, spec, target, opt), warmup=3, iters=8)
            row["train_ms"] = ms
            row["train_clips_s"] = batch / ms * 1e3
            row["train_peak_GiB"] = peak_mem(lambda: _train_step(m, fn, spec, target, opt))
            if not comp:
                try:
                    free()
                    step = _graphed_train_step(m, fn, spec, target, opt)
                    row["train_graph_ms"], _ = cuda_time(step, warmup=3, iters=10)
                    row["train_graph_clips_s"] = batch / row["train_graph_ms"] * 1e3
                    # the graph's activations live in its private memory pool, which the allocated-memory peak
                    # does not see: the footprint is what the allocator holds with the graph alive
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    row["train_graph_reserved_GiB"] = torch.cuda.memory_reserved() / 2**30
                    del step
                except Exception as exc:  # noqa: BLE001 (record and go on)
                    row["train_graph_error"] = repr(exc)[:200]
            del m, opt
        except torch.OutOfMemoryError as exc:
            row["error"] = f"OOM: {exc}"[:200]
        free()
        rows.append(row)
        log(row)
    RESULTS["models"] = rows
    log(f"\n## models, 10 s clips, batch {batch}, bf16 autocast (spectrogram -> logits)")
    log("| model | params M | inference clips/s | ms/batch | CUDA graph clips/s | peak GiB | train step clips/s | ms/step "
        "| peak GiB | train, CUDA graph clips/s (GiB held) |")
    log("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            log(f"| {r['model']} | {r['error']} |")
            continue
        graph = f"{r['graph_clips_s']:.0f}" if "graph_clips_s" in r else "-"
        tgraph = (f"{r['train_graph_clips_s']:.0f} ({r['train_graph_reserved_GiB']:.2f} GiB)"
                  if "train_graph_clips_s" in r else "-")
        log(f"| {r['model']} | {r['params_M']:.1f} | {r['infer_clips_s']:.0f} | {r['infer_ms']:.1f} | {graph} | "
            f"{r['infer_peak_GiB']:.2f} | {r['train_clips_s']:.0f} | {r['train_ms']:.1f} | {r['train_peak_GiB']:.2f} | "
            f"{tgraph} |")


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


def sec_tagger(args):
    """End to end, as a user runs it: ``Tagger.tag_files`` on 10 s wav files (decode in 4 DataLoader workers,
    log-mel on the GPU, backbone + head under bf16), eagerly and with ``cuda_graph=True``; tiny_v2, fold layout,
    windows of 10.24 s (one per 10 s clip, HTS-AT's convention)."""
    import cProfile
    import pstats
    import tempfile

    import numpy as np
    import soundfile as sf

    n_files, rows = 4 * args.batch, []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(n_files):
            paths.append(os.path.join(tmp, f"clip{i:04d}.wav"))
            sf.write(paths[-1], (0.1 * rng.standard_normal(320000)).astype(np.float32), 32000)
        model = audiomamba.create_model("audiomamba_tiny_v2").cuda().eval()
        for graph in (False, True):
            tagger = audiomamba.Tagger(model, dtype="bfloat16", window_s=10.24, hop_s=5.12, batch_size=args.batch,
                                       cuda_graph=graph)
            list(tagger.tag_files(paths[: 2 * args.batch], num_workers=4))  # warm-up: compile, and capture
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = list(tagger.tag_files(paths, num_workers=4))
            wall = time.perf_counter() - t0
            assert all(isinstance(o, audiomamba.TagResult) for o in out), out[:3]
            rows.append({"cuda_graph": graph, "files": n_files, "batch": args.batch, "wall_s": wall,
                         "clips_s": n_files / wall})
            log(rows[-1])
            prof = cProfile.Profile()  # where the host's time goes (waiting on the decoding workers included)
            prof.enable()
            list(tagger.tag_files(paths, num_workers=4))
            prof.disable()
            with open(os.path.join(args.out, f"tagger_profile_graph{int(graph)}.txt"), "w") as f:
                pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(40)
        del model, tagger
    free()
    RESULTS["tagger"] = rows
    log(f"\n## Tagger.tag_files, {n_files} x 10 s wav files, batch {args.batch}, bf16, tiny_v2")
    log("| path | clips/s | wall s |")
    log("|---|---|---|")
    for r in rows:
        log(f"| {'cuda_graph=True' if r['cuda_graph'] else 'eager'} | {r['clips_s']:.0f} | {r['wall_s']:.2f} |")


def sec_length(args):
    rows = []
    for name, layout in [("audiomamba_tiny_v2", "native"), ("audiomamba_tiny", "native"), ("vit_b_ast_like", None)]:
        m, fn = build(name, layout or "fold")
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
        m, fn = build(name, layout or "fold")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    if "models" in RESULTS:
        rows = [r for r in RESULTS["models"] if "error" not in r]
        names = [r["model"].replace("audiomamba_", "am_") for r in rows]
        xs = range(len(rows))
        axes[0].bar([x - 0.2 for x in xs], [r["infer_clips_s"] for r in rows], 0.4, label="inference")
        axes[0].bar([x + 0.2 for x in xs], [r["train_clips_s"] for r in rows], 0.4, label="train step")
        axes[0].set_xticks(list(xs), names, rotation=30, ha="right")
        axes[0].set_ylabel("clips/s (10 s, batch 64, bf16)")
        axes[0].legend()
    if "length" in RESULTS:
        for name in sorted({r["model"] for r in RESULTS["length"]}):
            pts = [(r["seconds"], r["ms"]) for r in RESULTS["length"] if r["model"] == name and "ms" in r]
            axes[1].loglog(*zip(*pts), "o-", label=name)
        axes[1].set_xlabel("audio seconds (batch 1)")
        axes[1].set_ylabel("ms per clip")
        axes[1].legend()
    if "kernel" in RESULTS:
        rows = RESULTS["kernel"]
        xs = range(len(rows))
        axes[2].bar(list(xs), [r["triton_fwd_TBps"] for r in rows])
        if "ceilings" in RESULTS:
            axes[2].axhline(RESULTS["ceilings"]["copy_TBps"], color="k", ls="--", label="device copy")
            axes[2].axhline(RESULTS["ceilings"]["copy_TBps"] / 2, color="r", ls=":", label="50% target")
        axes[2].set_xticks(list(xs), [r["case"].split(" (")[0] for r in rows], rotation=30, ha="right")
        axes[2].set_ylabel("scan fwd TB/s (bytes it must move)")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sections", default="ceil,kernel,check,models,frontend,tagger,length,latency")
    ap.add_argument("--models", default=",".join(AM_MODELS + ["swin_t_htsat_like", "vit_b_ast_like"]),
                    help="models section: eager models to time (comma-separated; empty for none)")
    ap.add_argument("--compile", default="", help="models section: also time these models under torch.compile "
                    "(comma-separated names, e.g. audiomamba_tiny_v2,swin_t_htsat_like)")
    ap.add_argument("--segments", type=int, default=None, help="set the scan forward's segments per stream "
                    "(ops.ScanConfig.segments; 0: its rule, ops.plan_segments); default: the config's own setting")
    args = ap.parse_args()
    import contextlib

    from audiomamba import ops

    knobs = contextlib.ExitStack()  # scan knobs for the whole run (never closed: the process ends with it)
    if args.segments is not None:
        knobs.enter_context(ops.scan_config(segments=args.segments or None))
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
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
        with open(os.path.join(args.out, "bench_gpu.json"), "w") as f:
            json.dump(RESULTS, f, indent=1)
    try:
        plot(os.path.join(args.out, "bench_gpu.png"))
    except Exception as exc:  # noqa: BLE001
        log("plot failed:", exc)


if __name__ == "__main__":
    main()
