#!/usr/bin/env bash
# One device-machine call for the Triton scan: the tuning sweep (with its per-kernel profile), the GPU tests of
# the kernel, and the model throughput of tiny_v2.  Carry .whl (pytest-xdist, execnet, soundfile... wheels for
# Python 3.12); results under $OUT.
#   bash bench/gpu_scan_check.sh [sweep-cases] [models]
set -u
CASES=${1:-tiny_v2,tiny_v2_s2,tiny}
MODELS=${2:-audiomamba_tiny_v2,swin_t_htsat_like}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p "$OUT/sweep"
timeout 300 python3 bench/scan_sweep.py --out "$OUT/sweep" --cases "$CASES" --budget-s 260 2>&1 \
  | grep -v Warning | tee "$OUT/sweep/sweep.log"
timeout 200 python3 -m pytest -q -n 12 -p no:cacheprovider tests/test_scan_triton.py 2>&1 | tail -15 | tee "$OUT/pytest.log"
[ -n "$MODELS" ] && timeout 150 python3 bench/bench_gpu.py --out "$OUT/models" --sections models --models "$MODELS" 2>&1 \
  | grep -v Warning | tail -20
