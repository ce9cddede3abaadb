#!/usr/bin/env bash
# The main job in one command: installs and builds everything (scripts/setup.sh), then runs
# longtail-demo on the bundled trained policy (configs/models/chain-qwen3, CPU backend) over prompts
# of the chain-arithmetic task (examples/task): speculation off vs DAS speculation vs DAS + partial
# rollouts, with a check that every trajectory is identical, then the task's checker scores the
# responses (reward / pass rate). Extra arguments go to longtail-demo (e.g. --json, --rounds 5,
# --temperature 0.5; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
model=configs/models/chain-qwen3
out=build/demo
mkdir -p "$out"
.venv/bin/python -m examples.task prompts --seed 1 --count 8 > "$out/prompts.jsonl"
# RL samples at temperature 1; a --temperature given here wins.
temp=(--temperature 1); [[ " $* " == *" --temperature"* ]] && temp=()
build/bin/longtail-demo --model "$model" --prompts "$out/prompts.jsonl" --responses "$out/responses.jsonl" \
  "${temp[@]}" "$@"
score=(.venv/bin/python -m examples.task score --tokenizer "$model" "$out/responses.jsonl")
# With --json the demo's stdout stays one JSON object; the score goes to stderr.
if [[ " $* " == *" --json "* ]]; then "${score[@]}" --json >&2; else "${score[@]}"; fi
