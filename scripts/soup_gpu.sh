#!/usr/bin/env bash
# A weight average ("model soup") of the shipped tagger's fine-tunes, chosen on validation, on one GPU.
# Two fine-tunes of the shipped file with different seeds run side by side (scripts/augment_gpu.sh, the stage-10
# recipe over 2 epochs of 32,000 clips); then their weights are averaged (scripts/average_checkpoints.py), with and
# without the shipped file, and every candidate is scored on the validation split.  Only the candidate with the
# best validation mAP is scored on the test split and written as a float16 file ($OUT/model_fp16.safetensors);
# with a bank carried without its test stream (scripts/carry_bank.sh), that candidate's checkpoint comes back instead,
# and scripts/ship_stage.py scores and ships it here, where the whole bank is.
# Run from the repository root with the bank in .bank and the wheels in .whl (as for scripts/pretrain_gpu.sh); the
# device call carries [".whl", ".bank_carry"] (bash scripts/carry_bank.sh pack, here) and runs
#   bash scripts/carry_bank.sh unpack && SEEDS="19 20" BUDGET_S=235 bash scripts/soup_gpu.sh
#   OUT       results (default runs/soup_out); SEEDS the two runs' train.seed (default "8 9")
#   BUDGET_S  each training's wall-clock limit in seconds (default 240); EPOCHS each training's epochs (default 2)
#   TRAIN=0   skips the trainings (their runs/augment_a, runs/augment_b are kept on a warm machine)
set -uo pipefail
OUT=${OUT:-runs/soup_out}
read -r SEED_A SEED_B <<< "${SEEDS:-8 9}"
SHIPPED=src/audiomamba/resources/pretrained/audiomamba_micro_v2-bank53.safetensors
RECIPE=(model.step_frames=8 train.ema_decay=0.998 augment.source_speed=0.35 augment.source_eq_db=15 train.epochs=${EPOCHS:-2}
        optim.lr=3e-4)
mkdir -p "$OUT" runs/soup
export TRITON_CACHE_DIR=$PWD/runs/triton_cache PYTHONPATH=/tmp/site
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c "import soundfile, soxr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
t0=$(date +%s)
# fill the kernel cache once, so the two trainings' own fills (scripts/pretrain_gpu.sh) find it full
python3 bench/compile_time.py --model audiomamba_micro_v2 --layout native --batch 128 --dtype bf16 --jobs 8 --on-gpu \
  --cache-dir "$TRITON_CACHE_DIR" > "$OUT/triton_warm.log" 2>&1 || { tail -n 20 "$OUT/triton_warm.log"; exit 1; }
echo "Triton cache filled in $(( $(date +%s) - t0 )) s"
[ "${TRAIN:-1}" = 1 ] && EVAL=0 A="train.seed=$SEED_A" B="train.seed=$SEED_B" OUT="$OUT" BUDGET_S=${BUDGET_S:-240} \
  bash scripts/augment_gpu.sh model.init_checkpoint=$SHIPPED "${RECIPE[@]}"
echo "trained after $(( $(date +%s) - t0 )) s"
A=runs/augment_a/best.safetensors B=runs/augment_b/best.safetensors
python3 scripts/average_checkpoints.py --out runs/soup/ab.safetensors "$A" "$B" || exit 1
python3 scripts/average_checkpoints.py --out runs/soup/abs.safetensors "$A" "$B" "$SHIPPED" || exit 1
declare -A CAND=([ab]=runs/soup/ab.safetensors [abs]=runs/soup/abs.safetensors [shipped]=$SHIPPED [a]=$A [b]=$B)
for name in ab abs shipped a b; do
  python3 -m audiomamba evaluate --checkpoint "${CAND[$name]}" --data .bank --split validation --batch-size 128 \
    --out "runs/soup/val_$name" > "$OUT/val_$name.log" 2>&1 || { tail -n 5 "$OUT/val_$name.log"; continue; }
  cp "runs/soup/val_$name/summary.json" "$OUT/val_$name.json"
  echo "validation $name: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['mAP'], 4))" "$OUT/val_$name.json") after $(( $(date +%s) - t0 )) s"
done
best=$(python3 -c "import json,sys,pathlib; s={p.stem[4:]: json.loads(p.read_text())['mAP'] for p in pathlib.Path(sys.argv[1]).glob('val_*.json')}; print(max(s, key=s.get))" "$OUT")
echo "best on validation: $best"
[ "$best" = shipped ] && exit 0
if [ ! -f .bank/test.ogg ]; then
  # a bank carried by scripts/carry_bank.sh has no test stream: the chosen checkpoint comes back (in parts of at
  # most 15 MiB: cat best.safetensors.part* > best.safetensors) to be scored on the test split once, and shipped
  # (scripts/ship_pretrained.py), where the whole bank is
  cp "${CAND[$best]}" "$OUT/best.safetensors"
  split -b 15m -d "$OUT/best.safetensors" "$OUT/best.safetensors.part" && rm "$OUT/best.safetensors"
  echo "the test split is not on this machine: $OUT/best.safetensors.part* hold the chosen checkpoint ($best)"
  echo "total $(( $(date +%s) - t0 )) s"
  exit 0
fi
python3 -m audiomamba evaluate --checkpoint "${CAND[$best]}" --data .bank --split test --batch-size 128 \
  --out runs/soup/test > "$OUT/test.log" 2>&1 || { tail -n 20 "$OUT/test.log"; exit 1; }
cp runs/soup/test/summary.json "$OUT/test.json"; cp runs/soup/test/per_class.csv "$OUT/per_class.csv"
python3 scripts/ship_pretrained.py --checkpoint "${CAND[$best]}" --eval runs/soup/test/summary.json --bank .bank \
  --config configs/pretrain_micro_v2_augment.yaml --out "$OUT/model_fp16.safetensors" -- "soup:$best" \
  "train.seed=$SEED_A,$SEED_B" "${RECIPE[@]}"
# a device call brings back files of at most 16 MiB: the float16 model (28 MB) also goes as parts, joined again by
#   cat model_fp16.safetensors.part* > model_fp16.safetensors
split -b 15m -d "$OUT/model_fp16.safetensors" "$OUT/model_fp16.safetensors.part"
echo "total $(( $(date +%s) - t0 )) s"
