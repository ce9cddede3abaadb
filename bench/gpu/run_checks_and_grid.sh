#!/usr/bin/env bash
# One device call: the GPU tests (kernels and backend; the backend's need the source tree at the
# path compiled into them, LONGTAIL_SRC, linked to this checkout), compute-sanitizer memcheck and
# racecheck on the sampler's tests, then the decode and verify grid of longtail_gpu_bench (batch
# 1..256 x context 512/4096 x k = 1..16, each cell beside its roofline) for MODELS, and stage ab:
# decode steps of MODELS under each of VARIANTS ("name:VAR=value,VAR=value name2:..." environment
# settings of the backend, e.g. LONGTAIL_MATVEC_ROWS=0 for cuBLAS everywhere), same process kind,
# same machine, one after another. Run from the repository root with the bundle in $B (see
# /work/shared/tools/device-bundle):
#   B=.gpu-gpu LONGTAIL_SRC=/work/wt/gpu-3 MODELS=0.5b,1.5b,7b STAGES=tests,sanitize,grid \
#     bash bench/gpu/run_checks_and_grid.sh
#   STAGES=ab VARIANTS="cublas:LONGTAIL_MATVEC_ROWS=0 matvec:" bash bench/gpu/run_checks_and_grid.sh
# Stage peer: longtail's generate() equivalent at batch 16/64/256 (1.5B) beside the PyTorch peer
# (copy ../shared/tools/torch_decode_peer.py into $B first). Stage rounds: trace-forced
# longtail-bench-rounds, no speculation / DAS / DAS + partial rollouts, skythought (max running 256)
# and tot_text (16) for each of ROUND_SHAPES (default "1.5b 7b"; traces in $B/traces/, from
# ../shared/traces/); their forwards go to $OUT/steps.tgz (--steps-jsonl, for fit_cost_model.py --steps).
# Writes logs and the bench JSON (grid.json) under $OUT and prints the summaries; with PACK=1 it
# then packs everything under $OUT into $OUT/out.tgz (the device tool returns only a few files a
# call: a combined call's logs did not all come back on 2026-12-06). Set it on a call's last run.
set -uo pipefail
B=${B:-.gpu-gpu}
OUT=${OUT:-/tmp/longtail_out}
MODELS=${MODELS:-0.5b,1.5b,7b}
STAGES=${STAGES:-tests,sanitize,grid}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$B/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv
has() { [[ ",$STAGES," == *",$1,"* ]]; }

if has tests; then
  if [ -n "${LONGTAIL_SRC:-}" ] && [ ! -e "$LONGTAIL_SRC" ]; then
    mkdir -p "$(dirname "$LONGTAIL_SRC")" && ln -sfn "$PWD" "$LONGTAIL_SRC"
  fi
  for t in kernels_gpu_test longtail_policy_cuda_tests; do
    echo "=== $t ==="
    timeout 300 "$B/bin/$t" > "$OUT/$t.log" 2>&1
    echo "exit $?"
    grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|^\[  SKIPPED|Failure|Expected|Which is" "$OUT/$t.log" | head -30
  done
fi

if has sanitize; then
  for tool in memcheck racecheck; do
    echo "=== compute-sanitizer $tool (KernelsGpuSampling) ==="
    timeout 200 compute-sanitizer --tool "$tool" --error-exitcode 9 "$B/bin/kernels_gpu_test" \
      --gtest_filter="${SANITIZE_FILTER:-KernelsGpuSampling.AgreesWithReferenceOnThousandsOfRows:KernelsGpuSampling.MaskAndProcessed*}" \
      > "$OUT/sanitize_$tool.log" 2>&1
    echo "exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) " "$OUT/sanitize_$tool.log" | head
  done
fi

if has grid; then
  echo "=== longtail_gpu_bench --stages decode,verify ($MODELS) ==="
  timeout 400 "$B/bin/longtail_gpu_bench" --models "$MODELS" --stages decode,verify --steps 10 \
    --verify-steps 8 --kmax 16 --json "$OUT/grid.json" > "$OUT/grid.log" 2>&1
  echo "exit $?"
  grep -E "copy|GEMM|verify batch (16|64|256) ctx (512|4096) k (1|8|16):|decode batch 1 " "$OUT/grid.log" | tail -60
fi

if has ab; then
  for v in ${VARIANTS:-}; do
    name=${v%%:*}; settings=${v#*:}
    echo "=== decode, variant $name ($settings) ==="
    ( IFS=','; for kv in $settings; do [ -n "$kv" ] && export "$kv"; done
      timeout 200 "$B/bin/longtail_gpu_bench" --models "$MODELS" --stages decode --steps 20 \
        --json "$OUT/ab_$name.json" > "$OUT/ab_$name.log" 2>&1 )
    echo "exit $?"
    grep -E "GB of weights|decode batch (1|2|4|8|16|64|256) ctx 512:|decode batch 1 ctx 4096" "$OUT/ab_$name.log" | sed 's/^.*\] //'
  done
fi

if has peer; then
  echo "=== longtail_gpu_bench --stages peer (1.5b) and torch_decode_peer.py ==="
  timeout 200 "$B/bin/longtail_gpu_bench" --models 1.5b --stages peer --steps 20 \
    --json "$OUT/peer_longtail.json" > "$OUT/peer_longtail.log" 2>&1
  echo "exit $?"; grep -iE "generate|tok/s" "$OUT/peer_longtail.log" | sed 's/^.*\] //' | tail -6
  PYTHONUNBUFFERED=1 timeout 200 python3 "$B/torch_decode_peer.py" > "$OUT/peer_torch.log" 2>&1
  echo "exit $?"; grep -E "^\{" "$OUT/peer_torch.log" | cut -c 1-200
fi

if has rounds; then
  for shape in ${ROUND_SHAPES:-1.5b 7b}; do
    ckpt=/tmp/ck_$shape; entry=Qwen2.5-${shape^^}
    python3 bench/replay/random_checkpoint.py --shape "$shape" --out "$ckpt" > /dev/null || continue
    common="--model $ckpt --backend cuda --json --max-prompt-tokens 512 --max-new-tokens 1024 --overprovision 2
            --cost-model configs/cost_model_h200.yaml --cost-model-entry $entry --modes off,das,das+apr"
    for w in "sky:skythought_short_ckpts:-R 2 -G 16 --n 4 --warm-history 3 --max-running 256" \
             "tot:tot_text_gpt4_t1:-R 2 -G 8 --n 4 --warm-history 2 --max-running 16"; do
      name=${w%%:*}; rest=${w#*:}; trace=${rest%%:*}; flags=${rest#*:}
      echo "=== rounds $shape $name ==="
      timeout 200 "$B/bin/longtail-bench-rounds" $common --trace "$B/traces/$trace.jsonl" $flags \
        --steps-jsonl "$OUT/steps_${shape}_$name.jsonl" \
        > "$OUT/rounds_${shape}_$name.json" 2> "$OUT/rounds_${shape}_$name.err"
      echo "exit $?"; python3 bench/replay/rounds_summary.py "$OUT/rounds_${shape}_$name.json" | head -8
    done
  done
  # Every forward of those runs, for scripts/fit_cost_model.py --steps (a few MB: one archive).
  ( cd "$OUT" && tar czf steps.tgz steps_*.jsonl 2>/dev/null && rm -f steps_*.jsonl )
fi
if [ "${PACK:-0}" = 1 ]; then
  ( cd "$OUT" && files=$(ls -A | grep -vx out.tgz) && [ -n "$files" ] && tar czf out.tgz $files && rm -rf $files )
fi
