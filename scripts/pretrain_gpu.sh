#!/usr/bin/env bash
# Train the shipped tagger on one GPU from the source bank, evaluate it on the bank's test split, and write the
# float16 model with its provenance.  Run from the repository root with the bank in .bank (`audiomamba data bank
# --out .bank`).  On a machine without soundfile/soxr, put their wheels (and cffi, pycparser) in .whl.
#   CONFIG   training config (default configs/pretrain_micro_v2.yaml); extra arguments are config overrides
#   BUDGET_S wall-clock limit of the training command in seconds (default: none); the best validated checkpoint
#            so far is kept when it is reached
#   OUT      where the results go (default runs/pretrain_out)
#   BENCH_BANK=0 skips timing the bank's loader first
#   EVAL=0   stops after training (no test evaluation, no model file): the first call of a multi-call training
#   RESUME=1 continues the run in train.output_dir from its last checkpoint (--resume auto): a training longer
#            than one device call runs as several calls on the same warm machine, the first stopped by BUDGET_S
# Triton's kernel cache goes to runs/triton_cache (TRITON_CACHE_DIR), which stays between calls on a warm machine.
# Before training, `bench/compile_time.py --on-gpu` fills it for the config's model, layout, batch and precision:
# 8 processes run the scan's variant groups side by side on the GPU (the backward from autograd, as a training runs
# it, so the training finds them), and a cold machine waits for the slowest group, not for the sum (micro: 157 s,
# then 15 s to the captured graph, against 343 s with no fill).  On exit the cache goes to $OUT/triton_cache.tgz; a
# later call that carries it as runs/triton_cache.tgz compiles nothing (micro: 9 s to the captured graph).
set -uo pipefail
CONFIG=${CONFIG:-configs/pretrain_micro_v2.yaml}
OUT=${OUT:-runs/pretrain_out}
mkdir -p "$OUT"
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$PWD/runs/triton_cache}
# a carried runs/triton_cache.tgz (an earlier call's $OUT/triton_cache.tgz; device tool: carry it) is unpacked first
if [ -f "$TRITON_CACHE_DIR.tgz" ]; then
  tar -xzf "$TRITON_CACHE_DIR.tgz" -C "$(dirname "$TRITON_CACHE_DIR")" || exit 1
fi
resume=()
[ "${RESUME:-0}" = 1 ] && resume=(--resume auto)
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c "import soundfile, soxr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
read -r RUN MODEL LAYOUT BATCH DTYPE < <(python3 -c "import sys; from audiomamba.training.config import load_config
c = load_config(sys.argv[1], sys.argv[2:]); print(c.train.output_dir, c.model.name, c.model.layout, c.train.batch_size, c.train.precision)" "$CONFIG" "$@") || exit 1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
t0=$(date +%s)
python3 bench/compile_time.py --model "$MODEL" --layout "$LAYOUT" --batch "$BATCH" --dtype "$DTYPE" --jobs 8 --on-gpu \
  --cache-dir "$TRITON_CACHE_DIR" --json "$OUT/triton_warm.json" > "$OUT/triton_warm.log" 2>&1 || { tail -n 20 "$OUT/triton_warm.log"; exit 1; }
echo "Triton cache filled in $(( $(date +%s) - t0 )) s"
# a few MB, written whatever way the script ends, with what the training and evaluation compiled
trap 'tar -czf "$OUT/triton_cache.tgz" -C "$(dirname "$TRITON_CACHE_DIR")" "$(basename "$TRITON_CACHE_DIR")"' EXIT
if [ "${BENCH_BANK:-1}" = 1 ]; then
  python3 bench/bench_bank.py --bank .bank --workers 14 --clips 3072 --train-clips 20000 > "$OUT/bench_bank.json" 2> "$OUT/bench_bank.err"
  tail -n 12 "$OUT/bench_bank.json"
fi
start=$(date +%s)
limit=()
[ -n "${BUDGET_S:-}" ] && limit=(timeout --signal=INT "$BUDGET_S")
"${limit[@]}" python3 -m audiomamba train --config "$CONFIG" "${resume[@]}" "$@" > "$OUT/train.log" 2>&1
echo "train exit $? after $(( $(date +%s) - start )) s"; tail -n 5 "$OUT/train.log"
cp "$RUN/metrics.jsonl" "$OUT/" 2>/dev/null; cp "$RUN/summary.json" "$OUT/train_summary.json" 2>/dev/null
[ "${EVAL:-1}" = 0 ] && exit 0
python3 -m audiomamba evaluate --checkpoint "$RUN/best.safetensors" --data .bank --split test --batch-size 128 \
  --out "$RUN/eval_test" > "$OUT/eval.log" 2>&1 || { tail -n 20 "$OUT/eval.log"; exit 1; }
cp "$RUN/eval_test/summary.json" "$OUT/eval_test.json"; cp "$RUN/eval_test/per_class.csv" "$OUT/per_class.csv"
python3 scripts/ship_pretrained.py --checkpoint "$RUN/best.safetensors" --eval "$RUN/eval_test/summary.json" \
  --bank .bank --config "$CONFIG" --out "$OUT/model_fp16.safetensors" -- "$@"
echo "total $(( $(date +%s) - start )) s"
