#!/usr/bin/env bash
# The step's fixed cost (issue 10) in one device call: decode steps at batch 1..256 for each bundle
# named in BUNDLES (e.g. ".gpu/base .gpu/new": before/after in the same run, same copy bandwidth),
# T = 1 and greedy (their difference is the sampler), and an ncu kernel table of one decode step
# per PROFILE shape (batch:context:k) for the last bundle. Run from the repository root:
#   BUNDLES=".gpu/base .gpu/new" MODELS=0.5b,1.5b,7b PROFILE="1:512:1 16:512:1" bash bench/gpu/run_stepcost.sh
# TESTS=1 first runs the last bundle's kernel and backend GPU tests, and SANITIZE="gtest filter"
# compute-sanitizer memcheck + racecheck on those kernel tests.
# Writes logs and JSON into $OUT/logs.tgz; prints the decode lines and the kernel tables.
set -uo pipefail
RESULTS=${OUT:-/tmp/longtail_stepcost_out}
OUT=$RESULTS/logs  # packed into $RESULTS/logs.tgz at the end (the device tool returns few files)
mkdir -p "$OUT"
trap 'tar czf "$RESULTS/logs.tgz" -C "$RESULTS" logs && rm -rf "$OUT"' EXIT
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv,noheader
last=$(echo ${BUNDLES:-.gpu} | awk '{print $NF}')
if [ "${TESTS:-0}" = 1 ]; then
  export LD_LIBRARY_PATH=$PWD/$last/lib
  echo "=== kernels_gpu_test ==="
  timeout 120 "$last/bin/kernels_gpu_test" > "$OUT/kernels_gpu_test.log" 2>&1
  echo "exit $?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|Failure" "$OUT/kernels_gpu_test.log" | head -20
  echo "=== longtail_policy_cuda_tests ==="
  LONGTAIL_SOURCE_DIR=$PWD timeout 240 "$last/bin/longtail_policy_cuda_tests" > "$OUT/policy_cuda_tests.log" 2>&1
  echo "exit $?"
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|differs|Failure|Expected" "$OUT/policy_cuda_tests.log" | head -30
fi
if [ -n "${SANITIZE:-}" ]; then
  for tool in memcheck racecheck; do
    echo "=== compute-sanitizer $tool ==="
    timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 9 "$last/bin/kernels_gpu_test" \
      --gtest_filter="$SANITIZE" > "$OUT/sanitize_$tool.log" 2>&1
    echo "exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) " "$OUT/sanitize_$tool.log" | head
  done
fi
for B in ${BUNDLES:-.gpu}; do
  tag=$(basename "$B")
  export LD_LIBRARY_PATH=$PWD/$B/lib
  for temp in 1 0; do
    echo "=== $tag decode T=$temp ==="
    timeout 240 "$B/bin/longtail_gpu_bench" --models "${MODELS:-0.5b,1.5b,7b}" --stages decode \
      --steps "${STEPS:-20}" --temperature $temp --json "$OUT/${tag}_decode_t$temp.json" \
      > "$OUT/${tag}_decode_t$temp.log" 2>&1
    echo "exit $?"; grep -E "\] (device|decode|Qwen)|rror" "$OUT/${tag}_decode_t$temp.log" | cut -c 32-200
    [ "${GREEDY:-1}" = 1 ] || break
  done
done
for shape in ${PROFILE:-}; do
  echo "=== ncu $(basename $B) 1.5b $shape ==="
  timeout 200 ncu --clock-control none --cache-control "${NCU_CACHE:-none}" --profile-from-start off --csv --page raw \
    --metrics gpu__time_duration.sum "$B/bin/longtail_gpu_bench" --models 1.5b --profile "$shape" \
    --steps 2 > "$OUT/ncu_${shape//:/_}.csv" 2> "$OUT/ncu_${shape//:/_}.err"
  echo "exit $?"; cat "$OUT/ncu_${shape//:/_}.csv" "$OUT/ncu_${shape//:/_}.err" | grep -E "\] profile |rror" | cut -c 32-200
  python3 bench/gpu/ncu_summary.py "$OUT/ncu_${shape//:/_}.csv" 2 | head -30
done
