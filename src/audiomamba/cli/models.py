"""``audiomamba models``: list the registered models with their parameter counts."""

from __future__ import annotations

import argparse

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'audiomamba_*'")


def run(args: argparse.Namespace) -> int:
    from audiomamba import create_model, list_models
    from audiomamba.models.registry import AUDIOMAMBA_VARIANTS

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    print(f"{'model':24s} {'params':>9s}  description")
    for name in names:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            n = sum(p.numel() for p in create_model(name).parameters())
        desc = AUDIOMAMBA_VARIANTS[name].description if name in AUDIOMAMBA_VARIANTS else "ImageNet-1K classifier (official layout)"
        print(f"{name:24s} {n / 1e6:8.2f}M  {desc}")
    return 0
