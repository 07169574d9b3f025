#!/bin/bash
# Side-by-side timing of two scan_triton versions (the working tree's src/ and a second checkout's src/, e.g. a
# branch worktree) with bench/scan_sweep.py on the GPU machine; logs and JSON under $OUT/<name>/.
#   bash bench/run_sweep_v4_v5.sh wt_v5/src
set -u
OTHER=${1:?second source tree}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv
run() {  # name src case fwd bwd seconds
  mkdir -p "$OUT/$1"
  PYTHONPATH=$PWD/$2 timeout "$6" python3 bench/scan_sweep.py --out "$OUT/$1" --cases "$3" --fwd "$4" --bwd "$5" \
    --budget-s $(($6 - 40)) 2>&1 | tee "$OUT/$1/$3.log" | grep -v Warning
}
run main src tiny_v2 2x64x1 4x2 110
run other "$OTHER" tiny_v2 4x64x1,2x64x1,4x128x1 4x2,8x2 170
run main src tiny 4x32x1 8x2 100
run other "$OTHER" tiny 4x32x1 8x2 100
