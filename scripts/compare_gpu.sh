#!/usr/bin/env bash
# Issue 17's equal-budget comparison and ablations, all on one GPU in one call: every model of configs/compare/
# (Audio Mamba nano, micro, tiny, tiny_v2, micro_v2; the Swin-T, ViT-B and CNN14 peers) and the ablations of
# configs/ablate/ (+ transformer blocks, + CutMix, + mixup on the micro_v2 recipe; pretraining on the bank without
# 10 held-out classes, then 5-fold fine-tuning on them vs from scratch) train CONCURRENTLY, each for the same
# number of optimiser steps with a wall-clock cap, then each validation-selected checkpoint is scored on the test
# split once (scripts/compare_runs.py), and scripts/collect_results.py writes the table and the plot.
# Run from the repository root with the bank in .bank; on a machine without soundfile/soxr, put their wheels
# (and cffi, pycparser) in .whl.
#   TOTAL_S  seconds for everything from the start of the runs (default 480); the packing after it takes ~10 s
#   STEPS    optimiser steps of every run (default 500, batch 64) in EVALS validation intervals (default 5)
#   WORKERS  loader workers shared by the concurrent runs (default 14)
#   OUT      where the results go (default runs/compare_out): results.md, results.json, map_vs_params.png,
#            gpu.csv, runs.tar.gz (jobs.json, logs, configs, metrics, test summaries), steps_*.tar (the
#            step-rate test scores, for event metrics where sed_scores_eval is: collect_results.py --events)
#   CPU=1    smoke test on the CPU: tiny splits, batches and clips (STEPS=3 EVALS=1 is a good choice)
#   ONLY     comma-separated config names (and 'finetune') to run a subset
# Extra arguments go to scripts/compare_runs.py.
set -uo pipefail
TOTAL_S=${TOTAL_S:-480}
STEPS=${STEPS:-500}
EVALS=${EVALS:-5}
WORKERS=${WORKERS:-14}
OUT=${OUT:-runs/compare_out}
RUNS=${RUNS:-runs/compare}
t_start=$(date +%s)
mkdir -p "$OUT"
# Triton's kernel cache in runs/, which stays between calls on a warm machine: a short run of the same models
# first (STEPS=10 EVALS=1) keeps the minutes of compiling out of the timed budget
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$PWD/runs/triton_cache}
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null && ! $PY -c "import soundfile, soxr" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
$PY -c "import timm; print('timm', timm.__version__)" 2>&1 | tail -n 1
$PY -c "import sed_scores_eval; print('sed_scores_eval: event metrics here')" 2>/dev/null || echo "sed_scores_eval missing: event metrics later from the step-rate scores (collect_results.py --events)"
rm -rf "$RUNS"
extra=()
if [ "${CPU:-0}" = 1 ]; then
  extra=(--cpu --val-split validation:8 --test-split test:8 --per-class 5
         --override data.train=train:256 train.batch_size=2 train.eval_batch_size=4 data.clip_seconds=1.0
         --ft-override train.batch_size=2 sampling.epoch_size=4)
fi
[ -n "${ONLY:-}" ] && extra+=(--only "$ONLY")
$PY scripts/compare_runs.py --runs "$RUNS" --budget "$TOTAL_S" --steps "$STEPS" --evals "$EVALS" --workers "$WORKERS" \
  --ft-epochs "${FT_EPOCHS:-5}" "${extra[@]}" "$@"
echo "runs done after $(( $(date +%s) - t_start )) s"
$PY scripts/collect_results.py --runs "$RUNS" --out "$OUT" || echo "collect_results failed (the runs are in the tar)"
# the small files of every run in one tar (no checkpoints, no data), the step-rate test scores in tars of <= 15 MiB
tar -czf "$OUT/runs.tar.gz" --exclude='*.safetensors' --exclude='*.pt' --exclude='steps.npz' --exclude="$RUNS/data" \
  "$RUNS" 2>/dev/null
$PY - "$RUNS" "$OUT" <<'PYEOF'
import sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
files, part, size, tar = sorted(runs.glob("*/eval_test/steps.npz")), 0, 0, None
for f in files:
    n = f.stat().st_size
    if tar is None or size + n > 15 * 2**20:
        if tar is not None:
            tar.close()
        part, size = part + 1, 0
        tar = tarfile.open(out / f"steps_{part}.tar", "w")
    tar.add(f, arcname=str(f))
    size += n
if tar is not None:
    tar.close()
print(f"{len(files)} step-score files in {part} tar(s)")
PYEOF
cp "$RUNS/gpu.csv" "$OUT/" 2>/dev/null
ls -la "$OUT"
echo "total $(( $(date +%s) - t_start )) s"
