#!/usr/bin/env bash
# DAS at 1.5B, batch 256, on the CUDA backend under budget variants (step-overhead cap, chains vs trees,
# online cost refit): trace-forced longtail-bench-rounds, one JSON per variant under $OUT.
# Run on the device from the repository root with a bundle (/work/shared/tools/device-bundle) holding
# bin/longtail-bench-rounds, lib/ and traces/{skythought_short_ckpts,tot_text_gpt4_t1}.jsonl:
#   BUNDLE=.gpu-lead OUT=/tmp/out bash bench/rollout/das_budget_variants.sh
# (bench/results/rounds_gpu_2026-12-02.md)
set -uo pipefail
B=${BUNDLE:-.gpu-lead}; export LD_LIBRARY_PATH=$PWD/$B/lib
CKPT=/tmp/ck; python3 bench/replay/random_checkpoint.py --shape 1.5b --out $CKPT > /dev/null || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
run() { name=$1; shift; t0=$(date +%s)
  timeout 100 $B/bin/longtail-bench-rounds --model $CKPT --backend cuda --max-prompt-tokens 512 --max-new-tokens 1024 \
    --overprovision 2 --cost-model configs/cost_model_h200.yaml --cost-model-entry Qwen2.5-1.5B --json "$@" > $OUT/$name.json 2>> $OUT/stderr.log
  echo "$name rc=$? $(( $(date +%s) - t0 )) s"
  python3 bench/replay/rounds_summary.py "$OUT/$name.json"
}
SKY="--trace $B/traces/skythought_short_ckpts.jsonl -R 2 -G 16 --n 4 --warm-history 3 --max-running 256"
TOT="--trace $B/traces/tot_text_gpt4_t1.jsonl -R 2 -G 8 --n 4 --warm-history 2 --max-running 16"
run sky_ovh03 $SKY --modes off,das,das+apr --speculation-max-step-overhead 0.3
run sky_ovh03_chain $SKY --modes das --speculation-max-step-overhead 0.3 --token-trees false
run sky_refit $SKY --modes das,das+apr --refit-cost-model
run sky_refit_ovh03 $SKY --modes das --refit-cost-model --speculation-max-step-overhead 0.3
run sky_chain $SKY --modes das --token-trees false
run tot_ovh03 $TOT --modes off,das --speculation-max-step-overhead 0.3
run tot_refit $TOT --modes das --refit-cost-model
