"""``audiomamba export``: a checkpoint -> ONNX or TorchScript, front end included.

The exported graph takes ``waveform`` (batch, samples) float32 mono at the checkpoint's sample rate, for a
fixed number of samples (``--seconds``, default 10 s; the batch is dynamic), and returns ``scores``
(batch, classes: sigmoid or softmax as the checkpoint says), ``framewise`` (batch, frames, classes:
probabilities at 100 frames/s; absent for linear-head models) and ``embedding`` (batch, D).  Longer audio:
cut it into windows of that length in the calling code (see docs/tagging.md).  A native-layout graph shorter than
``--min-input`` (default 2.5 s) centres its input in silence that long, as ``audiomamba tag`` does.

Every option is checked first (``--seconds``, ``--min-input``, ``--opset`` within what the installed exporter writes, ``--out``
writable and not a directory), then the checkpoint.  Exit codes (the command line's scheme, docs/errors.md):
0 written; 2 usage error or missing dependency (onnx); 3 checkpoint error; 4 export or verification failed (also: the
written file does not have the opset asked for); 6 --out cannot be written.
"""

from __future__ import annotations

import argparse

from audiomamba.cli import _checks as C
from audiomamba.errors import (
    EXIT_CHECKPOINT,
    EXIT_EXPORT,
    EXIT_OK,
    EXIT_USAGE,
    ExportError,
    MissingDependencyError,
    UsageError,
)

__all__ = ["EXIT_OK", "EXIT_USAGE", "EXIT_CHECKPOINT", "EXIT_EXPORT", "opset_range", "add_arguments", "run"]

# torch.onnx's exporter (dynamo=True) writes this opset natively; lower ones go through onnx's version converter,
# which falls back to this one when it cannot convert: they are refused rather than silently changed.
EXPORTER_OPSET = 18


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--checkpoint", required=True, help="audiomamba .safetensors checkpoint")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--seconds", type=float, default=10.0, help="input length of the exported graph (default 10 s)")
    p.add_argument("--layout", choices=("checkpoint", "fold", "native"), default="checkpoint",
                   help="layout to export (default: the checkpoint's)")
    p.add_argument("--min-input", type=float, default=None, metavar="SECONDS",
                   help="native layout: a graph for inputs shorter than this centres them in silence this long, as "
                        "`audiomamba tag` does (default: 2.5 for native-layout models; 0 = off)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime / reload check against PyTorch")


def opset_range() -> tuple[int, int]:
    """The ONNX opsets the installed exporter writes: its native one up to the newest the onnx package knows."""
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as low
    except Exception:  # private module: moved or absent in other torch versions
        low = EXPORTER_OPSET
    try:
        import onnx.defs

        high = int(onnx.defs.onnx_opset_version())
    except ImportError:
        raise MissingDependencyError("export to ONNX needs onnx: pip install 'audiomamba[export]'") from None
    return int(low), max(int(low), high)


def validate(args: argparse.Namespace) -> None:
    C.number(args.seconds, "--seconds", low=0, low_open=True)
    if args.seconds > 3600:
        raise UsageError(f"--seconds must be at most 3600 (one hour of input), got {args.seconds:g}")
    C.number(args.min_input, "--min-input", low=0, high=300, allow_none=True)
    if args.format == "onnx":
        low, high = opset_range()
        if not low <= args.opset <= high:
            raise UsageError(f"--opset must be in [{low}, {high}] (what the installed exporter writes), got {args.opset}")
    C.output_file(args.out, "--out")


def _written_opset(path: str) -> int | None:
    try:
        import onnx

        proto = onnx.load(path, load_external_data=False)
    except Exception:
        return None
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def run(args: argparse.Namespace) -> int:
    from audiomamba.checkpoint import load
    from audiomamba.inference.export import export_onnx, export_torchscript

    validate(args)
    model = load(args.checkpoint)  # CheckpointError: exit 3
    layout = None if args.layout == "checkpoint" else args.layout
    try:
        if args.format == "onnx":
            report = export_onnx(model, args.out, seconds=args.seconds, layout=layout, opset=args.opset,
                                 verify=not args.no_verify, min_input_s=args.min_input)
            written = _written_opset(args.out)
            if written is not None and written != args.opset:
                raise ExportError(f"{args.out}: the exporter wrote opset {written}, not the --opset {args.opset} asked "
                                  "for (it could not convert the model)")
        else:
            report = export_torchscript(model, args.out, seconds=args.seconds, layout=layout,
                                        verify=not args.no_verify, min_input_s=args.min_input)
    except ImportError as e:
        raise MissingDependencyError(f"{e}: pip install 'audiomamba[export]'") from None
    except (ExportError, OSError):
        raise
    except ValueError as e:  # the exporter's checks of the model and options
        raise ExportError(str(e)) from None
    print(report)
    return EXIT_OK
