#!/usr/bin/env bash
# One device call: the scan sweep on channels-last inputs (the model's layout), the model A/B (eager, CUDA graph,
# training) against the checkout in BASE, and the kernel's GPU tests.  Carry .whl and BASE.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
mkdir -p "$OUT/sweep"
PYTHONPATH=/tmp/site:$PWD/src timeout 200 python3 bench/scan_sweep.py --channels-last --out "$OUT/sweep" \
  --cases "${CASES:-tiny_v2,tiny}" --fwd ${FWD:-1,2} --bwd ${BWD:-1,2} --budget-s 170 2>&1 | grep -v Warn | grep -v "^  \|^---\|Activity\|cuda\|Self" \
  | tee "$OUT/sweep/sweep.log"
TREES="$BASE src" bash bench/ab_models.sh audiomamba_tiny_v2,swin_t_htsat_like 2>&1 | grep -v "Warn\|WARN"
PYTHONPATH=/tmp/site:$PWD/src timeout 150 python3 -m pytest -q -n 12 -p no:cacheprovider tests/test_scan_triton.py -k "${TESTS:-cross_scan_forward_and_grads or half or plain}" \
  2>&1 | tail -3 | tee "$OUT/pytest.log"
