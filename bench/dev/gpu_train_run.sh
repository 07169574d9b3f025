#!/usr/bin/env bash
# One-GPU training run on the built-in data through torchrun (NCCL, bf16 autocast, Triton scan), the run of
# docs/training.md ("One GPU on the built-in data").  Glue for one GPU setup: run on the lent device machine with
#   carry: .whl (soundfile, cffi, pycparser, soxr wheels for Python 3.12) and data/soundscapes
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
MODEL=${MODEL:-audiomamba_tiny_v2}
start=$(date +%s)
torchrun --nproc_per_node=1 -m audiomamba train --config configs/default_nano.yaml --quiet \
  model.name="$MODEL" train.precision=bf16 train.batch_size=64 train.eval_batch_size=64 train.epochs="${EPOCHS:-30}" \
  data.clip_seconds=2.0 optim.lr=1e-3 optim.warmup_steps=20 train.eval_every_epochs=10 train.checkpoint_every=100 \
  train.output_dir=/tmp/run
echo "train wall: $(( $(date +%s) - start )) s"
python3 -m audiomamba evaluate --checkpoint /tmp/run/best.safetensors --data data/soundscapes --split test --out /tmp/run/eval_test
cp /tmp/run/summary.json "$OUT/train_summary.json"; cp /tmp/run/metrics.jsonl "$OUT/metrics.jsonl"
cp /tmp/run/eval_test/summary.json "$OUT/eval_summary.json"; cp /tmp/run/eval_test/per_class.csv "$OUT/per_class.csv"
nvidia-smi --query-gpu=name --format=csv,noheader
