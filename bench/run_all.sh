#!/usr/bin/env bash
# One command for the speed tables of docs/benchmarks.md: JSON (and PNG where a script plots) under OUT.
#
#   OUT=results bash bench/run_all.sh              # every stage this machine can run
#   STAGES="models tag loop" OUT=results bash bench/run_all.sh
#
# Stages (a GPU stage is skipped without CUDA):
#   models  GPU: bench_gpu.py ceil,models,profile: every model (Audio Mamba sizes and the peers) in eager,
#           CUDA-graph, torch.compile and compile "reduce-overhead" modes, the headline (best against best), and
#           where tiny_v2's time goes against its floors               -> OUT/gpu/bench_gpu.json, bench_gpu.png
#           (every compiled mode is first compiled in WARM_JOBS processes side by side, then all are timed one by
#           one; RESUME=an earlier OUT/gpu/bench_gpu.json times only the modes it lacks)
#   latency GPU: bench_gpu.py kernel,latency,length (the scan kernel against copy bandwidth; batch 1, 10 s to
#           10 min)                                                     -> OUT/gpu_latency/bench_gpu.json
#   tag     GPU: Tagger.tag_files end to end on 10 s files (32 kHz mono WAV, 44.1 kHz stereo WAV and FLAC)
#           against the model's own clips/s                             -> OUT/tag_files.json
#   loop    GPU: the trainer end to end (WAV, FLAC shards; eager, cuda_graph) against the model-level step
#                                                                       -> OUT/loop/bench_train_loop.json
#   ddp     GPU: graphed training under torchrun (one NCCL process) against one process (a test)
#   cpu     CPU: `audiomamba tag` on 10 s clips and a 10-minute file on THREADS cores, next to ONNX Runtime
#                                                                       -> OUT/cpu_e2e.json
#   folders GPU if there is one, else CPU: tag_files on folders of files of many lengths, the shipped tagger:
#           short files centred in 2.5 s or not (0.3-2.5 s, 0.3-4 s), and 2.5-10 s files batched on the 0.32 s
#           grid or one length at a time            -> OUT/short_files_*.json, OUT/grid_batching.json
# Budgets: MODELS_S, TAG_S, LOOP_S, CPU_S (seconds per stage), FOLDERS_S (per benchmark of the stage). On a machine without soundfile / soxr, put their
# wheels (and cffi, pycparser) in .whl/.
set -uo pipefail
OUT=${OUT:-bench_results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c "import soundfile, soxr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
GPU=$(python3 -c "import torch; print(int(torch.cuda.is_available()))")
for stage in ${STAGES:-models latency tag loop ddp cpu folders}; do
  case $stage in models|latency|tag|loop|ddp) [ "$GPU" = 1 ] || { echo "=== $stage: skipped (no CUDA)"; continue; } ;; esac
  echo "=== $stage $(date +%T)"
  case $stage in
    models)
      timeout "${MODELS_S:-1500}" python3 bench/bench_gpu.py --out "$OUT/gpu" --sections ceil,models,profile \
        --models "${MODELS:-audiomamba_tiny_v2,swin_t_htsat_like,cnn14_panns_like,vit_b_ast_like,audiomamba_tiny,audiomamba_micro,audiomamba_nano}" \
        --compile-models "${COMPILE_MODELS:-all}" --budget-s "${COMPILE_BUDGET_S:-0}" --warm-jobs "${WARM_JOBS:-8}" \
        ${RESUME:+--resume "$RESUME"} > "$OUT/gpu.log" 2>&1
      grep "^|\|^##\|Error\|^warm\|^\[" "$OUT/gpu.log" ;;
    latency)
      timeout "${LATENCY_S:-300}" python3 bench/bench_gpu.py --out "$OUT/gpu_latency" --sections ceil,kernel,latency,length > "$OUT/gpu_latency.log" 2>&1
      grep "^|\|^##\|Error" "$OUT/gpu_latency.log" ;;
    tag)
      timeout "${TAG_S:-300}" python3 bench/bench_tag_files.py --device cuda --files "${FILES:-2048}" \
        --workers "${WORKERS:-0,8,15}" --resample both --profile --json "$OUT/tag_files.json" > "$OUT/tag_files.log" 2>&1
      grep -v "Warn" "$OUT/tag_files.log" | tail -n 25 ;;
    loop)
      timeout "${LOOP_S:-300}" python3 bench/bench_train_loop.py --out "$OUT/loop" --workers "${LOOP_WORKERS:-14}" \
        > "$OUT/loop.log" 2>&1
      grep "^|\|^##\|Error" "$OUT/loop.log" ;;
    ddp)
      timeout "${DDP_S:-240}" python3 -m pytest -q -rf -p no:cacheprovider tests/training/test_train.py \
        -k torchrun > "$OUT/ddp.log" 2>&1
      tail -n 5 "$OUT/ddp.log" ;;
    cpu)
      timeout "${CPU_S:-900}" python3 bench/bench_cpu.py --e2e --threads "${THREADS:-2}" --long-minutes 10 \
        --models audiomamba_nano,audiomamba_micro_v2 --json "$OUT/cpu_e2e.json" > "$OUT/cpu.log" 2>&1
      tail -n 20 "$OUT/cpu.log" ;;
    folders)
      if [ "$GPU" = 1 ]; then args=(--device cuda --files "${FOLDER_FILES:-512}" --workers 8 --repeats 1)
      else args=(--device cpu --files "${FOLDER_FILES:-96}" --workers 0 --threads "${THREADS:-2}"); fi
      for range in "0.3 2.5" "0.3 4.0"; do
        timeout "${FOLDERS_S:-300}" python3 bench/bench_short_files.py "${args[@]}" --seconds $range \
          --json "$OUT/short_files_${range// /-}.json"
      done > "$OUT/folders.log" 2>&1
      timeout "${FOLDERS_S:-300}" python3 bench/bench_grid_batching.py "${args[@]}" --json "$OUT/grid_batching.json" \
        >> "$OUT/folders.log" 2>&1
      grep "^|\|^#" "$OUT/folders.log" ;;
  esac
done
