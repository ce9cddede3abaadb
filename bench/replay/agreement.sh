#!/usr/bin/env bash
# Replay vs engine agreement (issue 14 item 4): longtail-replay's engine model against
# longtail-bench-rounds on the CPU backend (the real model, tiny-qwen3), both trace-forced on the same
# rollouts (bench/replay/bench_rounds_workload.py writes bench-rounds' workload as replay input).
# Prints one Markdown row per trace and mode: forwards and verified tokens of each, and their ratio.
#   bash bench/replay/agreement.sh [BUILD_DIR] [TRACE...]
# Environment: ROUNDS NGROUPS N WARM MAX_NEW THREADS (bench-rounds' -R -G --n --warm-history
# --max-new-tokens --threads; defaults those of bench/results/trees_2026-12-01.md), MAX_RUNNING and
# MAX_KV (both tools' --max-running(-sequences) and --max-kv-tokens; defaults 256 and 0 = unlimited).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
shift || true
traces=("$@")
[ ${#traces[@]} -gt 0 ] || traces=(/work/shared/traces/skythought_short_ckpts.jsonl
                                   /work/shared/traces/tot_text_gpt4_t1.jsonl
                                   /work/shared/traces/codet_humaneval_codegen16b_20.jsonl)
R=${ROUNDS:-2} G=${NGROUPS:-4} N=${N:-2} W=${WARM:-6} M=${MAX_NEW:-1024} T=${THREADS:-2}
MR=${MAX_RUNNING:-256} KV=${MAX_KV:-0}
model=configs/models/tiny-qwen3
py=${PYTHON:-/work/main/.venv/bin/python}
vocab=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$model/config.json")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| trace | mode | forwards: bench-rounds (CPU) / replay | ratio | verified tokens: bench-rounds / replay | ratio | response tokens: bench-rounds / replay |"
echo "|---|---|---|---|---|---|---|"
for trace in "${traces[@]}"; do
  name=$(basename "$trace" .jsonl)
  "$py" bench/replay/bench_rounds_workload.py "$trace" --vocab "$vocab" -R "$R" -G "$G" --n "$N" \
    --warm-history "$W" > "$tmp/$name.jsonl"
  "$build/bin/longtail-bench-rounds" --model "$model" --trace "$trace" -R "$R" -G "$G" --n "$N" \
    --warm-history "$W" --max-new-tokens "$M" --threads "$T" --max-running "$MR" --max-kv-tokens "$KV" \
    --modes das,das+apr --json > "$tmp/$name.bench.json"
  for mode in das das+apr; do
    f=1; [ "$mode" = das+apr ] && f=2
    "$build/bin/longtail-replay" "$tmp/$name.jsonl" --model "$model" --max-new-tokens "$M" \
      --max-running-sequences "$MR" --max-kv-tokens "$KV" --overprovision "$f" --json --quiet > "$tmp/$name.$f.replay.json"
    "$py" - "$tmp/$name.bench.json" "$tmp/$name.$f.replay.json" "$name" "$mode" <<'PY'
import json, sys
bench, replay, name, mode = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
m = next(x for x in bench["modes"] if x["mode"] == mode)
fw = sum(r["forward_passes"] for r in m["rounds"])
vt = sum(r["tokens_verified"] for r in m["rounds"])
rt = sum(r["response_tokens"] for r in m["rounds"])
print(f"| {name} | {mode} | {fw} / {replay['engine_steps']} | {replay['engine_steps'] / fw:.4f} | "
      f"{vt} / {replay['verified_tokens']} | {replay['verified_tokens'] / vt:.4f} | {rt} / {replay['response_tokens']} |")
PY
  done
done
