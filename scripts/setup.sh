#!/usr/bin/env bash
# Installs every dependency longtail needs on a fresh Debian 12 machine (Debian packages + a Python
# virtual environment for the trainer client and tests), then configures and builds into build/.
# Idempotent: re-running only rebuilds what changed. Set LONGTAIL_CUDA=OFF for a CPU-only build.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake pkg-config git python3 python3-venv python3-dev
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libspdlog-dev libfmt-dev
  libboost-dev libboost-program-options-dev libyaml-cpp-dev nlohmann-json3-dev
  prometheus-cpp-dev libcpp-httplib-dev libsodium-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python: the trainer client package and the test tools, in a venv so nothing touches the system.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -f trainer_bridge/python/pyproject.toml ]; then
  .venv/bin/python -m pip install -q -e "trainer_bridge/python[test,fleet]"
else
  .venv/bin/python -m pip install -q numpy pyzmq msgpack pytest
fi

mkdir -p build
# Build. CUDA targets build where nvcc exists (sm_90), unless LONGTAIL_CUDA=OFF.
# ccache, when installed, lets several checkouts (worktrees) share compiled objects.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLONGTAIL_CUDA="${LONGTAIL_CUDA:-AUTO}" "${launcher[@]}" \
  -DPython3_EXECUTABLE="$PWD/.venv/bin/python" > build/configure.log 2>&1 \
  || { cat build/configure.log; exit 1; }
cmake --build build -j"$(nproc)"
