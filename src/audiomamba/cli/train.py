"""``audiomamba train --config FILE.yaml [section.key=value ...]``: train or fine-tune a tagger.

``--cv-folds 1,2,3,4,5`` runs one training per held-out fold (ESC-50), in ``output_dir/fold<k>``, and writes
``cv_summary.json`` with each fold's best validation score and their mean and standard deviation.
Multi-GPU: ``torchrun --nproc_per_node=N -m audiomamba train --config ...``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path


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


def run(args) -> int:
    from audiomamba.evaluation.summary import cv_summary
    from audiomamba.training import ConfigError, load_config, train
    from audiomamba.utils import distributed as D

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if D.rank() != 0 or int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if args.quiet:
        overrides.append("train.progress=false")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    if not args.cv_folds:
        result = train(cfg, _resolve_resume(args.resume, cfg.train.output_dir))
        # The per-step losses are in the run's summary.json; the terminal gets the headline figures.
        print(json.dumps({k: v for k, v in dict(result).items() if k != "losses"}, default=float))
        return 0
    folds = [int(f) for f in args.cv_folds.split(",") if f.strip()]
    base = cfg.train.output_dir
    best_per_fold = {}
    for k in folds:
        fold_cfg = load_config(args.config, overrides + [f"data.fold={k}", f"train.output_dir={base}/fold{k}"])
        best_per_fold[k] = train(fold_cfg, _resolve_resume(args.resume, fold_cfg.train.output_dir))["best"]
    summary = cv_summary(best_per_fold, ("mAP", "top1_accuracy"))
    Path(base).mkdir(parents=True, exist_ok=True)
    (Path(base) / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0
