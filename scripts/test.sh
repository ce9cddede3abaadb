#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test: the C++ suites through ctest (CUDA tests skip
# cleanly without a GPU), the Python client's pytest suite against a real worker on loopback, and a
# bounded libFuzzer run of the protocol decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900
if [ -d trainer_bridge/python/tests ]; then
  LONGTAIL_BUILD_DIR="$PWD/build" .venv/bin/python -m pytest -q trainer_bridge/python/tests
fi
if [ -f scripts/fuzz.sh ]; then
  bash scripts/fuzz.sh
fi
