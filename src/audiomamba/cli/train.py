"""``audiomamba train --config FILE.yaml [section.key=value ...]``: train or fine-tune a tagger.

``--cv-folds 1,2,3,4,5`` runs one training per held-out fold (ESC-50), in ``output_dir/fold<k>``, and writes
``cv_summary.json`` with each fold's best validation score and their mean and standard deviation.
Multi-GPU: ``torchrun --nproc_per_node=N -m audiomamba train --config ...``.

Before any work the command checks the config (keys, types, ranges: exit 2), ``train.device`` (CUDA asked for
on a machine without it: exit 2), the dataset root (exit 5), ``--resume``, ``model.init_checkpoint`` and
``model.pretrained_backbone`` (missing, damaged or unsafe: exit 3) and that ``train.output_dir`` can be written
(exit 6).  docs/errors.md lists every exit code.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from audiomamba.cli import _checks as C
from audiomamba.errors import CheckpointError, ConfigError, DatasetError


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="YAML config (see configs/ and docs/training.md)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, e.g. optim.lr=3e-4")
    p.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue from a training checkpoint (auto: OUTPUT_DIR/last.pt if it exists)")
    p.add_argument("--cv-folds", default=None, metavar="1,2,...", help="cross-validation: one run per held-out fold")
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")


def _resolve_resume(resume: str | None, out_dir: str) -> str | None:
    if resume == "auto":
        p = Path(out_dir) / "last.pt"
        return str(p) if p.is_file() else None
    return resume


def check_resume(path: str, model_name: str | None = None) -> None:
    """``--resume PATH``: an audiomamba training checkpoint (``last.pt``) of ``model_name``, readable without
    unpickling anything; else :class:`CheckpointError` (exit 3) before any work.  Memory-mapped, so a large
    file costs no copy."""
    p = C.input_path(path, "--resume", CheckpointError)
    with open(p, "rb") as f:
        magic = f.read(9)
    if magic[8:9] == b"{":  # a safetensors file
        raise CheckpointError(f"--resume {p}: a model checkpoint, not a training state: --resume takes a run's "
                              "last.pt; to fine-tune from a model, set model.init_checkpoint")
    if magic[:4] != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch.save writes a zip file (or, long ago, a pickle)
        raise CheckpointError(f"--resume {p}: not a readable training checkpoint (not a file written by torch.save; "
                              "a last.pt written by audiomamba train is)")
    state = C.torch_load_tensors(p, "--resume", "training checkpoint")
    from audiomamba.training.state import STATE_FORMAT

    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"--resume {p}: not an audiomamba training checkpoint (a last.pt written by "
                              "audiomamba train)")
    missing = [k for k in ("model", "optimizer", "step", "epoch", "model_name", "num_classes") if k not in state]
    if missing:
        raise CheckpointError(f"--resume {p}: damaged training checkpoint, missing {', '.join(missing)}")
    if model_name is not None and state["model_name"] != model_name:
        raise CheckpointError(f"--resume {p}: a {state['model_name']} checkpoint cannot resume a run of model.name="
                              f"{model_name}")


def check_config(cfg, resume: str | None) -> None:
    """What a config points at, before any work: the device, the data, the checkpoints, the output folder."""
    from audiomamba.checkpoint import check as check_checkpoint

    C.device(cfg.train.device, "train.device")
    if not cfg.data.root.startswith(("http://", "https://", "pipe:")) and not any(ch in cfg.data.root for ch in "{*?["):
        root = Path(cfg.data.root).expanduser()
        if not root.exists():
            raise DatasetError(f"data.root {root}: no such file or directory")
    if cfg.data.labels:
        C.label_file(cfg.data.labels, "data.labels")
    if cfg.model.init_checkpoint:
        C.input_path(cfg.model.init_checkpoint, "model.init_checkpoint", CheckpointError)
        try:
            check_checkpoint(cfg.model.init_checkpoint)
        except CheckpointError as e:
            raise CheckpointError(f"model.init_checkpoint: {e}") from None
    if cfg.model.pretrained_backbone:
        C.tensor_file(cfg.model.pretrained_backbone, "model.pretrained_backbone")
    if resume is not None:
        check_resume(resume, cfg.model.name)
    C.output_dir(cfg.train.output_dir, "train.output_dir")


def run(args) -> int:
    from audiomamba.training import load_config, train
    from audiomamba.utils import distributed as D

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if D.rank() != 0 or int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if args.quiet:
        overrides.append("train.progress=false")
    folds = C.int_list(args.cv_folds, "--cv-folds") if args.cv_folds else []
    if args.resume is not None and args.resume != "auto":
        C.input_path(args.resume, "--resume", CheckpointError)
    cfg = load_config(args.config, overrides)
    if not folds:
        resume = _resolve_resume(args.resume, cfg.train.output_dir)
        check_config(cfg, resume)
        result = train(cfg, resume)
        # The per-step losses are in the run's summary.json; the terminal gets the headline figures.
        print(json.dumps({k: v for k, v in dict(result).items() if k != "losses"}, default=float))
        return 0
    base = cfg.train.output_dir
    fold_cfgs = {k: load_config(args.config, overrides + [f"data.fold={k}", f"train.output_dir={base}/fold{k}"])
                 for k in folds}
    for k, fold_cfg in fold_cfgs.items():  # every fold's config and files checked before the first trains
        check_config(fold_cfg, _resolve_resume(args.resume, fold_cfg.train.output_dir))
    best_per_fold = {}
    for k, fold_cfg in fold_cfgs.items():
        best_per_fold[k] = train(fold_cfg, _resolve_resume(args.resume, fold_cfg.train.output_dir))["best"]
    from audiomamba.evaluation.summary import cv_summary

    summary = cv_summary(best_per_fold, ("mAP", "top1_accuracy"))
    _write_json(Path(base) / "cv_summary.json", summary)
    print(json.dumps(summary, default=float))
    return 0


def _write_json(path: Path, obj) -> None:
    from audiomamba.utils.io import atomic_write

    text = json.dumps(obj, indent=2, default=float)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


__all__ = ["add_arguments", "run", "check_config", "check_resume", "ConfigError"]
