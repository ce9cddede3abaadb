#!/usr/bin/env bash
# The GPU measurement of issue 12 in one command, on a machine with python3 + torch + transformers
# and a GPU but no ZeroMQ/msgpack: GRPO on the bundled chain-task policy for $STEPS steps with
# speculation off, DAS, and DAS + partial rollouts (f = 2), the CUDA worker in deterministic mode,
# then the comparison table and plots (examples/grpo/compare.py) in $OUT.
#
# Needs, carried next to the repository (paths relative to its root, override by environment):
#   BUNDLE=.gpu   output of shared/tools/device-bundle: bin/longtail-worker (a CUDA build) + lib/
#   WHEELS=.whl   pyzmq and msgpack wheels for this python (pip download --only-binary :all: ...)
# Optional: STEPS (30), NGROUPS (16), SAMPLES (8), OUT ($OUT or runs/grpo_device), PYTHON (python3),
#   MODEL (configs/models/chain-qwen3), EXTRA (more train_grpo.py flags, e.g. "--tis --vcpo"),
#   FAST=1 (also run off and DAS without --deterministic, to report fast-mode curves),
#   SLEEP=1 (also run DAS with the worker asleep at level 2 while the trainer trains, weights back
#   by CUDA IPC: its reward curve must equal off's), MAIN=0 (skip the three deterministic runs),
#   WORKER_DET (backend.deterministic=true: the worker setting of the CUDA backend's deterministic mode;
#   empty = none), TRAIN_PYTHON (a python that already has everything: no venv is made),
#   DEVICE (cuda; cpu for a dry run of this script on a machine without a GPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${BUNDLE:-.gpu}
WHEELS=${WHEELS:-.whl}
STEPS=${STEPS:-30}
NGROUPS=${NGROUPS:-16}
SAMPLES=${SAMPLES:-8}
OUT=${OUT:-runs/grpo_device}
PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-configs/models/chain-qwen3}
EXTRA=${EXTRA:-}
WORKER_DET=${WORKER_DET-backend.deterministic=true}
DEVICE=${DEVICE:-cuda}

[ -x "$BUNDLE/bin/longtail-worker" ] || { echo "no $BUNDLE/bin/longtail-worker (set BUNDLE)" >&2; exit 2; }
mkdir -p "$OUT"
if [ -n "${TRAIN_PYTHON:-}" ]; then
  py=$TRAIN_PYTHON
else
  # torch and transformers come from the system; only the client's two dependencies are installed.
  "$PYTHON" -m venv --system-site-packages "$OUT/venv"
  py=$OUT/venv/bin/python
  if ! "$py" -c "import zmq, msgpack" 2>/dev/null; then
    "$py" -m pip install -q --no-index --find-links "$WHEELS" pyzmq msgpack
  fi
fi
"$py" -c "import torch, transformers, numpy; assert '$DEVICE' != 'cuda' or torch.cuda.is_available(), 'no GPU'"
export PYTHONPATH=$PWD/trainer_bridge/python:$PWD${PYTHONPATH:+:$PYTHONPATH}
export LD_LIBRARY_PATH=$PWD/$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
fi

run() {  # NAME FLAGS...
  local name=$1; shift
  echo "== $name" >&2
  "$py" -m examples.grpo.train_grpo --model "$MODEL" --out "$OUT/$name" --steps "$STEPS" \
    --groups "$NGROUPS" --samples "$SAMPLES" --device "$DEVICE" --worker-backend "$DEVICE" \
    --worker-bin "$BUNDLE/bin/longtail-worker" $EXTRA "$@" 2>&1 | tee "$OUT/$name.log"
}
det=(--deterministic)
[ -n "$WORKER_DET" ] && det+=(--worker-set "$WORKER_DET")
runs=()
if [ "${MAIN:-1}" = 1 ]; then
  run off --speculation off "${det[@]}"
  run das --speculation das "${det[@]}"
  run das-partial --speculation das --partial-rollouts 2 "${det[@]}"
  runs+=(off="$OUT/off" das="$OUT/das" das+partial="$OUT/das-partial")
fi
if [ "${FAST:-0}" = 1 ]; then
  run off-fast --speculation off
  run das-fast --speculation das
  runs+=(off-fast="$OUT/off-fast" das-fast="$OUT/das-fast")
fi
if [ "${SLEEP:-0}" = 1 ]; then
  run das-sleep --speculation das --sleep-level 2 "${det[@]}"
  runs+=(das+sleep="$OUT/das-sleep")
fi
[ ${#runs[@]} -gt 0 ] || { echo "nothing to run (MAIN=0 and neither FAST=1 nor SLEEP=1)" >&2; exit 2; }
"$py" -m examples.grpo.compare --out "$OUT/grpo_gpu" "${runs[@]}"
echo "results: $OUT/grpo_gpu.table.md, $OUT/grpo_gpu.png" >&2
