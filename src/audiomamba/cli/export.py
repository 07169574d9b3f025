"""``audiomamba export``: a checkpoint -> ONNX or TorchScript, front end included.

The exported graph takes ``waveform`` (batch, samples) float32 mono at the checkpoint's sample rate, for a
fixed number of samples (``--seconds``, default 10 s; the batch is dynamic), and returns ``scores``
(batch, classes: sigmoid or softmax as the checkpoint says), ``framewise`` (batch, frames, classes:
probabilities at 100 frames/s; absent for linear-head models) and ``embedding`` (batch, D).  Longer audio:
cut it into windows of that length in the calling code (see docs/tagging.md).

Exit codes: 0 written; 2 usage error or missing dependency (onnx); 3 checkpoint error; 4 export or
verification failed.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_EXPORT = 0, 2, 3, 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--checkpoint", required=True, help="audiomamba .safetensors checkpoint")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--seconds", type=float, default=10.0, help="input length of the exported graph (default 10 s)")
    p.add_argument("--layout", choices=("checkpoint", "fold", "native"), default="checkpoint",
                   help="layout to export (default: the checkpoint's)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime / reload check against PyTorch")


def _err(msg: str) -> None:
    print(f"audiomamba export: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from audiomamba.checkpoint import CheckpointError, load
    from audiomamba.inference.export import ExportError, export_onnx, export_torchscript

    if args.seconds <= 0:
        _err("error: --seconds must be > 0")
        return EXIT_USAGE
    try:
        model = load(args.checkpoint)
    except CheckpointError as e:
        _err(f"error: {e}")
        return EXIT_CHECKPOINT
    layout = None if args.layout == "checkpoint" else args.layout
    try:
        if args.format == "onnx":
            report = export_onnx(model, args.out, seconds=args.seconds, layout=layout, opset=args.opset, verify=not args.no_verify)
        else:
            report = export_torchscript(model, args.out, seconds=args.seconds, layout=layout, verify=not args.no_verify)
    except ImportError as e:
        _err(f"error: {e}: pip install 'audiomamba[export]'")
        return EXIT_USAGE
    except (ExportError, ValueError) as e:
        _err(f"error: {e}")
        return EXIT_EXPORT
    print(report)
    return EXIT_OK
