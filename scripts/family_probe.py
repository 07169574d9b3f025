"""Score a tagger on the recordings of some source families, each recording a clip of its own (issue 17).

    python scripts/family_probe.py --families gcompris qabcs singles [--checkpoint FILE] [--out runs/family_probe]

Before a tagger has trained on a family (a family added after it, pinned to train), its recordings are sounds it
never heard, from sources it never heard: a probe of generalisation like ``scripts/unused_probe.sh``.  The
recordings are linked into class folders (``OUT/data/<class>/``) and scored with ``audiomamba evaluate --format
folder`` (short recordings centred in 2.5 s of silence, the tagger's default); the summary and per-class table
are in ``OUT/eval``.  Extra arguments go to ``audiomamba evaluate``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from audiomamba.cli import main as cli_main
from audiomamba.soundscapes.sources import discover

SHIPPED = "src/audiomamba/resources/pretrained/audiomamba_micro_v2-bank53.safetensors"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", required=True)
    ap.add_argument("--checkpoint", default=SHIPPED)
    ap.add_argument("--out", default="runs/family_probe")
    a, rest = ap.parse_known_args(argv)
    cat = discover(a.families)
    if cat.missing:
        print(f"family_probe: not installed: {cat.missing}", file=sys.stderr)
        return 5
    data = Path(a.out) / "data"
    shutil.rmtree(data, ignore_errors=True)
    for it in cat.items:
        folder = data / it.label
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", it.key)
        os.symlink(Path(it.path).resolve(), folder / name)
    print(f"family_probe: {len(cat.items)} recordings of {len({it.label for it in cat.items})} classes")
    return cli_main(["evaluate", "--checkpoint", a.checkpoint, "--data", str(data), "--format", "folder",
                     "--split", "all", "--out", str(Path(a.out) / "eval"), *rest])


if __name__ == "__main__":
    raise SystemExit(main())
