#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test: the C++ suites through ctest (CUDA tests skip
# cleanly without a GPU), a bounded libFuzzer run of the protocol decoder, and the Python client's
# pytest suite against real longtail-worker processes on loopback. Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
reports=build/test-reports
rm -rf "$reports" && mkdir -p "$reports"
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900 --output-junit "$PWD/$reports/ctest.xml"
bash scripts/fuzz.sh
LONGTAIL_BUILD_DIR="$PWD/build" .venv/bin/python -m pytest -q trainer_bridge/python/tests \
  --junitxml="$reports/pytest.xml"
LONGTAIL_BUILD_DIR="$PWD/build" .venv/bin/python -m pytest -q examples --junitxml="$reports/pytest-examples.xml"
.venv/bin/python - "$reports"/*.xml <<'PY'
import sys, xml.etree.ElementTree as ET
total = failed = skipped = 0
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0) or suite.get("disabled", 0))
print(f"longtail: {total - failed - skipped} passed, {failed} failed, {skipped} skipped")
PY
