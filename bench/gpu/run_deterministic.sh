#!/usr/bin/env bash
# The deterministic mode's device call (issue 11): kernel and backend GPU tests (the invariance
# tests among them), compute-sanitizer memcheck + racecheck on the kernels that changed, fast vs
# deterministic step costs with rooflines (1.5B and 7B shapes), and speculation on vs off over full
# rounds in both modes (random 1.5B checkpoint, greedy and T = 1, 256 sequences, 2 rounds so the
# second drafts from the first's history), trace-forced rounds in both modes, and the PyTorch
# decode peer; kbench: the attention kernels alone, fast vs deterministic (kernels_bench
# --deterministic, and $B/bin/kernels_bench_before when the bundle has an older build to compare);
# ab: deterministic steps of the 1.5B shape at a few cells with this build and with
# $B/bin/longtail_gpu_bench_before; wake: SLEEP / WAKE_UP times of a deterministic backend. Run
# from the repository root with the bundle in .gpu/ (see /work/shared/tools/device-bundle):
#   STAGES=tests,sanitize,bench,rounds,traces,peer bash bench/gpu/run_deterministic.sh   (any order)
# Settings: MODELS (bench, default 1.5b,7b), STEPS (bench, default 5), BENCH_STAGES (bench:
# steps = no generate() part), POLICY_FILTER (gtest filter of the backend tests), SANITIZE_FILTER,
# TRACE_MODES (default "fast deterministic"), AB_SHAPES (batch:context:k,...).
# Writes logs and JSON under $OUT (with PACK=1 into one $OUT/logs.tgz, refreshed after each stage,
# since the device tool brings back at most 8 files); prints the summaries.
set -uo pipefail
B=${BUNDLE:-.gpu}
FINAL=${OUT:-/tmp/longtail_det_out}
if [ -n "${PACK:-}" ]; then OUT=/tmp/longtail_det_logs; else OUT=$FINAL; fi
STAGES=${STAGES:-tests,sanitize,bench,rounds}
mkdir -p "$OUT" "$FINAL"
export LD_LIBRARY_PATH=$PWD/$B/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv

stage_tests() {
  echo "=== kernels_gpu_test ==="
  timeout 100 "$B/bin/kernels_gpu_test" > "$OUT/kernels_gpu_test.log" 2>&1
  echo "exit $?"; grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|Failure" "$OUT/kernels_gpu_test.log" | head -20
  echo "=== longtail_policy_cuda_tests ==="
  LONGTAIL_SOURCE_DIR=$PWD timeout 240 "$B/bin/longtail_policy_cuda_tests" \
    --gtest_filter="${POLICY_FILTER:-*}" > "$OUT/policy_cuda_tests.log" 2>&1
  echo "exit $?"
  grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|differs|Failure|Expected equality|^\[wake\]" "$OUT/policy_cuda_tests.log" | head -40
}

stage_sanitize() {
  filter='KernelsGpu.QkvPost*:KernelsGpu.RmsNormRows*:KernelsGpu.SyntheticFills*:KernelsGpu.Embedding*'
  filter+=':KernelsGpuAttention.SimpleKernel*:KernelsGpuAttention.LongContext*'
  filter+=':KernelsGpuAttention.VerifyOneToSixteen*:KernelsGpuAttention.FixedSplitSize*'
  filter=${SANITIZE_FILTER:-$filter}
  for tool in memcheck racecheck; do
    echo "=== compute-sanitizer $tool ==="
    timeout 100 compute-sanitizer --tool "$tool" --error-exitcode 9 "$B/bin/kernels_gpu_test" \
      --gtest_filter="$filter" > "$OUT/sanitize_$tool.log" 2>&1
    echo "exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) " "$OUT/sanitize_$tool.log" | head
  done
}

stage_bench() {
  echo "=== fast vs deterministic steps ==="
  timeout 300 "$B/bin/longtail_gpu_bench" --compare-modes --models "${MODELS:-1.5b,7b}" \
    --steps "${STEPS:-5}" --stages "${BENCH_STAGES:-decode,verify,prefill,generate}" \
    --json "$OUT/compare_modes.json" > "$OUT/compare_modes.log" 2>&1
  echo "exit $?"; grep -E "device|compare|generate|error|Error" "$OUT/compare_modes.log" | cut -c 30-220
}

stage_kbench() {
  for bin in kernels_bench_before kernels_bench; do
    [ -x "$B/bin/$bin" ] || continue
    echo "=== $bin --deterministic ==="
    timeout 120 "$B/bin/$bin" --deterministic > "$OUT/$bin.md" 2>&1
    echo "exit $?"; grep -E "^\| qwen2.5-(1.5b|7b) \| (64|256) \| 4096 \|" "$OUT/$bin.md"
  done
}

stage_ab() {
  for bin in longtail_gpu_bench_before longtail_gpu_bench; do
    [ -x "$B/bin/$bin" ] || continue
    echo "=== $bin --deterministic --profile ==="
    timeout 120 "$B/bin/$bin" --models 1.5b --deterministic --steps 10 --json "$OUT/ab_$bin.json" \
      --profile "${AB_SHAPES:-16:512:2,64:512:2,16:512:8,64:4096:4,256:4096:4,256:4096:8}" \
      > "$OUT/ab_$bin.log" 2>&1
    echo "exit $?"; grep -E "profile|error" "$OUT/ab_$bin.log" | sed 's/^.*\] //'
  done
}

stage_wake() {
  echo "=== SLEEP / WAKE_UP, deterministic 1.5B ==="
  timeout 120 "$B/bin/longtail_gpu_bench" --models 1.5b --stages wake --steps 3 \
    --json "$OUT/wake.json" > "$OUT/wake.log" 2>&1
  echo "exit $?"; grep -E "wake|error" "$OUT/wake.log" | sed 's/^.*\] //' | tail -3
}

# Trace-forced long-tail rounds (skythought, 1.5B random shape) in both modes: the makespan ratios
# of DAS and DAS + partial rollouts to no speculation; copy ../shared/traces/skythought_short_ckpts.jsonl
# into the bundle first.
stage_traces() {
  echo "=== trace-forced rounds, both modes ==="
  [ -d /tmp/q15 ] || python3 bench/rollout/make_random_checkpoint.py --shape 1.5b --out /tmp/q15 > "$OUT/ckpt.log" 2>&1
  for det in ${TRACE_MODES:-fast deterministic}; do
    flag=""; [ "$det" = deterministic ] && flag=--deterministic
    timeout 200 "$B/bin/longtail-bench-rounds" --model /tmp/q15 --backend cuda \
      --trace "$B/skythought_short_ckpts.jsonl" -R 2 -G 30 --n 4 --warm-history 3 --max-new-tokens 4096 \
      --max-prompt-tokens 512 --cost-model configs/cost_model_h100.yaml --cost-model-entry Qwen2.5-1.5B \
      --max-running 256 --overprovision 2 $flag > "$OUT/traces_$det.log" 2>&1
    echo "$det exit $?"
    grep -E "^(off|das|das\+apr) +all|identical|differ|bitwise" "$OUT/traces_$det.log" | head -8
  done
}

# The PyTorch peer of issue 10 (a careful gpt-fast-style decode loop), same GPU, same call; copy
# ../shared/tools/torch_decode_peer.py into the bundle first.
stage_peer() {
  echo "=== PyTorch peer (torch_decode_peer.py) ==="
  PYTHONUNBUFFERED=1 timeout 200 python3 "$B/torch_decode_peer.py" > "$OUT/peer.log" 2>&1
  echo "exit $?"; grep -E "^\{" "$OUT/peer.log" | cut -c 1-200
}

stage_rounds() {
  echo "=== speculation on vs off, full rounds ==="
  python3 bench/rollout/make_random_checkpoint.py --shape 1.5b --out /tmp/q15 > "$OUT/ckpt.log" 2>&1 ||
    { echo "checkpoint failed"; tail -5 "$OUT/ckpt.log"; }
  for det in fast deterministic; do
    for t in 0 1; do
      flag=""; [ "$det" = deterministic ] && flag=--deterministic
      timeout 240 "$B/bin/longtail-bench-rounds" --model /tmp/q15 --backend cuda -R 2 -G 32 --n 8 \
        --max-new-tokens 256 --prompt-len 128 --temperature "$t" --modes off,das \
        --cost-model configs/cost_model_h100.yaml --cost-model-entry Qwen2.5-1.5B $flag \
        > "$OUT/rounds_${det}_T$t.log" 2>&1
      echo "$det T=$t exit $?"
      grep -iE "identical|differ|^das +all|^off +all" "$OUT/rounds_${det}_T$t.log" | head -8
    done
  done
}

pack() { [ -n "${PACK:-}" ] && tar czf "$FINAL/logs.tgz" -C "$OUT" . ; }
for stage in ${STAGES//,/ }; do
  t0=$(date +%s); "stage_$stage"; echo "--- stage $stage: $(( $(date +%s) - t0 )) s"; pack
done
