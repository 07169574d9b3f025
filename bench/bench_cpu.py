"""CPU real-time factor of Audio Mamba tagging: native one pass vs windowed, 10 s clip and 10 min file.

    python bench/bench_cpu.py --threads 2 --models audiomamba_nano,audiomamba_tiny --long-minutes 10

RTF = seconds of audio / seconds of wall time (higher is faster; 30x = 10 min tagged in 20 s).  Random
weights (speed does not depend on them); 527 classes; clip-level tagging (Tagger.tag).  Windowed runs on
the long file are timed on their first ``--window-sample`` windows and extrapolated (every window costs the
same); such rows say so.  ``--profile`` also reports the share of time spent in the scan (the numba kernel on
CPU) and the time of the loop-free "blocked" scan (the export backend, ``ops.export_mode()``) on the same model for
comparison.

``--e2e`` times the end-to-end table instead (issue 16, item 5): ``audiomamba tag`` as a user runs it (a separate
process pinned to ``--threads`` cores, model load and decoding included) on ``--clips`` ten-second 32 kHz WAV
files and on one ``--long-minutes`` file, in-process ``Tagger.tag_files`` on the same files, and ONNX Runtime on
the exported model (``export_onnx``: waveform in, scores out; decoding included; the long file as 10.23 s windows
every 5.12 s, the tagger's default plan, batched ``--batch`` at a time).  Other processes on the machine slow
every row: the JSON records the load average at start and end.  ``--quick``: 4 clips, a 1-minute file, nano.

    python bench/bench_cpu.py --e2e --threads 2 --models audiomamba_nano,audiomamba_micro_v2 --json cpu_e2e.json
    python bench/bench_cpu.py --e2e --quick

A model is a registry name, optionally with constructor arguments, each after a colon:
``audiomamba_micro_v2:step_frames=8`` (the shipped tagger's finer time steps), ``name:key=value:key=value``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import audiomamba
from audiomamba import Tagger
import sys
from audiomamba.models import vmamba



def _start(machine: str):
    """Print the machine line; returns (load average at start, the rows list, report(row): append and print)."""
    load_start = os.getloadavg()
    print(f"# {machine}, load average {load_start[0]:.2f}", flush=True)
    rows: list[dict] = []

    def report(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    return load_start, rows, report

def build(spec: str) -> torch.nn.Module:
    """``name`` or ``name:key=value:key=value`` -> that registered model with 527 classes, random weights, eval
    (``:``, not ``,``, joins the arguments: ``--models`` is a comma-separated list)."""
    import yaml

    name, *pairs = spec.split(":")
    kwargs = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in pairs)}
    return audiomamba.create_model(name, num_classes=527, **kwargs).eval()


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class ScanTimer:
    """Wraps SS2D's scan (``cross_selective_scan``: the numba kernel of CPU inference, or whichever backend
    runs it) and sums its wall time."""

    def __init__(self) -> None:
        self.total = 0.0
        self._orig = [(vmamba, "cross_selective_scan")]
        self._orig = [(mod, name, getattr(mod, name)) for mod, name in self._orig]

    def __enter__(self):
        def timed_call(fn):
            def wrapped(*a, **k):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    self.total += time.perf_counter() - t0

            return wrapped

        for mod, name, fn in self._orig:
            setattr(mod, name, timed_call(fn))
        return self

    def __exit__(self, *exc):
        for mod, name, fn in self._orig:
            setattr(mod, name, fn)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="audiomamba_nano,audiomamba_tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--window-sample", type=int, default=4, help="windows timed on the long file (extrapolated)")
    p.add_argument("--skip-long-native", default="", help="comma list of models whose long native run is skipped")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--e2e", action="store_true", help="the end-to-end table: audiomamba tag vs ONNX Runtime")
    p.add_argument("--clips", type=int, default=32, help="--e2e: ten-second files")
    p.add_argument("--batch", type=int, default=4, help="--e2e: batch size of tag and of ONNX Runtime")
    p.add_argument("--workers", type=int, default=1, help="--e2e: decoding workers of tag")
    p.add_argument("--quick", action="store_true", help="--e2e: 4 clips, a 1-minute file, audiomamba_nano")
    args = p.parse_args()
    if args.e2e:
        return end_to_end(args)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sr = 32000
    rng = np.random.default_rng(0)
    short = (rng.standard_normal(10 * sr) * 0.1).astype(np.float32)
    long_s = args.long_minutes * 60
    longw = (rng.standard_normal(int(long_s * sr)) * 0.1).astype(np.float32)
    machine = (f"{_cpu_model()} ({platform.machine()}), {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, "
               f"numba {numba_version()}, threads {torch.get_num_threads()}")
    load_start, rows, report = _start(machine)

    for name in args.models.split(","):
        torch.manual_seed(0)
        model = build(name)
        native = Tagger(model, mode="native", chunk_s=max(600.0, long_s + 1))
        windowed = Tagger(model, mode="windowed", window_s=10.0, hop_s=10.0)  # non-overlapping 10 s windows
        windowed_hts = Tagger(model, mode="windowed", window_s=10.0, hop_s=5.0)  # HTS-AT/AST-style overlap
        native.tag(short[: 2 * sr], sample_rate=sr)  # warm-up
        for label, t in (("native", native), ("windowed", windowed)):
            with ScanTimer() as st:
                sec = timed(lambda: t.tag(short, sample_rate=sr), repeats=2)
            report({"model": name, "audio_s": 10, "mode": label, "wall_s": round(sec, 3), "rtf": round(10 / sec, 2),
                    "scan_share": round(st.total / 2 / sec, 2) if args.profile else None})
        if name not in args.skip_long_native.split(","):
            with ScanTimer() as st:
                sec = timed(lambda: native.tag(longw, sample_rate=sr))
            report({"model": name, "audio_s": long_s, "mode": "native one pass", "wall_s": round(sec, 2),
                    "rtf": round(long_s / sec, 2), "scan_share": round(st.total / sec, 2) if args.profile else None})
        for label, t, hop in (("windowed 10 s / hop 10 s", windowed, 10.0), ("windowed 10 s / hop 5 s", windowed_hts, 5.0)):
            n = args.window_sample
            part = longw[: int((10.0 + (n - 1) * hop) * sr)]
            sec = timed(lambda: t.tag(part, sample_rate=sr))
            total_windows = int(np.ceil((long_s - 10.0) / hop)) + 1
            est = sec / n * total_windows
            report({"model": name, "audio_s": long_s, "mode": label, "wall_s": round(est, 1), "rtf": round(long_s / est, 2),
                    "note": f"extrapolated from {n} windows ({sec:.1f} s)"})
        if args.profile:
            from audiomamba.inference.export import export_mode

            with export_mode():
                sec = timed(lambda: native.tag(short, sample_rate=sr), repeats=2)
            report({"model": name, "audio_s": 10, "mode": "native, blocked scan (export backend)", "wall_s": round(sec, 3), "rtf": round(10 / sec, 2)})
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "command": "python " + " ".join(sys.argv), "machine": machine,
                "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)}}
        with open(args.json, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)


def end_to_end(args) -> None:
    """``audiomamba tag`` (CLI process), ``Tagger.tag_files`` and ONNX Runtime on 10 s clips and a long file."""
    import shutil
    import subprocess
    import tempfile

    import soundfile as sf

    from audiomamba.inference.export import export_onnx

    if args.quick:
        args.clips, args.long_minutes, args.models = min(args.clips, 4), min(args.long_minutes, 1.0), "audiomamba_nano"
    threads, sr = args.threads, 32000
    torch.set_num_threads(threads)
    cores = sorted(os.sched_getaffinity(0))[:threads]
    pin = ["taskset", "-c", ",".join(map(str, cores))] if shutil.which("taskset") else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    machine = (f"{_cpu_model()} ({platform.machine()}), {threads} of {len(os.sched_getaffinity(0))} cores, "
               f"torch {torch.__version__}, numba {numba_version()}, onnxruntime {_ort_version()}")
    load_start, rows, report = _start(machine)

    tmp = tempfile.mkdtemp(prefix="bench_cpu_e2e_")
    try:
        rng = np.random.default_rng(0)
        clip_dir = os.path.join(tmp, "clips")
        os.makedirs(clip_dir)
        clips = []
        for i in range(args.clips):
            clips.append(os.path.join(clip_dir, f"clip{i:04d}.wav"))
            sf.write(clips[-1], (0.1 * rng.standard_normal(10 * sr)).astype(np.float32), sr, subtype="PCM_16")
        long_s = args.long_minutes * 60
        long_path = os.path.join(tmp, "long.wav")
        sf.write(long_path, (0.1 * rng.standard_normal(int(long_s * sr))).astype(np.float32), sr, subtype="PCM_16")
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = build(name)
            ckpt = audiomamba.save_model(model, os.path.join(tmp, "model.safetensors"))
            runs = (("one 10 s clip (mostly start-up: imports, model load, first-call compilation)", [clips[0]], 10.0),
                    ("10 s clips", [clip_dir], 10.0 * args.clips), ("long file", [long_path], long_s))
            for what, paths, audio_s in runs:
                cmd = [sys.executable, "-m", "audiomamba", "tag", *paths, "-c", str(ckpt), "--device", "cpu",
                       "-b", str(args.batch), "--workers", str(args.workers), "-f", "jsonl", "-q",
                       "-o", os.path.join(tmp, "out.jsonl")]
                t0 = time.perf_counter()
                proc = subprocess.run(pin + cmd, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise RuntimeError(f"audiomamba tag failed ({proc.returncode}): {proc.stderr[-2000:]}")
                report({"model": name, "input": what, "runtime": "audiomamba tag (CLI process, start-up included)",
                        "audio_s": audio_s, "wall_s": round(wall, 2), "rtf": round(audio_s / wall, 1),
                        "command": " ".join(pin + ["python"] + cmd[1:]).replace(tmp, "$TMP")})
            tagger = Tagger(model, batch_size=args.batch)
            list(tagger.tag_files(clips[:1]))
            for what, paths, audio_s in (("10 s clips", clips, 10.0 * args.clips), ("long file", [long_path], long_s)):
                t0 = time.perf_counter()
                out = list(tagger.tag_files(paths, num_workers=args.workers))
                wall = time.perf_counter() - t0
                assert all(isinstance(o, audiomamba.TagResult) for o in out)
                report({"model": name, "input": what, "runtime": "Tagger.tag_files (in process, model loaded)",
                        "audio_s": audio_s, "wall_s": round(wall, 2), "rtf": round(audio_s / wall, 1)})
            for what, audio_s in (("10 s clips", 10.0 * args.clips), ("long file", long_s)):
                wall, note = _ort_run(model, tmp, name, clips if what == "10 s clips" else long_path, threads, args.batch,
                                      export_onnx)
                report({"model": name, "input": what, "runtime": "ONNX Runtime (exported model, decoding included)",
                        "audio_s": audio_s, "wall_s": round(wall, 2), "rtf": round(audio_s / wall, 1), "note": note})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()
    note = ("other processes share these cores when the load average exceeds the thread count; re-run at a quiet "
            "moment for figures to publish")
    print(f"# load average {load_start[0]:.2f} -> {load_end[0]:.2f}: {note}")
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": "python " + " ".join(sys.argv),
                "machine": machine, "threads": threads,
                "load_average_1min": {"start": round(load_start[0], 2), "end": round(load_end[0], 2)}, "load_note": note}
        with open(args.json, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)


def _ort_run(model, tmp: str, name: str, source, threads: int, batch: int, export_onnx) -> tuple[float, str]:
    """Wall time of ONNX Runtime scoring ``source`` (a list of 10 s clips, or one long file cut into 10.23 s
    windows every 5.12 s, scores averaged), decoding included; the export is not timed."""
    import onnxruntime as ort

    from audiomamba.audio import load_audio

    long_file = isinstance(source, str)
    seconds = 1023 * 320 / 32000 if long_file else 10.0  # 1024 frames: one fold-layout window
    path = os.path.join(tmp, f"{name}_{seconds:.2f}.onnx")
    export_onnx(model, path, seconds=seconds, verify=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    samples = int(round(seconds * 32000))
    sess.run(None, {"waveform": np.zeros((1, samples), np.float32)})  # warm-up
    t0 = time.perf_counter()
    if long_file:
        wave, _ = load_audio(source, 32000)
        hop = 512 * 320
        starts = list(range(0, max(1, wave.size - samples), hop)) + [max(0, wave.size - samples)]
        scores = []
        for b0 in range(0, len(starts), batch):
            x = np.stack([np.pad(wave[s : s + samples], (0, max(0, s + samples - wave.size))) for s in starts[b0 : b0 + batch]])
            scores.append(sess.run(None, {"waveform": x})[0])
        np.concatenate(scores).mean(0)
        note = f"{len(starts)} windows of {seconds:.2f} s, hop 5.12 s, batch {batch}"
    else:
        for b0 in range(0, len(source), batch):
            x = np.stack([load_audio(p, 32000)[0] for p in source[b0 : b0 + batch]])
            sess.run(None, {"waveform": x})
        note = f"batch {batch}"
    return time.perf_counter() - t0, note


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "absent"
    return onnxruntime.__version__


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def numba_version() -> str:
    try:
        import numba
    except ImportError:
        return "absent"
    return numba.__version__


if __name__ == "__main__":
    main()
