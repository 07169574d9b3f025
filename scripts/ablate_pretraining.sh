#!/usr/bin/env bash
# The pretraining ablation on the CPU (docs/results.md, "Pretraining against training from scratch"): the shipped
# tagger fine-tuned on an ESC-50-shaped 5-fold task of 8 tone classes it never had as labels, against the same
# recipe and budget from scratch (configs/ablate/finetune_tones.yaml); accuracy on each held-out fold, mean and
# std over the folds in RUNS/{pretrained,scratch}/eval_cv/cv_summary.json.  About 3 minutes on 2 cores.
#   AUDIOMAMBA  the CLI (default: audiomamba on PATH);  RUNS  where the runs go (default runs/tones_ablation)
set -euo pipefail
AM="${AUDIOMAMBA:-audiomamba}"
PY="${PYTHON:-$(dirname "$(command -v "$AM")")/python}"
[ -x "$PY" ] || PY=python3
RUNS="${RUNS:-runs/tones_ablation}"
DATA="$RUNS/tones_folds"
FOLDS=1,2,3,4,5
rm -rf "$RUNS" && mkdir -p "$RUNS"
"$PY" scripts/main_job_steps.py tones-folds --out "$DATA"
SHIPPED=$("$PY" -c "from audiomamba.models.pretrained import pretrained_path; print(pretrained_path())")
for arm in pretrained scratch; do
  init=()
  [ "$arm" = pretrained ] && init=("model.init_checkpoint=$SHIPPED")
  "$AM" train --config configs/ablate/finetune_tones.yaml --cv-folds "$FOLDS" "train.output_dir=$RUNS/$arm" \
    "data.root=$DATA" ${init[@]+"${init[@]}"} > "$RUNS/$arm.log" 2>&1 || { tail -n 20 "$RUNS/$arm.log"; exit 1; }
  "$AM" evaluate --checkpoint "$RUNS/$arm/fold{fold}/final.safetensors" --data "$DATA" --format esc50 --cv "$FOLDS" \
    --no-events --out "$RUNS/$arm/eval_cv" > "$RUNS/$arm/eval_cv.log" 2>&1 || { tail -n 20 "$RUNS/$arm/eval_cv.log"; exit 1; }
  "$PY" - "$RUNS/$arm/eval_cv/cv_summary.json" "$arm" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
acc = s["top1_accuracy"]
folds = ", ".join(f"{s['folds'][k]['top1_accuracy']:.3f}" for k in sorted(s["folds"]))
print(f"{sys.argv[2]}: accuracy {acc['mean']:.3f} +- {acc['std']:.3f} over folds ({folds}); mAP {s['mAP']['mean']:.3f}")
PYEOF
done
