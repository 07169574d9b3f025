"""Tagging end to end: ``Tagger.tag_files`` (files in, tags out) against the model's own speed, per file format.

Writes ``--files`` ten-second files in a temporary folder for each format (32 kHz mono WAV, 44.1 kHz stereo WAV,
44.1 kHz stereo FLAC; 16-bit PCM, written with soundfile), builds a random-weight tagger (speed does not depend
on the weights), and times:

- **model**: the model's own clips/s, pieces already on the device as a batch of ``--batch`` log-mel spectrograms
  (1001 frames, what a 10 s clip gives), from CUDA graphs on CUDA (warm), eagerly otherwise; and the same from
  waveforms on the device (front end included);
- **tag_files**: clips/s of ``list(tagger.tag_files(paths, num_workers=W))`` for each worker count and format,
  after a warm-up run over the first two batches (graphs captured, page cache warm), and its ratio to the model's
  own; also the steady state (the results after the first two batches: no worker start-up, no first-batch latency); with ``--resample both``, 44.1 kHz files are timed resampled on the device and by soxr in the workers;
- **decode**: milliseconds one worker spends per file (decode, checks, soxr when the workers resample), timed in
  the main process; ``workers * 1000 / ms`` is the clips/s decoding alone allows (the ceiling when it is the
  bottleneck, e.g. libsndfile's FLAC decoder).

Targets (issue 16): >= 0.5x the model on 32 kHz mono WAV, >= 0.35x on 44.1 kHz stereo WAV/FLAC, on a 16-core
GPU machine.  ``--profile`` runs one more tag_files pass under cProfile and prints where the main process's time
goes (the workers are not profiled; their decode time shows as waiting on the loader).

    PYTHONPATH=src python3 bench/bench_tag_files.py --device cuda --files 1024 --workers 0,8,15 --json tag_files.json
    PYTHONPATH=src python3 bench/bench_tag_files.py --device cpu --model audiomamba_nano --files 16 --batch 8 --workers 0,2
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

import audiomamba
from audiomamba import Tagger

FORMATS = {  # name -> (sample rate, channels, extension)
    "wav_32k_mono": (32000, 1, "wav"),
    "wav_44k_stereo": (44100, 2, "wav"),
    "flac_44k_stereo": (44100, 2, "flac"),
}


def write_files(folder: str, fmt: str, n: int, seconds: float, seed: int = 0) -> list[str]:
    """``n`` files of ``seconds`` of noise with a few tones (16-bit PCM); a handful of distinct contents cycled."""
    sr, ch, ext = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    bases = []
    for k in range(8):
        x = 0.05 * rng.standard_normal((t.size, ch)) + 0.2 * np.sin(2 * np.pi * (220 * (k + 1)) * t)[:, None]
        bases.append(np.clip(x, -1, 1).astype(np.float32))
    os.makedirs(os.path.join(folder, fmt), exist_ok=True)
    paths = []
    for i in range(n):
        p = os.path.join(folder, fmt, f"clip{i:05d}.{ext}")
        sf.write(p, bases[i % len(bases)], sr, subtype="PCM_16")
        paths.append(p)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_clips_per_s(tagger: Tagger, batch: int, seconds: float, min_time: float, from_waves: bool) -> float:
    """The model's own speed: a batch already on the device (spectrogram pieces, or waveforms when
    ``from_waves``), warm, timed over at least ``min_time`` seconds."""
    dev = tagger.device
    samples = int(round(seconds * tagger.sample_rate))
    waves = 0.1 * torch.randn(batch, samples, device=dev)
    specs = tagger._spectrogram(waves)

    def once():
        with torch.inference_mode():
            x = tagger._spectrogram(waves) if from_waves else specs
            if tagger.cuda_graphs is not None:
                return tagger.cuda_graphs(x, variant=tagger.layout)
            from audiomamba.utils.device import autocast

            with autocast(dev, tagger.dtype):
                return tagger._forward(x)

    for _ in range(3):  # eager first call, capture on the second, replay from then on
        once()
    sync(dev)
    iters, t0 = 0, time.perf_counter()
    while True:
        once()
        iters += 1
        if iters % 4 == 0 or dev.type != "cuda":
            sync(dev)
            wall = time.perf_counter() - t0
            if wall >= min_time:
                return iters * batch / wall


def time_tag_files(tagger: Tagger, paths: list[str], workers: int, batch: int, **kw) -> tuple[float, int, float | None]:
    """``(wall seconds, files, steady clips/s)`` of one ``tag_files`` pass.  The wall time includes starting the
    workers and the first batch's latency; the steady rate counts the results between the second batch and the
    next-to-last (None when there are too few files)."""
    list(tagger.tag_files(paths[: 2 * batch], num_workers=workers, **kw))  # warm: graphs, page cache
    sync(tagger.device)
    t0 = time.perf_counter()
    out, stamps = [], []
    for result in tagger.tag_files(paths, num_workers=workers, **kw):
        out.append(result)
        stamps.append(time.perf_counter())
    sync(tagger.device)
    wall = time.perf_counter() - t0
    bad = [o for o in out if not isinstance(o, audiomamba.TagResult)]
    if bad:
        raise RuntimeError(f"{len(bad)} files were not tagged, e.g. {bad[0]}")
    # results come out a batch at a time, each batch when the next one is in flight (the last one at once): the
    # steady window runs from the last result of batch 2 to the last of the next-to-last batch
    k, j = 2 * batch, len(out) - batch
    steady = (j - k) / (stamps[j - 1] - stamps[k - 1]) if j > k + batch and stamps[j - 1] > stamps[k - 1] else None
    return wall, len(out), steady


def decode_ms_per_file(tagger: Tagger, paths: list[str], on_device: bool, n: int = 32) -> float:
    """Milliseconds one worker spends per file (decode, checks, and soxr where the device does not resample),
    timed in this process: ``workers * 1000 / ms`` bounds tag_files' clips/s when decoding is the bottleneck."""
    from audiomamba.inference.tagger import _AudioFiles

    ds = _AudioFiles(paths[:n], tagger.sample_rate, tagger.model.frontend.min_samples, on_device)
    ds[0]
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return (time.perf_counter() - t0) / len(ds) * 1000


def profile_tag_files(tagger: Tagger, paths: list[str], workers: int, top: int = 30, **kw) -> str:
    prof = cProfile.Profile()
    prof.enable()
    list(tagger.tag_files(paths, num_workers=workers, **kw))
    sync(tagger.device)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="audiomamba_tiny_v2")
    ap.add_argument("--files", type=int, default=1024, help="files per format")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each file")
    ap.add_argument("--workers", default="0,4,8,15", help="DataLoader worker counts (comma-separated)")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, from " + ", ".join(FORMATS))
    ap.add_argument("--batch", type=int, default=64, help="tagger batch size (pieces per forward, files per batch)")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--no-cuda-graph", action="store_true", help="eager model on CUDA")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process")
    ap.add_argument("--model-time", type=float, default=3.0, help="seconds to time the model's own speed")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the main process's time")
    ap.add_argument("--resample", default="auto", choices=("auto", "device", "workers", "both"),
                    help="where 44.1 kHz files are resampled: auto (the tagger's default: on the device for CUDA), "
                         "device, workers (soxr), or both (a row for each)")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    formats = [f for f in args.formats.split(",") if f]
    for f in formats:
        if f not in FORMATS:
            ap.error(f"unknown format {f!r}; choose from {', '.join(FORMATS)}")
    workers = [int(w) for w in args.workers.split(",")]
    torch.manual_seed(0)
    model = audiomamba.create_model(args.model, num_classes=527).eval()
    tagger = Tagger(model, device=device, dtype=dtype, batch_size=args.batch,
                    cuda_graph=device.type == "cuda" and not args.no_cuda_graph)
    pieces = tagger.plan.pieces(model.frontend.num_frames(int(round(args.seconds * tagger.sample_rate))))
    print(f"# {args.model} on {device} ({dtype}, cuda_graph={tagger.cuda_graphs is not None}, batch {args.batch}); "
          f"{args.seconds:g} s files = {len(pieces)} piece(s) of {pieces[0].length} frames", flush=True)
    model_pieces = model_clips_per_s(tagger, args.batch, args.seconds, args.model_time, from_waves=False)
    model_waves = model_clips_per_s(tagger, args.batch, args.seconds, args.model_time, from_waves=True)
    print(f"model, pieces on the device: {model_pieces:.0f} clips/s; from waveforms on the device: {model_waves:.0f}",
          flush=True)
    rows = []
    tmp = args.tmp or tempfile.mkdtemp(prefix="bench_tag_files_")
    try:
        print("| format | resample | workers | clips/s | wall s | x model | steady clips/s | steady x model | "
              "decode ms/file (1 worker) | decode-bound clips/s |", flush=True)
        for fmt in formats:
            t0 = time.perf_counter()
            paths = write_files(tmp, fmt, args.files, args.seconds)
            written = time.perf_counter() - t0
            places = {"auto": [None], "device": [True], "workers": [False], "both": [True, False]}[args.resample]
            if FORMATS[fmt][0] == tagger.sample_rate:
                places = places[:1]
            for on_device in places:
                where = {None: "auto", True: "device", False: "workers"}[on_device]
                auto = device.type == "cuda" if on_device is None else on_device
                decode_ms = decode_ms_per_file(tagger, paths, auto)
                for w in workers:
                    wall, n, steady = time_tag_files(tagger, paths, w, args.batch, resample_on_device=on_device)
                    row = {"format": fmt, "resample": where if FORMATS[fmt][0] != tagger.sample_rate else "none",
                           "workers": w, "files": n, "wall_s": round(wall, 3), "clips_s": round(n / wall, 1),
                           "ratio_to_model": round(n / wall / model_pieces, 3),
                           "steady_clips_s": round(steady, 1) if steady else None,
                           "steady_ratio_to_model": round(steady / model_pieces, 3) if steady else None,
                           "ratio_to_model_from_waves": round(n / wall / model_waves, 3),
                           "decode_ms_per_file": round(decode_ms, 2),
                           "decode_bound_clips_s": round(max(w, 1) * 1000 / decode_ms, 1)}
                    rows.append(row)
                    st = f"{steady:.1f} | {steady / model_pieces:.2f}" if steady else "- | -"
                    print(f"| {fmt} | {row['resample']} | {w} | {row['clips_s']:.1f} | {wall:.2f} | "
                          f"{row['ratio_to_model']:.2f} | {st} | {decode_ms:.1f} | {row['decode_bound_clips_s']:.0f} |",
                          flush=True)
                if args.profile:
                    print(f"## cProfile of the main process: {fmt}, resample {where}, {workers[-1]} workers "
                          f"(files written in {written:.1f} s)")
                    print(profile_tag_files(tagger, paths, workers[-1], resample_on_device=on_device), flush=True)
            if not args.tmp:
                shutil.rmtree(os.path.join(tmp, fmt), ignore_errors=True)
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    targets = {"wav_32k_mono": 0.5, "wav_44k_stereo": 0.35, "flac_44k_stereo": 0.35}
    best = {f: max(r["ratio_to_model"] for r in rows if r["format"] == f) for f in formats}
    steady_best = {f: max([r["steady_ratio_to_model"] or 0 for r in rows if r["format"] == f]) for f in formats}
    summary = {f: {"best_ratio": best[f], "best_steady_ratio": steady_best[f], "target": targets[f],
                   "met": best[f] >= targets[f]} for f in formats}
    for f, s in summary.items():
        print(f"{f}: best {s['best_ratio']:.2f}x the model end to end, {s['best_steady_ratio']:.2f}x in the steady "
              f"state (target {s['target']}x): {'met' if s['met'] else 'missed'}")
    if args.json:
        dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
        meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "device": f"{device} ({dev_name})", "cpus": len(os.sched_getaffinity(0)), "host": platform.node(),
                "torch": torch.__version__, "python": platform.python_version(),
                "command": "python3 " + " ".join(sys.argv), "model": args.model, "dtype": str(dtype),
                "cuda_graph": tagger.cuda_graphs is not None, "batch": args.batch, "seconds": args.seconds,
                "load_average_1min": round(os.getloadavg()[0], 2)}
        out = {"meta": meta, "model_clips_s": round(model_pieces, 1), "model_from_waves_clips_s": round(model_waves, 1),
               "rows": rows, "summary": summary}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
