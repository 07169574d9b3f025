"""The ``audiomamba`` command line.

Each subcommand lives in the module of its task; this file only maps names to those modules.  A task module
exposes ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help).  Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("audiomamba.cli.models", "list the registered models and their parameter counts"),
    "demo": ("audiomamba.cli.demo", "build a model, load a checkpoint and tag a generated waveform"),
    "train": ("audiomamba.cli.train", "train or fine-tune a tagger from a YAML config (torchrun for multi-GPU)"),
    "evaluate": ("audiomamba.cli.evaluate", "mAP, mAUC, d', F1, accuracy and event scores of a checkpoint on a dataset"),
    "data": ("audiomamba.cli.data", "build soundscape / ESC-50-style data sets from offline source recordings"),
    "tag": ("audiomamba.cli.tag", "tag audio files: clip tags, timestamped events, plots (any length)"),
    "export": ("audiomamba.cli.export", "export a checkpoint to ONNX or TorchScript (front end included)"),
    "convert": ("audiomamba.cli.convert", "convert a .safetensors checkpoint to a Hugging Face Hub model folder, or back"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audiomamba", description="Audio Mamba: audio tagging with state-space models")
    from audiomamba import __version__

    parser.add_argument("--version", action="version", version=f"audiomamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a real import error inside an existing command module
                raise
            continue  # command listed but its module is not part of this installation (yet)
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
