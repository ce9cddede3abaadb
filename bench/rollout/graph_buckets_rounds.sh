#!/usr/bin/env bash
# The CUDA graph buckets before and after in one device call (bench/results/rounds_gpu_2026-12-02d.md):
# the CUDA tests, then trace-forced longtail-bench-rounds with the priced buckets and capture at first
# sight (the default) and with LONGTAIL_GRAPH_BUCKETS=legacy (fixed token steps, every new shape eager
# once), on random-weight Qwen2.5-1.5B in fast mode (skythought at max running 256, tot_text at 16, as
# das_budget_variants.sh) and on the bundled chain-task policy in deterministic mode (chains; a trace the
# policy itself generated, the GRPO example's workload). Bundle (/work/shared/tools/device-bundle):
# bin/{longtail-bench-rounds,longtail_policy_cuda_tests,kernels_gpu_test}, lib/, traces/{skythought_short_ckpts,
# tot_text_gpt4_t1,chain_trace}.jsonl. Run from the repository root:
#   BUNDLE=.gpu-gpuspec OUT=/tmp/out bash bench/rollout/graph_buckets_rounds.sh
# TESTS=0 skips the tests; RUNS picks runs (default: chain, sky and tot, each legacy and priced). Logs and one JSON per run go into $OUT/logs.tgz.
set -uo pipefail
B=${BUNDLE:-.gpu-gpuspec}; export LD_LIBRARY_PATH=$PWD/$B/lib
L=$OUT/logs; mkdir -p "$L"
pack() { tar czf "$OUT/logs.tgz" -C "$OUT" logs; }  # after every run: a call cut short keeps what ran
trap pack EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ "${TESTS:-1}" = 1 ]; then
  for t in kernels_gpu_test longtail_policy_cuda_tests; do
    t0=$(date +%s)
    LONGTAIL_SOURCE_DIR=$PWD timeout 240 "$B/bin/$t" > "$L/$t.log" 2>&1
    echo "=== $t exit $? ($(( $(date +%s) - t0 )) s)"
    pack
    grep -E "^\[  (PASSED|FAILED) |^\[  FAILED  \]|Failure|\[first sight\]|\[ragged graphs\]" "$L/$t.log" | head -20
  done
fi
CKPT=/tmp/ck15; python3 bench/replay/random_checkpoint.py --shape 1.5b --out $CKPT > /dev/null || exit 1
run() { name=$1; buckets=$2; shift 2; t0=$(date +%s)
  LONGTAIL_GRAPH_BUCKETS=$buckets timeout 150 "$B/bin/longtail-bench-rounds" --backend cuda --json "$@" \
    > "$L/$name.json" 2>> "$L/stderr.log"
  echo "$name rc=$? $(( $(date +%s) - t0 )) s"
  pack
  python3 bench/replay/rounds_summary.py "$L/$name.json"
  python3 - "$L/$name.json" <<'PY'
import json, sys
for m in json.load(open(sys.argv[1]))["modes"]:
    c, f = m["cuda_passes"], m["forward_passes"]
    print(f'  {m["mode"]:8s} ms/forward {1e3 * m["total_makespan_s"] / f:6.3f}  in forward {1e3 * m["forward_s"] / f:6.3f}'
          f'  replays {c["replayed"]}  captured {c["graphs_captured"]}  eager {c["graphable_eager"]}  not graphable {c["not_graphable"]}')
PY
}
COST="--cost-model configs/cost_model_h200.yaml --cost-model-entry Qwen2.5-1.5B"
SKY="--model $CKPT --trace $B/traces/skythought_short_ckpts.jsonl -R 2 -G 16 --n 4 --warm-history 3 --max-running 256
     --max-prompt-tokens 512 --max-new-tokens 1024 --overprovision 2 $COST"
TOT="--model $CKPT --trace $B/traces/tot_text_gpt4_t1.jsonl -R 2 -G 8 --n 4 --warm-history 2 --max-running 16
     --max-prompt-tokens 512 --max-new-tokens 1024 --overprovision 2 $COST"
CHAIN="--model configs/models/chain-qwen3 --trace $B/traces/chain_trace.jsonl -R 4 -G 16 --n 8 --warm-history 8
       --max-running 256 --max-prompt-tokens 512 --max-new-tokens 512 --overprovision 2 --deterministic"
for run_name in ${RUNS:-chain_legacy chain_priced sky_legacy sky_priced tot_legacy tot_priced}; do
  w=${run_name%_*}; v=${run_name#*_}; b=""; [ $v = legacy ] && b=legacy
  w=${w^^}
  run "$run_name" "$b" ${!w} --modes off,das,das+apr
done
