"""``audiomamba demo``: build a model, round-trip it through a checkpoint, tag a generated waveform.

This is a smoke test of the whole inference path, not a trained tagger: unless ``--imagenet`` or
``--checkpoint`` is given, the weights are random and the printed tags mean nothing.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="audiomamba_nano", help="registered model name (default: audiomamba_nano)")
    parser.add_argument("--layout", choices=["fold", "native"], default="fold")
    parser.add_argument("--imagenet", type=Path, default=None, help="official VMamba ImageNet checkpoint to initialise from")
    parser.add_argument("--checkpoint", type=Path, default=None, help="an audiomamba .safetensors checkpoint to load instead")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated waveform")
    parser.add_argument("--out", type=Path, default=None, help="where to write the checkpoint (default: a temp dir)")


def generated_waveform(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """A test signal: a 440 Hz tone with harmonics, a noise burst in the middle, and a click."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    tone = sum(0.2 / k * torch.sin(2 * math.pi * 440 * k * t) for k in range(1, 5)) * (t < seconds / 3)
    burst = 0.3 * torch.randn(t.shape, generator=g) * ((t > seconds * 0.45) & (t < seconds * 0.6))
    wave = tone + burst + 0.005 * torch.randn(t.shape, generator=g)
    click = int(seconds * 0.8 * sample_rate)
    wave[click : click + 32] += 0.9
    return wave.float()


def validate(args: argparse.Namespace) -> None:
    """Every option before any work: --seconds, --model (a registered tagger), the files, --out writable."""
    from audiomamba.cli import _checks as C
    from audiomamba.errors import CheckpointError, UsageError
    from audiomamba.models.peers import PEERS
    from audiomamba.models.registry import AUDIOMAMBA_VARIANTS

    C.number(args.seconds, "--seconds", low=0, low_open=True)
    C.number(args.seconds, "--seconds", low=0.1, high=3600)
    if args.checkpoint is not None:
        if args.imagenet is not None:
            raise UsageError("give --checkpoint or --imagenet, not both")
        C.input_path(args.checkpoint, "--checkpoint", CheckpointError)
        return
    taggers = list(AUDIOMAMBA_VARIANTS) + list(PEERS)
    if args.model not in taggers:
        raise UsageError(f"--model {args.model!r} is not a registered tagger (one of {', '.join(taggers)}; "
                         "audiomamba models lists them)")
    if args.imagenet is not None:
        if args.model not in AUDIOMAMBA_VARIANTS:
            raise UsageError(f"--imagenet initialises Audio Mamba backbones only, not {args.model}")
        C.tensor_file(args.imagenet, "--imagenet")
    if args.out is not None:
        C.output_dir(args.out, "--out")


def run(args: argparse.Namespace) -> int:
    from audiomamba import create_model
    from audiomamba.checkpoint import load, save_model
    from audiomamba.models.heads import logits_to_scores

    validate(args)
    if args.checkpoint is not None:
        model = load(args.checkpoint)
        print(f"loaded {args.checkpoint} ({model.config['name']})")
    else:
        from audiomamba.errors import AudiomambaError, UsageError

        try:
            model = create_model(args.model, layout=args.layout, pretrained_backbone=args.imagenet)
        except AudiomambaError:
            raise
        except ValueError as e:
            raise UsageError(f"--model {args.model} --layout {args.layout}: {e}") from None
        if args.imagenet is not None:
            print(model.pretrained_report.summary())
        else:
            print(f"built {args.model} with RANDOM weights: the tags below are meaningless (this is a smoke test)")
        out_dir = args.out or Path(tempfile.mkdtemp(prefix="audiomamba-demo-"))
        path = save_model(model, Path(out_dir) / f"{args.model}.safetensors", provenance={"source": "audiomamba demo"})
        model = load(path)
        print(f"checkpoint written and reloaded: {path}")
    n = sum(p.numel() for p in model.parameters())
    wave = generated_waveform(args.seconds, model.sample_rate)
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(wave[None])
        dt = time.perf_counter() - t0
    labels = [lab["display_name"] for lab in model.meta["labels"]]
    multi_label = bool(model.meta.get("multi_label", True))
    scores = logits_to_scores(out.logits[0], multi_label)
    print(f"{model.config['name']}: {n / 1e6:.2f}M parameters; {args.seconds:.1f} s of audio tagged in {dt:.2f} s on CPU "
          f"({args.seconds / dt:.1f}x real time)")
    print("top tags:")
    for score, idx in zip(*scores.topk(5)):
        print(f"  {score:.3f}  {labels[idx]}")
    if out.framewise_logits is not None:
        top = int(scores.argmax())
        fw = logits_to_scores(out.framewise_logits[0], multi_label)[:, top]
        hop_s = model.frontend.cfg.hop_length / model.sample_rate
        print(f"framewise '{labels[top]}': {fw.shape[0]} frames of {hop_s * 1000:.0f} ms, peak at {fw.argmax().item() * hop_s:.2f} s")
    return 0
