#!/usr/bin/env bash
# The tests that only run with CUDA (Triton scans and layer norm against their float64 references, CUDA-graph
# training and inference, the tagger and trainer on the GPU, the timm peers), on the device machine.
#   OUT       where the log goes (default runs/gpu_tests); LIMIT_S the time limit (default 520 s); JOBS pytest-xdist
#             processes where it is installed (default 8); extra arguments go to pytest (e.g. -k scan)
# Every result is its own line of $OUT/gpu_tests.log as it happens, and at the limit pytest is interrupted (SIGINT),
# not killed, so it still prints the failures it has met: a run cut short names what failed so far.
set -uo pipefail
OUT=${OUT:-runs/gpu_tests}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c "import soundfile, soxr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD/src:/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1
jobs=()
python3 -c "import xdist" 2>/dev/null && [ "${JOBS:-8}" -gt 1 ] && jobs=(-n "${JOBS:-8}")
timeout --signal=INT --kill-after=30 "${LIMIT_S:-520}" python3 -m pytest -v -rfEs -p no:cacheprovider "${jobs[@]}" \
  tests/ops/test_scan_triton.py tests/ops/test_layer_norm.py tests/utils/test_cuda_graphs_training.py \
  tests/utils/test_cuda_graphs_inference.py tests/inference/test_tagger.py tests/models/test_peers.py \
  tests/training/test_train.py "$@" > "$OUT/gpu_tests.log" 2>&1
rc=$?
grep -E "FAILED|ERROR|passed|failed|Interrupted" "$OUT/gpu_tests.log" | grep -v "^\[gw[0-9]*\] .*PASSED" | tail -n 40
exit $rc
