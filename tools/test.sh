#!/usr/bin/env bash
# Builds and runs every test: set-up (packages, Python environment, build/), the parsers under
# AddressSanitizer + UBSan with clang and their libFuzzer targets for a bounded time (build-fuzz/),
# the CTest suite (unit, Hugging Face / PyTorch oracle, CLI end-to-end, mpirun, Slurm), and on an
# AVX-512 machine the numerical tests again on the AVX2 paths.
#   ASCLEPIUS_FUZZ_SECONDS=N   seconds per fuzz target (default 30)
#   tools/test.sh --scale [--small]   instead of the suite: the 1.1B-parameter run on this machine
#                              (tools/scale/tinyllama_1b.sh; needs ~20 GB free; --small: 58 M)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
jobs=$(nproc)
if [[ ${1:-} == --scale ]]; then
  shift
  exec "$root/tools/scale/tinyllama_1b.sh" "$@"
fi

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

# Float results differ in the last bits between AVX-512 and AVX2-only CPUs (docs/
# reproducibility.md). On an AVX-512 machine the numerical tests run once more with libtorch,
# oneDNN, MKL and our fused loop on their AVX2 paths, so one machine checks what both kinds of
# machine compute; on an AVX2-only machine the pass above already was the AVX2 one.
if grep -qw avx512f /proc/cpuinfo; then
  echo "== numerical tests again on the AVX2 paths =="
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    ASCLEPIUS_CPU_ISA=avx2 ctest --test-dir build --output-on-failure -j"$jobs" -L numeric
fi
