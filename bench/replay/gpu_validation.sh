#!/usr/bin/env bash
# The replay's validation against measured GPU makespans (issue 14 item 4), device side: trace-forced
# rounds of longtail-bench-rounds on the CUDA backend, random-weight Qwen2.5 shapes, off / das /
# das+apr, one JSON per configuration under $OUT. bench/replay/gpu_compare.py then runs
# longtail-replay on the same workloads with the same cost model and tabulates predicted vs measured
# (bench/results/replay_gpu_2026-12-02.md). Run from the repository root on the device with a bundle
# (/work/shared/tools/device-bundle) holding bin/longtail-bench-rounds, lib/ and traces/*.jsonl:
#   BUNDLE=.gpu-drafter bash bench/replay/gpu_validation.sh
# CONFIGS: "name shape trace rounds groups n warm max_new max_running" rows (default below);
# BACKEND=accounting runs the same rows without a GPU (a dry run of the script).
set -uo pipefail
B=${BUNDLE:-.gpu-drafter}
OUT=${OUT:-/tmp/longtail_replay_gpu}
BACKEND=${BACKEND:-cuda}
CKPT=${CKPT:-/tmp/longtail_ckpt}
PY=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$B/lib:${LD_LIBRARY_PATH:-}
CONFIGS=${CONFIGS:-"
q15_sky   1.5b skythought_short_ckpts 2 16 4 3 1024 256
q15_tot   1.5b tot_text_gpt4_t1       2 8  4 2 1024 16
q7_sky    7b   skythought_short_ckpts 2 8  4 3 1024 256
q7_tot    7b   tot_text_gpt4_t1       2 8  4 2 1024 256
"}
printf '%s\n' "$CONFIGS" > "$OUT/configs.txt"  # what bench/replay/gpu_compare.py replays
declare -A entry=([0.5b]=Qwen2.5-0.5B [1.5b]=Qwen2.5-1.5B [7b]=Qwen2.5-7B)
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
made=""
while read -r name shape trace R G n warm cap mr; do
  [ -n "$name" ] || continue
  if [ "$made" != "$shape" ]; then  # one checkpoint at a time: the 7B shape alone is 15 GB
    rm -rf "$CKPT"
    t0=$(date +%s%N)
    "$PY" "$here/random_checkpoint.py" --shape "$shape" --out "$CKPT" || exit 1
    echo "checkpoint $shape: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    made=$shape
  fi
  t0=$(date +%s%N)
  timeout 120 "$B/bin/longtail-bench-rounds" --model "$CKPT" --backend "$BACKEND" \
    --trace "${TRACES:-$B/traces}/$trace.jsonl" -R "$R" -G "$G" --n "$n" --warm-history "$warm" \
    --max-new-tokens "$cap" --max-prompt-tokens 512 --max-running "$mr" --overprovision 2 \
    --cost-model configs/cost_model_h200.yaml --cost-model-entry "${entry[$shape]}" \
    --modes off,das,das+apr --json > "$OUT/$name.json" 2>> "$OUT/stderr.log"
  rc=$?
  echo "$name ($shape $trace R$R G$G n$n warm$warm cap$cap mr$mr): exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  "$PY" "$here/rounds_summary.py" "$OUT/$name.json" || tail -3 "$OUT/stderr.log"
done <<< "$CONFIGS"
