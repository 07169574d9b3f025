"""``audiomamba convert SRC DST``: a single-file ``.safetensors`` checkpoint to a model folder in the Hugging Face
Hub's layout (config.json, model.safetensors, README.md model card), or back.

Exit codes: 0 written; 2 usage error (the ``hub`` extra missing for a repo id, DST exists); 3 SRC missing or not
an audiomamba model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a .safetensors checkpoint, a model folder, a shipped tagger's name or a Hub repo id")
    p.add_argument("dst", help="DST.safetensors for a single file; any other path becomes a model folder")
    p.add_argument("--revision", default=None, help="Hub revision of a repo id (branch, tag or commit)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def _err(msg: str) -> None:
    print(f"audiomamba convert: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from audiomamba.errors import CheckpointError
    from audiomamba.hub import convert_checkpoint

    dst = Path(args.dst)
    if dst.exists() and not args.overwrite and (dst.is_file() or any(dst.iterdir())):
        _err(f"error: {dst} exists; choose another path or pass --overwrite")
        return 2
    options = {} if args.revision is None else {"revision": args.revision}
    try:
        out = convert_checkpoint(args.src, dst, **options)
    except CheckpointError as e:
        _err(f"error: {e}")
        return 3
    except (ImportError, ValueError) as e:
        _err(f"error: {e}")
        return 2
    print(f"wrote {out}")
    return 0
