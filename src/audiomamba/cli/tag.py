"""``audiomamba tag``: tag audio files (clip tags, optionally timestamped events and plots).

Exit codes:
  0  every file was tagged
  1  at least one file could not be tagged (each named on stderr); the others were tagged and written
  2  usage error: bad option, no checkpoint given, no input file found, missing optional dependency
  3  the checkpoint could not be loaded (missing, not an audiomamba checkpoint, config/weights mismatch)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from audiomamba.audio import is_audio_file

EXIT_OK, EXIT_FILE_ERRORS, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
CHECKPOINT_ENV = "AUDIOMAMBA_CHECKPOINT"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "exit codes: 0 all files tagged; 1 some files failed (named on stderr), the others were tagged; "
        "2 usage error; 3 checkpoint error; 130 interrupted"
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
                   help="keep only tags scoring >= T; also the event threshold (events default 0.5)")
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
                aggregate=args.aggregate, chunk_s=args.chunk, batch_size=args.batch_size, cuda_graph=args.cuda_graph)


def load_tagger(args: argparse.Namespace, options: dict):
    """``--checkpoint`` (or ``$AUDIOMAMBA_CHECKPOINT``), else ``--model``, else the shipped tagger (with a note)."""
    from audiomamba.inference.tagger import Tagger

    if args.checkpoint:
        return Tagger.from_checkpoint(args.checkpoint, **options)
    if not args.model and not args.quiet:
        from audiomamba.models.pretrained import DEFAULT_TAGGER

        _err(f"note: no --checkpoint or --model given: using the shipped tagger {DEFAULT_TAGGER}")
    return Tagger.from_pretrained(args.model, **options)


def _tagger_or_exit(args: argparse.Namespace):
    """The tagger of the command line, or the exit code after one error line (3: checkpoint; 2: bad device, mode
    or CUDA-graph options)."""
    from audiomamba.checkpoint import CheckpointError

    try:
        return load_tagger(args, tagger_options(args))
    except CheckpointError as e:
        _err(f"error: {e}")
        return EXIT_CHECKPOINT
    except ValueError as e:
        _err(f"error: {e}")
        return EXIT_USAGE


def _run_stream(args: argparse.Namespace) -> int:
    """``--stream``: JSON lines to stdout (or --output) until the stream ends or Ctrl-C."""
    from audiomamba.errors import AudioDecodeError
    from audiomamba.inference import stream

    if args.raw is not None and args.raw not in stream.ENCODINGS:
        _err(f"error: --raw must be one of {', '.join(stream.ENCODINGS)}, got {args.raw!r}")
        return EXIT_USAGE
    if args.channels < 1 or (args.rate is not None and args.rate < 1):
        _err("error: --channels and --rate must be positive")
        return EXIT_USAGE
    tagger = _tagger_or_exit(args)
    if isinstance(tagger, int):
        return tagger
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        if args.stream == "mic" or args.stream.startswith("mic:"):
            device = args.stream[4:] or None
            source = stream.Microphone(args.rate, args.channels, int(device) if device and device.isdigit() else device)
        elif args.stream == "-":
            source = stream.open_source(sys.stdin.buffer, args.raw, args.rate, args.channels)
        else:
            _err(f"error: --stream takes '-' (standard input) or 'mic[:DEVICE]', got {args.stream!r}")
            return EXIT_USAGE
        stream.run(tagger, source, out, window_s=args.stream_window, hop_s=args.stream_hop, top_k=args.top_k,
                   tag_threshold=args.threshold, threshold=0.5 if args.threshold is None else args.threshold,
                   min_duration=args.min_duration, min_gap=args.min_gap, median_filter=args.median_filter,
                   lookahead_s=args.lookahead)
    except ImportError as e:
        _err(f"error: {e}: the microphone needs pip install 'audiomamba[stream]'")
        return EXIT_USAGE
    except ValueError as e:
        _err(f"error: {e}")
        return EXIT_USAGE
    except AudioDecodeError as e:
        _err(f"error: {e}")
        return EXIT_FILE_ERRORS
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
    try:
        return _run(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from audiomamba.inference.tagger import FileError

    if args.checkpoint and args.model:
        _err("error: give --checkpoint or --model, not both")
        return EXIT_USAGE
    if args.top_k < 0 or args.batch_size < 1:
        _err("error: --top-k must be >= 0 and --batch-size >= 1")
        return EXIT_USAGE
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _err("error: --plot needs matplotlib: pip install 'audiomamba[plot]'")
            return EXIT_USAGE
    if args.stream is not None:
        if args.paths:
            _err("error: --stream reads standard input or a microphone; give no PATH with it")
            return EXIT_USAGE
        return _run_stream(args)
    files, empty = find_audio_files(args.paths, args.recursive)
    for d in empty:
        _err(f"warning: {d}: directory holds no audio files{'' if args.recursive else ' (use --recursive for subdirectories)'}")
    if not files:
        _err("error: no audio files to tag")
        return EXIT_USAGE
    tagger = _tagger_or_exit(args)
    if isinstance(tagger, int):
        return tagger
    if (args.events or args.plot) and not tagger.has_framewise:
        _err(f"error: {args.checkpoint}: linear-head model, no framewise output: --events/--plot need a tscam head")
        return EXIT_USAGE
    framewise = bool(args.events or args.plot)
    event_threshold = 0.5 if args.threshold is None else args.threshold

    from tqdm import tqdm

    results = []
    failures = 0
    progress = tqdm(total=len(files), unit="file", disable=args.quiet or len(files) < 2, file=sys.stderr, dynamic_ncols=True)
    try:
        stream = tagger.tag_files(
            files, top_k=args.top_k, events=framewise, threshold=event_threshold, min_duration=args.min_duration,
            median_filter=args.median_filter, min_gap=args.min_gap, num_workers=args.workers,
        )
        for res in stream:
            progress.update(1)
            if isinstance(res, FileError):
                failures += 1
                progress.clear()
                _err(f"error: {res.message}" if res.file in res.message else f"error: {res.file}: {res.message}")
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
                print(json.dumps(res.to_dict(args.top_k, args.threshold)), flush=True)
    finally:
        progress.close()
    if not (args.format == "jsonl" and args.output is None):
        text = format_results(results, args.format, args.top_k, args.threshold)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    if failures:
        _err(f"{failures} of {len(files)} file(s) failed")
        return EXIT_FILE_ERRORS
    return EXIT_OK


def format_results(results, fmt: str, top_k: int, threshold: float | None) -> str:
    """Render results as table, json (array), jsonl or csv text."""
    dicts = [r.to_dict(top_k, threshold) for r in results]
    if fmt == "json":
        return json.dumps(dicts, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(d) + "\n" for d in dicts)
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
