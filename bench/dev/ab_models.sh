#!/usr/bin/env bash
# A/B model throughput on the GPU machine: bench_gpu.py's models section (eager, and the inference forward
# replayed from a CUDA graph, which removes Python's launch cost) run from several source trees (this checkout's
# src/ and other checkouts' src/ directories), plus, per tree, the host time to enqueue one eager forward
# against its device time (equal: the eager number is host-bound).
# Glue for the GPU device machine: the other trees are checkouts carried to it.  bench_gpu.py imports
# audiomamba from PYTHONPATH, so each tree's own code runs.  PEERS (e.g. swin_t_htsat_like) run once, with the
# last tree.
#   TREES="wt_v4/src src" PEERS=swin_t_htsat_like bash bench/dev/ab_models.sh [models]
set -u
MODELS=${1:-audiomamba_tiny_v2}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
TREES=${TREES:-src}
for tree in $TREES; do
  echo "== $tree"
  models=$MODELS
  [ "$tree" = "${TREES##* }" ] && models="$MODELS${PEERS:+,$PEERS}"
  PYTHONPATH=/tmp/site:$PWD/$tree timeout 200 python3 bench/bench_gpu.py --out "$OUT/ab_${tree//\//_}" \
    --sections models --models "$models" 2>&1 | grep "^| [as]\|audiomamba_from"
  PYTHONPATH=/tmp/site:$PWD/$tree python3 - "$MODELS" "$tree" <<'PY'
import sys, time, torch, audiomamba
m = audiomamba.create_model(sys.argv[1].split(",")[0], num_classes=527).cuda().eval()
spec = torch.randn(64, 1001, 64, device="cuda")
def f():
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        m.forward_head(*m.forward_features(spec), spec.shape[1])
for _ in range(3): f()
host, dev = [], []
for _ in range(5):
    torch.cuda.synchronize(); s, e = torch.cuda.Event(True), torch.cuda.Event(True)
    t0 = time.perf_counter(); s.record(); f(); e.record(); host.append((time.perf_counter() - t0) * 1e3)
    e.synchronize(); dev.append(s.elapsed_time(e))
print(f"{sys.argv[2]}: host enqueue {sorted(host)[2]:.1f} ms, events {sorted(dev)[2]:.1f} ms")
PY
done
