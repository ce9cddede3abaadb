#!/usr/bin/env bash
# The main job in one command: installs and builds everything (scripts/setup.sh), then runs
# longtail-demo on the bundled checkpoint (configs/models/tiny-qwen3, CPU backend): speculation off
# vs DAS speculation vs DAS + partial rollouts, with a check that every trajectory is identical.
# Extra arguments go to longtail-demo (e.g. --json, --rounds 5, --temperature 0.8; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec build/bin/longtail-demo --model configs/models/tiny-qwen3 "$@"
