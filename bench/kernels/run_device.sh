#!/usr/bin/env bash
# Runs on the device machine, from the repository root, with the bundle in .gpu/kernels/ (see
# bench/results/kernels_2026-11-23.md for how it is built): the GPU kernel tests, the same tests
# under compute-sanitizer memcheck and (a subset) racecheck, then the kernel micro-benchmark.
# Logs go to $OUT; a summary is printed last.
set -u
OUT=${OUT:-/tmp/kernels_out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu/kernels/lib:${LD_LIBRARY_PATH:-}
bin=.gpu/kernels/bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1
"$bin/kernels_reference_test" > "$OUT/reference_test.log" 2>&1; ref_rc=$?
"$bin/kernels_gpu_test" > "$OUT/gpu_test.log" 2>&1; gpu_rc=$?
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
  "$bin/kernels_gpu_test" --gtest_filter='-*FullQwenVocab*' > "$OUT/memcheck.log" 2>&1; mem_rc=$?
timeout 80 compute-sanitizer --tool racecheck --error-exitcode 9 \
  "$bin/kernels_gpu_test" \
  --gtest_filter='*VerifyOneToSixteen*:*TreeMask*:*LongContext*:*Thousands*:*Argmax*:KernelsGpu.FusedAdd*:KernelsGpu.Rope*' \
  > "$OUT/racecheck.log" 2>&1; race_rc=$?
timeout 60 "$bin/kernels_bench" > "$OUT/bench.md" 2>&1; bench_rc=$?
echo "== device: $(cat "$OUT/device.txt")"
echo "== reference tests rc=$ref_rc: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/reference_test.log" | tr '\n' ' ')"
echo "== gpu tests rc=$gpu_rc: $(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$OUT/gpu_test.log" | tr '\n' ' ')"
grep -E '^\[  FAILED|Failure|error:' "$OUT/gpu_test.log" | head -20
echo "== memcheck rc=$mem_rc: $(grep -E 'ERROR SUMMARY|^\[  (PASSED|FAILED)' "$OUT/memcheck.log" | tr '\n' ' ')"
echo "== racecheck rc=$race_rc: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|^\[  (PASSED|FAILED)' "$OUT/racecheck.log" | tr '\n' ' ')"
echo "== bench rc=$bench_rc"
cat "$OUT/bench.md"
