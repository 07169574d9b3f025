#!/usr/bin/env bash
# The README's main job: the shipped tagger at work, on the built-in data, on the CPU, in about 3 minutes.
#   1. the source bank (.bank; built from the installed source recordings when missing)
#   2. the shipped tagger (audiomamba_micro_v2-bank53) scored on the first 64 clips of the bank's test split:
#      clip metrics (mAP, mAUC, d', F1) and event metrics (event F1, PSDS1; with sed_scores_eval)
#   3. 8 new classes the tagger never had (procedural tones): fine-tuned from the shipped tagger, and the same
#      recipe and budget from scratch (configs/main_job_new_classes.yaml), both scored on their test split
#   4. one test clip of the bank tagged with timestamped events and a plot
#   5. a compact summary (runs/main_job/summary.json)
# Usage: scripts/main_job.sh [AUDIOMAMBA]   (default: audiomamba on PATH; PYTHON: the interpreter beside it)
set -euo pipefail
AM="${1:-audiomamba}"
AM_PATH="$(command -v "$AM")"
PY="${PYTHON:-$(dirname "$AM_PATH")/python}"
[ -x "$PY" ] || PY=python3
BANK=.bank
RUN=runs/main_job
TONES=data/new_classes
STEPS=scripts/main_job_steps.py
start=$(date +%s)
rm -rf "$RUN/plots" && mkdir -p "$RUN"
SHIPPED=$("$PY" -c "from audiomamba.models.pretrained import pretrained_path; print(pretrained_path())")

if [ -f "$BANK/bank.json" ] && { [ -f "$BANK/test.ogg" ] || [ -f "$BANK/bank.ogg" ]; }; then  # bank.ogg: version 1
  echo "== 1/5 source bank: $BANK exists, reusing it"
else
  echo "== 1/5 building the source bank ($BANK) from the installed source recordings"
  # exit 1: some source files could not be read (each named above) and the bank holds the rest
  rc=0; "$AM" data bank --out "$BANK" -q || rc=$?
  [ "$rc" -le 1 ] || exit "$rc"
fi

echo "== 2/5 the shipped tagger on the bank's test split (64 clips of 10 s; recordings it never heard)"
"$AM" evaluate --checkpoint "$SHIPPED" --data "$BANK" --split test:64 --batch-size 16 --out "$RUN/shipped_test" \
  > "$RUN/shipped_test.log" 2>&1 || { tail -n 20 "$RUN/shipped_test.log"; exit 1; }

echo "== 3/5 8 new classes: fine-tuning the shipped tagger, and the same budget from scratch"
rm -rf "$TONES" && "$PY" "$STEPS" tones --out "$TONES"   # about a second; same seed, same bytes
# the two runs side by side, one core each: most of each run is single-threaded start-up (imports, model
# building, the loader), which then overlaps
arm() {
  local name=$1 init=()
  rm -rf "${RUN:?}/$name"
  [ "$name" = finetuned ] && init=("model.init_checkpoint=$SHIPPED")
  OMP_NUM_THREADS=1 "$AM" train --config configs/main_job_new_classes.yaml "train.output_dir=$RUN/$name" \
    train.threads=1 ${init[@]+"${init[@]}"} > "$RUN/$name.log" 2>&1 || { tail -n 20 "$RUN/$name.log"; return 1; }
  OMP_NUM_THREADS=1 "$AM" evaluate --checkpoint "$RUN/$name/best.safetensors" --data "$TONES" --split test \
    --batch-size 24 --no-events --out "$RUN/$name/eval_test" > "$RUN/$name/eval_test.log" 2>&1 \
    || { tail -n 20 "$RUN/$name/eval_test.log"; return 1; }
}
arm finetuned & ft=$!
arm scratch & sc=$!
wait "$ft" || exit 1
wait "$sc" || exit 1
for name in finetuned scratch; do
  echo "   $name: best validation mAP $(grep -o '"best_mAP": [0-9.]*' "$RUN/$name/summary.json" | cut -d' ' -f2)"
done

echo "== 4/5 tagging one test clip of the bank with the shipped tagger (events and a plot)"
"$PY" "$STEPS" clip --bank "$BANK" --out "$RUN/clip.wav"
"$AM" tag "$RUN/clip.wav" --events --top-k 5 --plot "$RUN/plots" --format json --output "$RUN/tag.json" --quiet

echo "== 5/5 done"
"$PY" "$STEPS" summary --run "$RUN" --seconds "$(( $(date +%s) - start ))"
