#!/usr/bin/env bash
# Two trainings of configs/pretrain_micro_v2_augment.yaml side by side on one GPU, each through
# scripts/pretrain_gpu.sh (training under the time limit, the validation-selected checkpoint scored on the test split,
# the float16 model written).  Run from the repository root with the bank in .bank; arguments are config overrides
# for both runs.
#   A, B      each run's own overrides (default: A none, the config as it is; B augment.source_speed=0
#             augment.source_eq_db=0, its control: same clips, crops, seeds and schedule)
#   OUT       results (default runs/augment_out): OUT/a and OUT/b
#   BUDGET_S  each training's wall-clock limit in seconds (default 480)
# Stage 3 of the shipped tagger was `bash scripts/augment_gpu.sh` from stage 2 (A: the shipped run, B: its
# control); stage 4, from stage 3, was its B run (stronger source augmentation against stage 3's strength as A):
#   B="augment.source_speed=0.25 augment.source_eq_db=12" bash scripts/augment_gpu.sh \
#     model.init_checkpoint=STAGE3_FP16 train.epochs=6 optim.lr=3e-4
# Stages 5 to 10 likewise, each with a new train.seed, stages 8 to 10 with finer time steps (model.step_frames=8);
# the config names every stage's command.
set -uo pipefail
OUT=${OUT:-runs/augment_out}
A=${A:-}
B=${B:-augment.source_speed=0 augment.source_eq_db=0}
export CONFIG=configs/pretrain_micro_v2_augment.yaml BENCH_BANK=0 BUDGET_S=${BUDGET_S:-480}
mkdir -p "$OUT/a" "$OUT/b"
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c "import soundfile, soxr" 2>/dev/null; then  # once, not racing
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
# shellcheck disable=SC2086  # A and B are lists of overrides
OUT="$OUT/a" bash scripts/pretrain_gpu.sh "$@" $A train.output_dir=runs/augment_a > "$OUT/a/run.log" 2>&1 &
# shellcheck disable=SC2086
OUT="$OUT/b" bash scripts/pretrain_gpu.sh "$@" $B train.output_dir=runs/augment_b > "$OUT/b/run.log" 2>&1 &
wait
for name in a b; do echo "== $name"; tail -n 3 "$OUT/$name/run.log" | cut -c1-400; done
