"""Benchmark soundscape generation speed (clips/s) with the built-in sources.

    python bench/bench_soundscapes.py --clips 600 --jobs 1 2 [--cold]

Reports the one-off source preparation (rendering soundfonts and espeak-ng speech into the cache: with
``--cold`` into a fresh cache, otherwise the warm-cache lookup) and, per jobs count, the time to mix and write
the clips.  Prints a Markdown table and a JSON line; the machine's load average is printed too, since the
figures are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

from audiomamba.soundscapes.mixer import MixConfig, build_soundscapes
from audiomamba.soundscapes.sources import default_cache_dir, discover


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=600)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--sample-rate", type=int, default=32000)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cold", action="store_true", help="render the sources into a fresh cache (first-run cost)")
    ap.add_argument("--class-table", action="store_true",
                    help="also print the per-class table of docs/data.md (source groups and events per split)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        cache = Path(tmp) / "cache" if args.cold else default_cache_dir()
        t0 = time.perf_counter()
        cat = discover(cache_dir=cache, sample_rate=args.sample_rate, jobs=max(args.jobs))
        prep = time.perf_counter() - t0
        if cat.missing:
            print(f"note: missing source families {sorted(cat.missing)} (scripts/setup_sources.sh installs them)")
        rows = []
        mix = MixConfig(duration=args.duration, sample_rate=args.sample_rate)
        for jobs in args.jobs:
            t0 = time.perf_counter()
            summary = build_soundscapes(cat.items, Path(tmp) / f"out{jobs}", clips=args.clips, seed=0, mix=mix, jobs=jobs)
            dt = time.perf_counter() - t0
            if args.class_table and jobs == args.jobs[-1]:
                table = _class_table(Path(tmp) / f"out{jobs}", summary.events_per_class)
            rows.append({"jobs": jobs, "clips": args.clips, "seconds": round(dt, 2),
                         "clips_per_s": round(args.clips / dt, 2), "classes": len(summary.classes)})
    info = {"date": date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "recordings": len(cat.items), "source_prep_s": round(prep, 2), "cold_cache": args.cold,
            "duration_s": args.duration, "sample_rate": args.sample_rate, "runs": rows}
    print(f"source preparation ({'cold' if args.cold else 'warm'} cache): {prep:.1f} s, {len(cat.items)} recordings")
    print("| jobs | clips | seconds | clips/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['jobs']} | {r['clips']} | {r['seconds']} | {r['clips_per_s']} |")
    print(json.dumps(info))
    if args.class_table:
        print(table)


def _class_table(out: Path, events: dict[str, dict[str, int]]) -> str:
    """Markdown: class, mid, distinct source groups / recordings per split, events per split."""
    import csv
    from collections import defaultdict

    meta = json.loads((out / "sources.json").read_text())
    mids = {r["display_name"]: r["mid"] for r in csv.DictReader(open(out / "class_labels_indices.csv"))}
    groups: dict = defaultdict(lambda: defaultdict(set))
    for rec in meta["recordings"]:
        groups[rec["label"]][rec["split"]].add(rec["group"])
    splits = ("train", "validation", "test")
    lines = ["| class | mid | source groups used (train/val/test) | events (train/val/test) |", "|---|---|---|---|"]
    for name, mid in mids.items():
        g = "/".join(str(len(groups[name][s])) for s in splits)
        e = "/".join(str(events[name][s]) for s in splits)
        lines.append(f"| {name} | `{mid}` | {g} | {e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
