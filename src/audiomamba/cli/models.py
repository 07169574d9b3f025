"""``audiomamba models``: list the registered models with their parameter counts, or (``--pretrained``) the taggers
that ship with the package."""

from __future__ import annotations

import argparse

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'audiomamba_*'")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the taggers that ship with the package (classes, size, test mAP)")


def run(args: argparse.Namespace) -> int:
    from audiomamba import create_model, list_models
    from audiomamba.errors import UsageError
    from audiomamba.models.registry import model_description

    if args.pretrained:
        return _list_pretrained(args.pattern)

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r} (audiomamba models lists all {len(list_models())})")
    print(f"{'model':24s} {'params':>9s}  description")
    for name in names:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            n = sum(p.numel() for p in create_model(name).parameters())
        desc = model_description(name)
        print(f"{name:24s} {n / 1e6:8.2f}M  {desc}")
    return 0


def _list_pretrained(pattern: str | None = None) -> int:
    import fnmatch

    from audiomamba.checkpoint import read_meta
    from audiomamba.errors import UsageError
    from audiomamba.models.pretrained import DEFAULT_TAGGER, list_pretrained, pretrained_path

    names = [n for n in list_pretrained() if pattern is None or fnmatch.fnmatch(n, pattern)]
    if not names:
        raise UsageError(f"no shipped tagger matches {pattern!r} (shipped: {', '.join(list_pretrained())})")

    print(f"{'tagger':30s} {'model':22s} {'classes':>7s} {'MB':>6s} {'test mAP':>8s}")
    for name in names:
        path = pretrained_path(name)
        meta = read_meta(path)
        m_ap = meta.get("provenance", {}).get("test_metrics", {}).get("mAP")
        print(f"{name:30s} {meta['model']['name']:22s} {len(meta['labels']):7d} {path.stat().st_size / 1e6:6.1f} "
              f"{'-' if m_ap is None else f'{m_ap:.3f}':>8s}{'  (default)' if name == DEFAULT_TAGGER else ''}")
    return 0
