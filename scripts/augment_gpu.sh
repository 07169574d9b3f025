#!/usr/bin/env bash
# Source augmentation against its control on one GPU, side by side in one call: configs/pretrain_micro_v2_augment.yaml
# as it is, and the same with augment.source_speed=0 augment.source_eq_db=0 (same clips, crops, seeds, schedule),
# each through scripts/pretrain_gpu.sh (training under the time limit, the validation-selected checkpoint scored on
# the test split, the float16 model written).  Run from the repository root with the bank in .bank.
#   OUT       results (default runs/augment_out): OUT/augment and OUT/control
#   BUDGET_S  each training's wall-clock limit in seconds (default 480)
set -uo pipefail
OUT=${OUT:-runs/augment_out}
CONFIG=configs/pretrain_micro_v2_augment.yaml
mkdir -p "$OUT/augment" "$OUT/control"
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c "import soundfile, soxr" 2>/dev/null; then  # once, not racing
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export BENCH_BANK=0 BUDGET_S=${BUDGET_S:-480} CONFIG
OUT="$OUT/augment" bash scripts/pretrain_gpu.sh > "$OUT/augment/run.log" 2>&1 &
OUT="$OUT/control" bash scripts/pretrain_gpu.sh augment.source_speed=0 augment.source_eq_db=0 \
  train.output_dir=runs/pretrain_micro_v2_control > "$OUT/control/run.log" 2>&1 &
wait
for name in augment control; do echo "== $name"; tail -n 8 "$OUT/$name/run.log"; done
