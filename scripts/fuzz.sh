#!/usr/bin/env bash
# Builds the libFuzzer target for the trainer-bridge message decoder with clang (address + undefined
# behaviour sanitizers) in build-fuzz/, and runs it for a bounded time over the committed seed
# corpus (trainer_bridge/fuzz/corpus). Exits non-zero on any crash, sanitizer report or leak.
# FUZZ_SECONDS overrides the run time (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
CXX_FUZZ="${CXX_FUZZ:-clang++}"
OUT=build-fuzz
mkdir -p "$OUT/corpus-new"
# The codec is three files (names, encode, decode): no CMake needed, just msgpack and nlohmann headers.
"$CXX_FUZZ" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. trainer_bridge/wire_names.cc trainer_bridge/encode.cc trainer_bridge/decode.cc trainer_bridge/fuzz/decoder_fuzz.cc -o "$OUT/decoder_fuzz"
echo "fuzz: running the decoder for ${FUZZ_SECONDS:-60} s"
# New interesting inputs go to build-fuzz/corpus-new; the committed corpus is only read.
"$OUT/decoder_fuzz" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 -artifact_prefix="$OUT/" \
  "$OUT/corpus-new" trainer_bridge/fuzz/corpus 2>&1 | tail -n 25
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "fuzz: decoder fuzzing FAILED (exit $status); crashing input saved under $OUT/" >&2
  exit "$status"
fi
echo "fuzz: decoder fuzzing passed"
