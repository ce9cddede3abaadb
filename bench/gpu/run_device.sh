#!/usr/bin/env bash
# The CUDA backend's one device call: correctness tests, then the benchmark program, then the HF
# generate() baseline, then the results page. Run on the GPU machine from the repository root
# with the bundle in .gpu/ (see /work/shared/tools/device-bundle):
#   COMMIT=<short hash> bash bench/gpu/run_device.sh
# Writes under $OUT: tests.log, bench.log, gpu_bench.json, cost_model_h100.yaml, hf.log,
# hf_generate.json, gpu_report.md. Env: MODELS (default 0.5b,1.5b,7b), HF_MODELS (default 1.5b),
# LONGTAIL_ATTN_WAVES (attention split target, default 2; see policy/cuda_forward.h),
# SKIP_TESTS=1, SKIP_HF=1.
set -uo pipefail
OUT=${OUT:-/tmp/longtail_gpu_out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv

tests_arg=""
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "=== correctness: tests/policy_cuda ==="
  LONGTAIL_SOURCE_DIR=$PWD timeout 150 .gpu/bin/longtail_policy_cuda_tests > "$OUT/tests.log" 2>&1
  echo "tests exit code $?"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[golden|^\[cuda vs cpu|Failure|error" "$OUT/tests.log" | head -40
  tests_arg="--tests $OUT/tests.log"
fi

echo "=== benchmark: longtail_gpu_bench ==="
timeout 300 .gpu/bin/longtail_gpu_bench --models "${MODELS:-0.5b,1.5b,7b}" --json "$OUT/gpu_bench.json" \
  --cost-model "$OUT/cost_model_h100.yaml" > "$OUT/bench.log" 2>&1
echo "bench exit code $?"
grep -E "\] (device|decode|verify batch (64|256) k (1|8|16):|prefill|generate|Qwen)|error|Error" "$OUT/bench.log" | cut -c 1-200

hf_arg=""
if [ "${SKIP_HF:-0}" != 1 ]; then
  echo "=== HF transformers generate() baseline ==="
  PYTHONUNBUFFERED=1 timeout 200 python3 bench/gpu/hf_generate.py --models "${HF_MODELS:-1.5b}" \
    --json "$OUT/hf_generate.json" > "$OUT/hf.log" 2>&1
  echo "hf exit code $?"
  tail -n 5 "$OUT/hf.log"
  hf_arg="--hf $OUT/hf_generate.json"
fi

if [ -f "$OUT/gpu_bench.json" ]; then
  python3 bench/gpu/make_report.py --bench "$OUT/gpu_bench.json" $hf_arg $tests_arg \
    --commit "${COMMIT:-unknown}" --command "COMMIT=${COMMIT:-unknown} MODELS=${MODELS:-0.5b,1.5b,7b} HF_MODELS=${HF_MODELS:-1.5b} bash bench/gpu/run_device.sh" \
    > "$OUT/gpu_report.md"
  sed -n '1,/^## Qwen/p' "$OUT/gpu_report.md"
fi
