"""``audiomamba data ...``: build data sets from the offline source recordings, list the sources, pack a
dataset into shards.

Subcommands live in :data:`SUBCOMMANDS` (name -> help, argument adder, runner).  Every option is checked before
any work (:func:`validate`); errors are raised and end in one line and the command line's exit code
(docs/errors.md): 2 a bad option, 5 missing or unusable sources or data, 6 an output that cannot be written.  A build
that skipped unreadable source recordings writes the data set and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from audiomamba.cli import _checks as C
from audiomamba.errors import EXIT_OK, EXIT_PARTIAL, DatasetError, SourceError, UsageError
from audiomamba.soundscapes.mixer import MixConfig, build_esc50, build_soundscapes
from audiomamba.soundscapes.sources import FAMILIES, default_cache_dir, discover, user_items

log = logging.getLogger("audiomamba.data")


def _range(text: str) -> tuple[float, float]:
    """Parse "LOW,HIGH" (or one number for both)."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH numbers, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}")
    return parts[0], parts[1]


def _names(text: str) -> list[str]:
    """Parse a ';'-separated list (class names may hold commas, e.g. "Violin, fiddle")."""
    return [t.strip() for t in text.split(";") if t.strip()]


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--families", type=lambda s: [t for t in s.split(",") if t], default=None,
                   help="comma-separated source families to use (default: every installed one): "
                        + ", ".join(f.name for f in FAMILIES))
    p.add_argument("--source-dir", action="append", default=[], metavar="DIR",
                   help="also use your own isolated recordings: DIR/<label>/<file> or DIR/<label>/<group>/<file> "
                        "(repeatable)")
    p.add_argument("--no-builtin", action="store_true", help="use only --source-dir recordings")
    p.add_argument("--cache-dir", default=None, help=f"where rendered sources are cached (default {default_cache_dir()})")
    p.add_argument("--sample-rate", type=int, default=32000, help="output sample rate in Hz (default 32000)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2); output does not depend on it")
    p.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")


def _add_build_options(p: argparse.ArgumentParser, duration: float, snr: str) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--clips", type=int, required=True, help="number of clips to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--duration", type=float, default=duration, help=f"clip length in seconds (default {duration:g})")
    p.add_argument("--classes", type=_names, default=None,
                   help='only these classes, ";"-separated display names, e.g. "Speech;Piano;Violin, fiddle"')
    p.add_argument("--snr", type=_range, default=_range(snr), help=f"event SNR range in dB (default {snr})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    _add_source_options(p)


def _add_soundscapes(p: argparse.ArgumentParser) -> None:
    _add_build_options(p, 10.0, "6,30")
    p.add_argument("--events", type=_range, default=(1, 4), help="events per clip, MIN,MAX (default 1,4)")
    p.add_argument("--splits", type=_range_fractions, default=None,
                   help="train,validation,test fractions of the clips (default 0.7,0.15,0.15, with the built-in "
                        "source groups in the shipped tagger's splits; given, every group is drawn afresh)")
    p.add_argument("--layout", choices=["soundscapes", "esc50"], default="soundscapes",
                   help="esc50: same as the esc50-like subcommand")


def _split_args(args: argparse.Namespace) -> dict:
    """The builders' split options: the default fractions with the built-in groups pinned to the shipped tagger's
    splits (so that its test split holds no recording it trained on, whatever sources a machine has), or the given
    fractions with every group drawn afresh."""
    from audiomamba.soundscapes.mixer import DEFAULT_FRACTIONS, builtin_splits

    if args.splits is None:
        return {"fractions": DEFAULT_FRACTIONS, "pinned": builtin_splits()}
    return {"fractions": args.splits, "pinned": None}


def _range_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three fractions, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions TRAIN,VALIDATION,TEST, got {text!r}")
    return parts  # type: ignore[return-value]


def _add_esc50(p: argparse.ArgumentParser) -> None:
    _add_build_options(p, 5.0, "10,30")


def _add_sources(p: argparse.ArgumentParser) -> None:
    _add_source_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="also list the classes with recordings and groups")
    p.add_argument("--json", action="store_true", help="print the catalogue summary as JSON")


def _gather(args: argparse.Namespace) -> list:
    """Source items from the built-in families and any --source-dir folders; exits clearly when there are none."""
    items, skipped, missing = [], 0, {}
    if not args.no_builtin:
        cat = discover(args.families, cache_dir=args.cache_dir, sample_rate=args.sample_rate, jobs=max(1, args.jobs))
        items, skipped, missing = cat.items, cat.skipped, cat.missing
        for name, hint in missing.items():
            log.warning("source family %r is not installed: %s", name, hint)
    for folder in args.source_dir:
        found, bad = user_items(folder)
        items, skipped = items + found, skipped + bad
        log.info("source folder %s: %d recordings", folder, len(found))
    if skipped:
        log.warning("%d unreadable source file(s) skipped (see the lines above)", skipped)
    args._skipped_sources = skipped  # the build's exit code is 1 when sources were skipped
    if not items:
        hints = "; ".join(f"{n}: {h}" for n, h in missing.items()) or "pass --source-dir with your own recordings"
        raise SourceError("no source recordings found. Install some sources (scripts/setup_sources.sh does it): "
                          + hints)
    return items


def _check_source_options(args: argparse.Namespace) -> None:
    C.number(args.jobs, "--jobs", low=1)
    C.number(args.sample_rate, "--sample-rate", low=1000, high=192000)
    for folder in args.source_dir:
        C.input_path(folder, "--source-dir", SourceError, kind="dir")
    if args.no_builtin and not args.source_dir:
        raise UsageError("--no-builtin needs at least one --source-dir")
    if args.cache_dir is not None:
        C.output_dir(args.cache_dir, "--cache-dir", create=False)
    if args.families is not None:
        known = [f.name for f in FAMILIES]
        unknown = [f for f in args.families if f not in known]
        if unknown:
            raise UsageError(f"--families: unknown family {unknown[0]!r} (known: {', '.join(known)})")


def _check_range(value: tuple[float, float], option: str) -> None:
    lo, hi = value
    C.number(lo, option)
    C.number(hi, option)
    if lo > hi:
        raise UsageError(f"{option} takes LOW,HIGH with LOW <= HIGH, got {lo:g},{hi:g}")


def _check_events(value: tuple[float, float]) -> None:
    lo, hi = value
    _check_range(value, "--events")
    if lo != int(lo) or hi != int(hi) or lo < 1:
        raise UsageError(f"--events takes whole numbers MIN,MAX with 1 <= MIN <= MAX, got {lo:g},{hi:g}")


def _check_fractions(value: tuple[float, float, float] | None) -> None:
    """Given --splits fractions (None: not given, the default) are each in [0, 1] and sum to 1."""
    if value is None:
        return
    for f in value:
        C.number(f, "--splits", low=0, high=1)
    if abs(sum(value) - 1.0) > 1e-6:
        raise UsageError(f"--splits: the three fractions must sum to 1, got {','.join(f'{f:g}' for f in value)}")


def _check_out(args: argparse.Namespace) -> None:
    out = C.output_dir(args.out, "--out", create=False)
    if out.is_dir() and any(out.iterdir()) and not getattr(args, "overwrite", False):
        raise UsageError(f"--out {out}: folder is not empty; choose another or pass --overwrite")


def validate(args: argparse.Namespace) -> None:
    """Every option of the data subcommand ``args`` names, before any work."""
    runner = args._data_run
    if runner in (_run_soundscapes, _run_esc50, _run_bank, _run_sources):
        _check_source_options(args)
    if runner in (_run_soundscapes, _run_esc50, _run_bank):
        C.number(args.duration, "--duration", low=0, low_open=True)
        _check_range(args.snr, "--snr")
        if args.classes is not None and not args.classes:
            raise UsageError("--classes names no class")
    if runner in (_run_soundscapes, _run_esc50):
        C.number(args.clips, "--clips", low=1)
        _check_out(args)
    if runner is _run_soundscapes:
        _check_events(args.events)
        _check_fractions(args.splits)
    if runner is _run_bank:
        from audiomamba.soundscapes.bank import SPLITS

        C.number(args.max_seconds, "--max-seconds", low=0, low_open=True)
        C.number(args.quality, "--quality", low=0, high=1)
        _check_events(args.events)
        _check_fractions(args.splits)
        unknown = sorted(set(args.clips) - set(SPLITS))
        bad = {k: n for k, n in args.clips.items() if n < 1}
        if unknown or bad:
            raise UsageError(f"--clips: clips per split must name {', '.join(SPLITS)} with counts >= 1, got "
                             f"{','.join(f'{k}={n}' for k, n in args.clips.items())}")
        _check_out(args)
    if runner is _run_pack:
        C.input_path(args.data, "--data", DatasetError, kind="any")
        if args.labels is not None:
            C.label_file(args.labels, "--labels")
        C.number(args.sample_rate, "--sample-rate", low=1000, high=192000)
        C.number(args.shard_size, "--shard-size", low=1)
        if not [s for s in args.splits.split(",") if s.strip()]:
            raise UsageError("--splits names no split")
        C.output_dir(args.out, "--out", create=False)


def _run_build(args: argparse.Namespace, layout: str) -> int:
    t0 = time.perf_counter()
    items = _gather(args)
    common = dict(clips=args.clips, seed=args.seed, classes=args.classes, jobs=args.jobs, overwrite=args.overwrite)
    if layout == "esc50":
        mix = MixConfig(duration=args.duration, sample_rate=args.sample_rate, snr_db=args.snr)
        summary = build_esc50(items, args.out, mix=mix, **common)
    else:
        lo, hi = args.events
        mix = MixConfig(duration=args.duration, sample_rate=args.sample_rate, snr_db=args.snr,
                        min_events=int(lo), max_events=int(hi))
        summary = build_soundscapes(items, args.out, mix=mix, **_split_args(args), **common)
    dt = time.perf_counter() - t0
    total = sum(summary.clips.values())
    print(f"wrote {total} clips ({', '.join(f'{k} {v}' for k, v in summary.clips.items())}) of "
          f"{len(summary.classes)} classes to {summary.out} in {dt:.1f} s ({total / dt:.1f} clips/s)")
    return max(_print_losses(summary.dropped_classes, summary.failed_reads, "unreadable recording read(s)"),
               _skipped_code(args))


def _print_losses(dropped: dict[str, str], failed: int, what: str) -> int:
    """The lines after a build: classes dropped for lacking recordings in some split, recordings skipped.
    Returns the exit code: 1 when recordings were skipped (the data set was written without them), else 0."""
    if dropped:
        print(f"dropped {len(dropped)} class(es) without recordings for every split: " + "; ".join(dropped))
    if failed:
        print(f"skipped {failed} {what}")
        print(f"audiomamba data: {failed} {what} skipped (see the warnings above); the rest was written",
              file=sys.stderr, flush=True)
        return EXIT_PARTIAL
    return EXIT_OK


def _skipped_code(args: argparse.Namespace) -> int:
    """1 (with a line on stderr) when unreadable source files were skipped while gathering, else 0."""
    n = getattr(args, "_skipped_sources", 0)
    if not n:
        return EXIT_OK
    print(f"audiomamba data: {n} unreadable source file(s) skipped (named above); the rest was written",
          file=sys.stderr, flush=True)
    return EXIT_PARTIAL


def _split_counts(text: str) -> dict[str, int]:
    """Parse "train=N,validation=N,test=N" (any subset)."""
    out = {}
    for part in [p for p in text.split(",") if p.strip()]:
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected SPLIT=COUNT pairs, got {part!r}") from None
    return out


def _add_bank(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (bank.json + train.ogg, validation.ogg, test.ogg)")
    p.add_argument("--max-seconds", type=float, default=8.0, help="longest stretch kept of a recording (default 8)")
    p.add_argument("--quality", type=float, default=0.3, help="Ogg Vorbis quality 0..1 (default 0.3)")
    p.add_argument("--classes", type=_names, default=None, help='only these classes, ";"-separated display names')
    p.add_argument("--splits", type=_range_fractions, default=None,
                   help="train,validation,test fractions of each class's source groups (default 0.7,0.15,0.15, "
                        "with the built-in groups in the shipped tagger's splits; given, every group is drawn afresh)")
    p.add_argument("--clips", type=_split_counts, default={},
                   help="default clips per split when the bank is read as a dataset "
                        "(default train=100000,validation=2000,test=2000)")
    p.add_argument("--duration", type=float, default=10.0, help="clip length in seconds (default 10)")
    p.add_argument("--events", type=_range, default=(1, 4), help="events per clip, MIN,MAX (default 1,4)")
    p.add_argument("--snr", type=_range, default=_range("6,30"), help="event SNR range in dB (default 6,30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip plans (same seed, same clips)")
    _add_source_options(p)


def _run_bank(args: argparse.Namespace) -> int:
    from audiomamba.soundscapes.bank import build_bank

    lo, hi = args.events
    t0 = time.perf_counter()
    items = _gather(args)
    mix = MixConfig(duration=args.duration, sample_rate=args.sample_rate, snr_db=args.snr, min_events=int(lo),
                    max_events=int(hi))
    s = build_bank(items, args.out, sample_rate=args.sample_rate, max_seconds=args.max_seconds, classes=args.classes,
                   mix=mix, clips=args.clips, seed=args.seed, quality=args.quality, jobs=args.jobs, **_split_args(args))
    print(f"wrote a source bank of {sum(s.recordings.values())} recordings "
          f"({', '.join(f'{k} {v}' for k, v in s.recordings.items())}), {len(s.classes)} classes, {s.seconds:.0f} s of "
          f"audio in {s.bytes / 1e6:.1f} MB to {s.out} in {time.perf_counter() - t0:.1f} s")
    return max(_print_losses(s.dropped_classes, s.failed_reads, "unreadable or silent recording(s)"), _skipped_code(args))


def _run_soundscapes(args: argparse.Namespace) -> int:
    return _run_build(args, args.layout)


def _run_esc50(args: argparse.Namespace) -> int:
    return _run_build(args, "esc50")


def _run_sources(args: argparse.Namespace) -> int:
    cat = discover(args.families, cache_dir=args.cache_dir, sample_rate=args.sample_rate, jobs=max(1, args.jobs))
    for folder in args.source_dir:
        found, bad = user_items(folder)
        cat.items += found
        cat.skipped += bad
    per_family = Counter(it.origin for it in cat.items)
    groups: dict[str, set] = defaultdict(set)
    for it in cat.items:
        groups[it.label].add(it.group)
    if args.json:
        print(json.dumps({"installed": dict(per_family), "missing": cat.missing, "skipped": cat.skipped,
                          "classes": {c: len(g) for c, g in sorted(groups.items())}}, indent=1))
        return 0
    print("installed sources:")
    for origin, n in sorted(per_family.items()):
        print(f"  {origin:40s} {n:5d} recordings")
    if cat.missing:
        print("missing (how to install; scripts/setup_sources.sh installs them all):")
        for name, hint in cat.missing.items():
            print(f"  {name:12s} {hint}")
    if cat.skipped:
        print(f"unreadable files skipped: {cat.skipped}")
    if args.verbose:
        counts = Counter(it.label for it in cat.items)
        print("classes (recordings / distinct groups):")
        for c in sorted(groups):
            print(f"  {c:45s} {counts[c]:5d} / {len(groups[c]):4d}")
    if not cat.items:
        raise SourceError("no source recordings installed (the list above says how to install them; "
                          "scripts/setup_sources.sh installs them all)")
    return 0


def _add_pack(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset to pack (manifest, AudioSet, ESC-50 or class-folder root)")
    p.add_argument("--format", default="auto", choices=["auto", "manifest", "audioset", "esc50", "folder"])
    p.add_argument("--splits", default="train,validation,test",
                   help="comma-separated splits to pack (missing ones are skipped with a warning); for AudioSet "
                        "'name=seg.csv+seg2.csv' pairs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sample-rate", type=int, default=32000, help="rate to store clips at (the model's)")
    p.add_argument("--shard-size", type=int, default=1000, help="clips per tar shard")
    p.add_argument("--labels", default=None, help="class_labels_indices.csv (default: the dataset's)")


def _run_pack(args: argparse.Namespace) -> int:
    from audiomamba.datasets.pack import pack_splits

    for summary in pack_splits(args.data, args.out, args.splits, args.format, args.labels, args.sample_rate,
                               args.shard_size):
        print(json.dumps(summary))
    return 0


# name -> (help, add_arguments, run)
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "soundscapes": ("mix source recordings into strongly labelled clips (train/validation/test by source)",
                    _add_soundscapes, _run_soundscapes),
    "esc50-like": ("write an ESC-50-shaped set: 5 s single-label clips in 5 source-disjoint folds",
                   _add_esc50, _run_esc50),
    "bank": ("pack every source recording into a compact bank (an index, one stream per split) for mixing on the fly",
             _add_bank, _run_bank),
    "sources": ("list the installed and missing source recordings, and how to install them",
                _add_sources, _run_sources),
    "pack": ("pack a dataset into tar shards (FLAC + JSON, WebDataset naming) for fast reading",
             _add_pack, _run_pack),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for name, (help_, add, runner) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(_data_run=runner)
    parser.set_defaults(_data_parser=parser)


def run(args: argparse.Namespace) -> int:
    runner = getattr(args, "_data_run", None)
    if runner is None:
        args._data_parser.print_help(sys.stderr)
        raise UsageError(f"give a subcommand: {', '.join(SUBCOMMANDS)}")
    validate(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    return int(runner(args))
