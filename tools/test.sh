#!/usr/bin/env bash
# Builds and runs every test: set-up (packages, Python environment, build/), the CTest suite
# (unit, Hugging Face / PyTorch oracle, CLI end-to-end), then the parsers again under
# AddressSanitizer + UBSan with clang and their libFuzzer targets for a bounded time (build-fuzz/).
#   ASCLEPIUS_FUZZ_SECONDS=N   seconds per fuzz target (default 30)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
jobs=$(nproc)

echo "== sanitizer + fuzz build (parsers, no libtorch) =="
if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DASCLEPIUS_WITH_TORCH=OFF -DASCLEPIUS_FUZZ=ON \
    -DASCLEPIUS_SANITIZE=address,undefined >/dev/null
fi
ASCLEPIUS_FUZZ_SECONDS=${ASCLEPIUS_FUZZ_SECONDS:-30} cmake build-fuzz >/dev/null
cmake --build build-fuzz -j"$jobs"
ctest --test-dir build-fuzz --output-on-failure -j"$jobs"

echo "== main suite =="
ctest --test-dir build --output-on-failure -j"$jobs"
