"""``audiomamba tag``: tag audio files (clip tags, optionally timestamped events and plots).

Every option is checked before any work (ranges, the device, that --output and --plot can be written), so
nothing fails after the files are tagged.  Exit codes (the command line's scheme, docs/errors.md):
  0  every file was tagged
  1  at least one file could not be tagged (each named on stderr); the others were tagged and written
     (--stream: the stream broke off after some lines were written)
  2  usage error: bad option or value, no input file found, missing optional dependency
  3  the checkpoint could not be loaded (missing, damaged, unsafe, config/weights mismatch, non-finite weights)
  6  --output or --plot cannot be written (a directory, permission denied, disk full)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from audiomamba.audio import is_audio_file
from audiomamba.cli import _checks as C
from audiomamba.errors import (
    EXIT_CHECKPOINT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    MissingDependencyError,
    UsageError,
    WriteError,
)

EXIT_FILE_ERRORS = EXIT_PARTIAL
__all__ = ["EXIT_OK", "EXIT_FILE_ERRORS", "EXIT_USAGE", "EXIT_CHECKPOINT", "EXIT_INTERRUPTED"]
CHECKPOINT_ENV = "AUDIOMAMBA_CHECKPOINT"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "exit codes: 0 all files tagged; 1 some files failed (named on stderr), the others were tagged; "
        "2 usage error; 3 checkpoint error; 6 cannot write --output/--plot; 70 bug; 130 interrupted (docs/errors.md)"
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="audio files or directories")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into subdirectories of directory arguments")
    p.add_argument("-c", "--checkpoint", default=os.environ.get(CHECKPOINT_ENV),
                   help=f"audiomamba .safetensors checkpoint (default: ${CHECKPOINT_ENV}, else --model)")
    p.add_argument("-m", "--model", default=None, metavar="NAME_OR_DIR",
                   help="a tagger that ships with the package (audiomamba models --pretrained), a model folder in the "
                        "Hub's layout or a Hub repo id (default: the shipped tagger)")
    p.add_argument("-k", "--top-k", type=int, default=5, help="tags per file (default 5)")
    p.add_argument("-t", "--threshold", type=float, default=None,
                   help="keep only tags scoring >= T; also the event threshold (default: the model's own, chosen on "
                        "validation data, else 0.5)")
    p.add_argument("-e", "--events", action="store_true", help="detect timestamped events (tscam-head checkpoints)")
    p.add_argument("--min-duration", type=float, default=0.0, help="drop events shorter than this (s)")
    p.add_argument("--min-gap", type=float, default=0.0, help="merge events of a class separated by less than this (s)")
    p.add_argument("--median-filter", type=float, default=0.0, help="median filter on framewise scores (s, 0 = off)")
    p.add_argument("-f", "--format", choices=("table", "json", "jsonl", "csv"), default="table",
                   help="output format (json: one array of per-file objects; jsonl: one object per line)")
    p.add_argument("-o", "--output", default=None, help="write results to FILE instead of stdout")
    p.add_argument("--plot", metavar="DIR", default=None, help="write a PNG per file: log-mel + top-class activations")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="compute dtype of the backbone")
    p.add_argument("--cuda-graph", action="store_true",
                   help="replay the model from CUDA graphs (CUDA devices; removes the host's launch cost)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="files decoded together / pieces per forward pass")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for decoding (default 0)")
    p.add_argument("--mode", choices=("auto", "native", "windowed"), default="auto",
                   help="native: one pass (or long overlapping chunks); windowed: HTS-AT/AST windows (default: from the model's layout)")
    p.add_argument("--window", type=float, default=10.24, help="windowed mode: window length (s)")
    p.add_argument("--hop", type=float, default=5.12, help="windowed mode: hop (s)")
    p.add_argument("--aggregate", choices=("mean", "max"), default="mean", help="windowed mode: how windows combine")
    p.add_argument("--chunk", type=float, default=300.0, help="native mode: longest single pass (s); longer files are chunked")
    p.add_argument("--min-input", type=float, default=None, metavar="SECONDS",
                   help="centre shorter files in silence this long (default: 2.5 for native-layout models; 0 = off)")
    p.add_argument("--shifts", type=int, default=1,
                   help="average N passes over each file, shifted by --shift-frames frames each (finer event "
                        "timing at N times the compute; the shipped tagger: 4)")
    p.add_argument("--shift-frames", type=int, default=8, help="frames (10 ms) between the --shifts passes (default 8)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no warnings")
    s = p.add_argument_group("live streams (--stream)")
    s.add_argument("--stream", nargs="?", const="-", default=None, metavar="SOURCE",
                   help="tag audio as it arrives, one JSON line per hop: '-' (default) reads standard input (a WAV "
                        "stream, or raw PCM with --raw), 'mic' or 'mic:DEVICE' a microphone (the 'stream' extra)")
    s.add_argument("--raw", default=None, metavar="ENCODING", help="raw PCM on standard input: s16le, s24le, s32le, "
                   "f32le, f64le or u8 (needs --rate)")
    s.add_argument("--rate", type=int, default=None, help="sample rate of raw PCM or of the microphone (Hz)")
    s.add_argument("--channels", type=int, default=1, help="channels of raw PCM or of the microphone (default 1)")
    s.add_argument("--stream-window", type=float, default=10.0, help="seconds of audio scored per hop (default 10)")
    s.add_argument("--stream-hop", type=float, default=1.0, help="seconds between lines (default 1)")
    s.add_argument("--lookahead", type=float, default=1.0,
                   help="right-hand context before a frame's events are decided (s, default 1)")


def tagger_options(args: argparse.Namespace) -> dict:
    """The Tagger's options from the command line."""
    return dict(device=args.device, dtype=args.dtype, mode=args.mode, window_s=args.window, hop_s=args.hop,
                aggregate=args.aggregate, chunk_s=args.chunk, batch_size=args.batch_size, cuda_graph=args.cuda_graph,
                shifts=args.shifts, shift_frames=args.shift_frames, min_input_s=args.min_input)


def load_tagger(args: argparse.Namespace, options: dict):
    """``--checkpoint`` (or ``$AUDIOMAMBA_CHECKPOINT``), else ``--model``, else the shipped tagger (with a note)."""
    from audiomamba.inference.tagger import Tagger

    if args.checkpoint:
        return Tagger.from_checkpoint(args.checkpoint, **options)
    if not args.model and not args.quiet:
        from audiomamba.models.pretrained import DEFAULT_TAGGER

        _err(f"note: no --checkpoint or --model given: using the shipped tagger {DEFAULT_TAGGER}")
    return Tagger.from_pretrained(args.model, **options)


def _load(args: argparse.Namespace):
    """The tagger of the command line.  Checkpoint problems raise CheckpointError (exit 3); the Tagger's own
    option checks (mode, window, chunk ...) become a UsageError (exit 2)."""
    from audiomamba.errors import AudiomambaError

    try:
        return load_tagger(args, tagger_options(args))
    except AudiomambaError:
        raise
    except ValueError as e:
        raise UsageError(str(e)) from None


def validate(args: argparse.Namespace) -> None:
    """Every option, before any work: ranges, the device, the stream options, --output and --plot writable."""
    if args.checkpoint and args.model:
        raise UsageError("give --checkpoint or --model, not both")
    C.number(args.top_k, "--top-k", low=1)
    C.number(args.threshold, "--threshold", low=0, high=1, allow_none=True)
    for value, option in ((args.min_duration, "--min-duration"), (args.min_gap, "--min-gap")):
        C.number(value, option, low=0)
    C.number(args.median_filter, "--median-filter", low=0, high=60)  # seconds of frames in one filter window
    C.number(args.batch_size, "--batch-size", low=1)
    C.number(args.shifts, "--shifts", low=1)
    C.number(args.shift_frames, "--shift-frames", low=1)
    C.number(args.min_input, "--min-input", low=0, high=300, allow_none=True)
    C.workers(args.workers, "--workers")
    for value, option in ((args.window, "--window"), (args.hop, "--hop"), (args.chunk, "--chunk")):
        C.number(value, option, low=0, low_open=True)
    if args.hop > args.window:
        raise UsageError(f"--hop ({args.hop:g} s) must not exceed --window ({args.window:g} s)")
    if args.min_input is not None and args.mode != "windowed" and args.min_input > args.chunk:
        raise UsageError(f"--min-input ({args.min_input:g} s) must not exceed --chunk ({args.chunk:g} s)")
    device = C.device(args.device, "--device")
    if args.cuda_graph and device.type != "cuda":
        raise UsageError(f"--cuda-graph needs a CUDA device (--device cuda), got --device {args.device}")
    if args.stream is not None:
        from audiomamba.inference import stream

        if args.paths:
            raise UsageError("--stream reads standard input or a microphone; give no PATH with it")
        if not (args.stream == "-" or args.stream == "mic" or args.stream.startswith("mic:")):
            raise UsageError(f"--stream takes '-' (standard input) or 'mic[:DEVICE]', got {args.stream!r}")
        if args.raw is not None and args.raw not in stream.ENCODINGS:
            raise UsageError(f"--raw must be one of {', '.join(stream.ENCODINGS)}, got {args.raw!r}")
        C.number(args.channels, "--channels", low=1)
        C.number(args.rate, "--rate", low=1, allow_none=True)
        C.number(args.stream_window, "--stream-window", low=0, low_open=True)
        C.number(args.stream_hop, "--stream-hop", low=0, low_open=True)
        C.number(args.lookahead, "--lookahead", low=0)
        if args.plot:
            raise UsageError("--plot does not apply to --stream")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise MissingDependencyError("--plot needs matplotlib: pip install 'audiomamba[plot]'") from None
        C.output_dir(args.plot, "--plot")
    C.output_file(args.output, "--output")


def _run_stream(args: argparse.Namespace) -> int:
    """``--stream``: JSON lines to stdout (or --output) until the stream ends or Ctrl-C."""
    from audiomamba.errors import AudioDecodeError
    from audiomamba.inference import stream

    tagger = _load(args)
    if args.stream.startswith("mic"):
        device = args.stream[4:] or None
        try:
            source = stream.Microphone(args.rate, args.channels, int(device) if device and device.isdigit() else device)
        except ImportError as e:
            raise MissingDependencyError(f"{e}: the microphone needs pip install 'audiomamba[stream]'") from None
    else:
        source = None
    try:
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    except OSError as e:
        raise WriteError(f"--output {args.output}: cannot write ({e.strerror or e})", e.errno, args.output) from None
    try:
        if source is None:
            source = stream.open_source(sys.stdin.buffer, args.raw, args.rate, args.channels)
        stream.run(tagger, source, out, window_s=args.stream_window, hop_s=args.stream_hop, top_k=args.top_k,
                   tag_threshold=args.threshold, threshold=args.threshold,
                   min_duration=args.min_duration, min_gap=args.min_gap, median_filter=args.median_filter,
                   lookahead_s=args.lookahead)
    except AudioDecodeError as e:  # the stream broke off: the lines so far were written
        _err(f"error: {e}")
        return EXIT_FILE_ERRORS
    except ValueError as e:
        if isinstance(e, UsageError) or type(e) is ValueError:
            raise UsageError(str(e)) from None
        raise
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def find_audio_files(paths: list[str], recursive: bool) -> tuple[list[str], list[str]]:
    """Expand directory arguments into audio files (sorted); files are kept as given (also nonexistent
    ones, which then fail with a clear error).  Returns (files, directories that held no audio)."""
    files: list[str] = []
    empty: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            it = path.rglob("*") if recursive else path.iterdir()
            found = sorted(str(f) for f in it if is_audio_file(f))
            if not found:
                empty.append(p)
            files.extend(found)
        else:
            files.append(p)
    return files, empty


def _err(msg: str) -> None:
    print(f"audiomamba tag: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Errors raise (audiomamba.cli.main prints the one line and picks the exit code); per-file failures are
    named here, one line each, and end in exit code 1."""
    validate(args)
    if args.stream is not None:
        return _run_stream(args)
    return _run(args)


def _finite(res) -> bool:
    """The result's scores (and event scores) are all finite numbers."""
    if not np.all(np.isfinite(np.asarray(res.scores, dtype=np.float64))):
        return False
    return all(np.isfinite(float(e.score)) for e in (res.events or []))


def _run(args: argparse.Namespace) -> int:
    from audiomamba.inference.tagger import FileError

    files, empty = find_audio_files(args.paths, args.recursive)
    for d in empty:
        _err(f"warning: {d}: directory holds no audio files{'' if args.recursive else ' (use --recursive for subdirectories)'}")
    if not files:
        raise UsageError("no audio files to tag" + (" (give files or directories as PATH)" if not args.paths else ""))
    tagger = _load(args)
    if (args.events or args.plot) and not tagger.has_framewise:
        raise UsageError(f"{args.checkpoint or args.model}: linear-head model, no framewise output: --events/--plot "
                         "need a tscam head")
    framewise = bool(args.events or args.plot)

    from tqdm import tqdm

    results = []
    failures = 0
    progress = tqdm(total=len(files), unit="file", disable=args.quiet or len(files) < 2, file=sys.stderr, dynamic_ncols=True)
    try:
        stream = tagger.tag_files(
            files, top_k=args.top_k, events=framewise, threshold=args.threshold, min_duration=args.min_duration,
            median_filter=args.median_filter, min_gap=args.min_gap, num_workers=args.workers,
        )
        for res in stream:
            progress.update(1)
            if isinstance(res, FileError):
                failures += 1
                progress.clear()
                _err(f"error: {res.message}" if res.file in res.message else f"error: {res.file}: {res.message}")
                continue
            if not _finite(res):  # never a NaN score in the output: the file counts as failed
                failures += 1
                progress.clear()
                _err(f"error: {res.file}: the model's output is not finite (NaN or inf); no result written")
                continue
            if not args.quiet:
                for w in res.warnings:
                    progress.clear()
                    _err(f"warning: {w}")
            if args.plot:
                from audiomamba.inference.plot import plot_activations

                try:
                    plot_activations(tagger, res, args.plot)
                except Exception as e:  # a plot failure must not lose the results
                    failures += 1
                    _err(f"error: {res.file}: cannot write plot ({e})")
            if not args.events:
                res.events = []
            res.framewise = None  # free memory: only the summary is written
            results.append(res)
            if args.format == "jsonl" and args.output is None:
                print(json.dumps(res.to_dict(args.top_k, args.threshold), allow_nan=False), flush=True)
    finally:
        progress.close()
    if not (args.format == "jsonl" and args.output is None):
        text = format_results(results, args.format, args.top_k, args.threshold)
        if args.output:
            _write_output(Path(args.output), text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    if failures:
        _err(f"{failures} of {len(files)} file(s) failed")
        return EXIT_FILE_ERRORS
    return EXIT_OK


def _write_output(path: Path, text: str) -> None:
    """Write the results atomically (a failed write keeps any previous file); an I/O error names the path."""
    from audiomamba.utils.io import atomic_write

    try:
        if path.exists() and not path.is_file():  # a device or pipe (/dev/stdout, a FIFO): never replaced
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except WriteError:
        raise
    except OSError as e:
        cause = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e)).lower()
        raise WriteError(f"--output {path}: cannot write ({cause})", e.errno, str(path)) from None


def format_results(results, fmt: str, top_k: int, threshold: float | None) -> str:
    """Render results as table, json (array), jsonl or csv text."""
    dicts = [r.to_dict(top_k, threshold) for r in results]
    if fmt == "json":
        return json.dumps(dicts, indent=2, allow_nan=False) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(d, allow_nan=False) + "\n" for d in dicts)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "duration_s", "kind", "label", "score", "onset", "offset"])
        for d in dicts:
            for t in d["tags"]:
                w.writerow([d["file"], d["duration_s"], "tag", t["label"], t["score"], "", ""])
            for e in d["events"]:
                w.writerow([d["file"], d["duration_s"], "event", e["label"], e["score"], e["onset"], e["offset"]])
        return buf.getvalue()
    lines = []
    for d in dicts:
        lines.append(f"{d['file']}  ({d['duration_s']:.2f} s)")
        for t in d["tags"]:
            lines.append(f"  {t['score']:6.3f}  {t['label']}")
        if d["events"]:
            lines.append("  events:")
            for e in d["events"]:
                lines.append(f"    {e['onset']:9.2f} - {e['offset']:9.2f} s  {e['score']:6.3f}  {e['label']}")
    return "\n".join(lines) + ("\n" if lines else "")
