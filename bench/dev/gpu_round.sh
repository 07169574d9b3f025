#!/usr/bin/env bash
# Glue for one GPU setup (the lent device machine: Python wheels carried in .whl/, results written under $OUT),
# not a benchmark of its own: it chains tests, benchmarks and investigation tools in one device call.
# STAGES (default "tests norm ab") picks, in order:
#   tests  the Triton kernels' GPU tests (LayerNorm, and the scan tests matching TESTS)
#   norm   bench_gpu.py's LayerNorm section (Triton vs PyTorch at the stage shapes)
#   sweep  the scan sweep on channels-last inputs (the model's layout): warps, and forward SEGMENTS per stream
#   ab     the model A/B (eager, CUDA graph, training) of the checkout in BASE against this one, peers once
#   prof   torch.profiler tables of tiny_v2 inference and training
#   compile  the models section under torch.compile (default mode): tiny_v2 and the Swin-T peer
#   host   host cost per call of the norm / scan paths, and cProfile of tiny_v2's eager forward and training step
#   graph  the CUDA-graph training tests (tests/utils/test_cuda_graphs_training.py)
#   models bench_gpu.py's models section (eager, CUDA-graph inference, training eager and CUDA-graph) for MODELS
#   loop   the real trainer's step time, eager vs train.cuda_graph (bench/bench_train_loop.py)
#   pytest GPU tests of PYTEST_FILES (default tests/utils/test_cuda_graphs_inference.py), -k PYTEST_K
#   bench  bench_gpu.py's SECTIONS (default tagger,latency,length), models section over MODELS, once per BENCH_SEGMENTS
#   explain  graph breaks and device vs wall time of the compiled tiny_v2 forward (bench/dev/compile_explain.py)
# Carry .whl, and BASE (e.g. wt_base/src) for "ab".
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD/src
for stage in ${STAGES:-tests norm ab}; do
  echo "=== $stage $(date +%T)"
  case $stage in
    tests)
      if [ -z "${SKIP_LN:-}" ]; then  # SKIP_LN=1: the scan tests only
        timeout 120 python3 -m pytest -q -x -rf -p no:cacheprovider tests/ops/test_layer_norm.py > "$OUT/pytest_ln.log" 2>&1
        grep -v "^$\|Benchmark\|warner" "$OUT/pytest_ln.log" | tail -25
      fi
      timeout ${TEST_S:-240} python3 -m pytest -q -rf --tb=short -n 12 --durations=8 -p no:cacheprovider tests/ops/test_scan_triton.py \
        -k "${TESTS:-model_layout or compile or half}" > "$OUT/pytest.log" 2>&1
      grep -v "^$\|Benchmark\|warner" "$OUT/pytest.log" | tail -25 ;;
    norm)
      timeout 120 python3 bench/bench_gpu.py --out "$OUT/norm" --sections norm 2>&1 | grep "^|\|Error\|error" ;;
    sweep)
      mkdir -p "$OUT/sweep"
      timeout ${SWEEP_S:-200} python3 bench/dev/scan_sweep.py --channels-last --out "$OUT/sweep" --cases "${CASES:-tiny_v2,tiny}" \
        --fwd "${FWD:-1,2}" --bwd "${BWD:-1,2}" --segments "${SEGMENTS:-1,4,8}" --budget-s $(( ${SWEEP_S:-200} - 30 )) 2>&1 | grep -v "Warn\|^  \|^---\|Activity\|cuda\|Self" \
        | tee "$OUT/sweep/sweep.log" ;;
    ab)
      TREES="${BASE:+$BASE }src" PEERS=${PEERS:-swin_t_htsat_like} bash bench/dev/ab_models.sh audiomamba_tiny_v2 2>&1 \
        | grep -v "Warn\|WARN" ;;
    prof)
      timeout 150 python3 bench/dev/profile_gpu.py --out "$OUT/prof" --models audiomamba_tiny_v2 --no-scan > /dev/null 2>&1 ;;
    compile)
      timeout ${COMPILE_S:-450} python3 bench/bench_gpu.py --out "$OUT/compile" --sections models \
        --models audiomamba_tiny_v2,swin_t_htsat_like --infer-modes compile,compile_ro --train-modes compile 2>&1 | grep "^|\|{'model" ;;
    graph)
      timeout ${GRAPH_S:-400} python3 -u -m pytest -v -rf --tb=short -p no:cacheprovider tests/utils/test_cuda_graphs_training.py \
        > "$OUT/pytest_graph.log" 2>&1
      grep -v "^$\|Benchmark\|warner" "$OUT/pytest_graph.log" | tail -30 ;;
    models)
      mkdir -p "$OUT/models"
      timeout ${MODELS_S:-200} python3 -u bench/bench_gpu.py --out "$OUT/models" --sections models \
        --models "${MODELS:-audiomamba_tiny_v2,swin_t_htsat_like}" 2>&1 | tee "$OUT/models/models.log" | grep "^|\|{'model\|Error\|error" ;;
    pytest)
      timeout ${PYTEST_S:-200} python3 -u -m pytest -v -rf --tb=short -p no:cacheprovider --durations=5 \
        ${PYTEST_FILES:-tests/utils/test_cuda_graphs_inference.py} -k "${PYTEST_K:-}" > "$OUT/pytest_files.log" 2>&1
      grep -v "^$\|Benchmark\|warner" "$OUT/pytest_files.log" | tail -30 ;;
    bench)
      for seg in ${BENCH_SEGMENTS:-default}; do  # BENCH_SEGMENTS="1 0": once per scan-segment setting (0: the rule)
        [ "$seg" = default ] && opt="" || opt="--segments $seg"
        timeout ${BENCH_S:-300} python3 -u bench/bench_gpu.py --out "$OUT/bench_seg$seg" --sections "${SECTIONS:-tagger,latency,length}" \
          --models "${MODELS:-audiomamba_tiny_v2,swin_t_htsat_like}" $opt 2>&1 | tee "$OUT/bench_seg$seg.log" | grep "^|\|^{\|Error\|error\|^\["
      done ;;
    loop)
      timeout ${LOOP_S:-200} python3 -u bench/bench_train_loop.py --out "$OUT/loop" --modes "${LOOP_MODES:-eager,cuda_graph}" 2>&1 | grep -v "Warn\|WARN" | tail -12 ;;
    explain)
      for mode in ${EXPLAIN_MODES:-default}; do
        timeout ${EXPLAIN_S:-150} python3 -u bench/dev/compile_explain.py --mode $mode > "$OUT/compile_explain_$mode.txt" 2>&1
        grep "graphs\|compiled\|device time\|first call\|Error" "$OUT/compile_explain_$mode.txt"
      done ;;
    host)
      timeout 60 python3 bench/dev/launch_overhead.py 2>&1 | grep "^|" | tee "$OUT/launch_overhead.txt"
      timeout 150 python3 bench/dev/host_profile.py > "$OUT/host_profile.txt" 2>&1 ;;
  esac
done
