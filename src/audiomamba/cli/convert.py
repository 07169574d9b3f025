"""``audiomamba convert SRC DST``: a single-file ``.safetensors`` checkpoint to a model folder in the Hugging Face
Hub's layout (config.json, model.safetensors, README.md model card), or back.

Exit codes (the command line's scheme, docs/errors.md): 0 written; 2 usage error (the ``hub`` extra missing for a
repo id, DST exists); 3 SRC missing, damaged or not an audiomamba model; 6 DST cannot be written.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a .safetensors checkpoint, a model folder, a shipped tagger's name or a Hub repo id")
    p.add_argument("dst", help="DST.safetensors for a single file; any other path becomes a model folder")
    p.add_argument("--revision", default=None, help="Hub revision of a repo id (branch, tag or commit)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def validate(args: argparse.Namespace) -> Path:
    """DST, before anything is read: not in the way of an existing file or folder (unless --overwrite), of the
    right kind, writable."""
    from audiomamba.cli import _checks as C
    from audiomamba.errors import UsageError

    dst = Path(args.dst)
    if dst.exists() and not args.overwrite and (dst.is_file() or any(dst.iterdir())):
        raise UsageError(f"{dst} exists; choose another path or pass --overwrite")
    if str(args.dst).endswith(".safetensors"):
        C.output_file(dst, "DST")
    else:
        C.output_dir(dst, "DST", create=False)
    return dst


def run(args: argparse.Namespace) -> int:
    from audiomamba.hub import convert_checkpoint

    dst = validate(args)
    options = {} if args.revision is None else {"revision": args.revision}
    out = convert_checkpoint(args.src, dst, **options)  # CheckpointError: exit 3; UsageError: exit 2
    print(f"wrote {out}")
    return 0
