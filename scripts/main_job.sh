#!/usr/bin/env bash
# The README's main job, on the built-in data: build a small soundscape set from offline recordings, train
# audiomamba_nano on the CPU for a few minutes, evaluate it on held-out recordings (clip mAP and event-based
# scores), tag one test clip with timestamped events, then tag it again with the shipped pretrained tagger.  Usage: scripts/main_job.sh [AUDIOMAMBA]
set -euo pipefail
AM="${1:-audiomamba}"
DATA=data/soundscapes
RUN=runs/default_nano
CLASSES="Speech;Bass drum;Piano;Violin, fiddle;Trumpet;Bird;Canidae, dogs, wolves;Bell;Applause;Flute"
start=$(date +%s)

if [ ! -f "$DATA/test.jsonl" ]; then
  echo "== 1/5 building the built-in soundscapes ($DATA)"
  "$AM" data soundscapes --out "$DATA" --clips 600 --duration 2 --sample-rate 16000 --events 1,2 \
    --classes "$CLASSES" --seed 0
else
  echo "== 1/5 $DATA exists: reusing it"
fi

echo "== 2/5 training audiomamba_nano (configs/default_nano.yaml)"
"$AM" train --config configs/default_nano.yaml

echo "== 3/5 evaluating on the test split (recordings never seen in training)"
"$AM" evaluate --checkpoint "$RUN/best.safetensors" --data "$DATA" --split test --out "$RUN/eval_test"

clip=$(ls "$DATA"/audio/test/*.wav | head -n 1)
echo "== 4/5 tagging $clip; its manifest line (the truth):"
grep -F "/$(basename "$clip")\"" "$DATA/test.jsonl" | head -n 1
"$AM" tag "$clip" --checkpoint "$RUN/best.safetensors" --top-k 5 --events

echo "== 5/5 the same clip through the tagger that ships with the package (53 classes, trained on a GPU)"
"$AM" tag "$clip" --top-k 5 --events --quiet

echo "== main job finished in $(( $(date +%s) - start )) s; metrics in $RUN/eval_test/summary.json"
