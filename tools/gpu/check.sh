#!/usr/bin/env bash
# The GPU check, prepared on CPU and not yet run on a GPU (none was lent so far). On a machine with
# an NVIDIA GPU and the staged dependencies (../shared/device/stage-deps.sh -> .devdeps/):
#   tools/gpu/check.sh OUTDIR
# builds against that machine's own libtorch with CUDA architectures 80;90, runs the CUDA tests
# (the fused AdamW kernel against the CPU loop, bit for bit) and writes logs into OUTDIR.
set -uo pipefail
out=${1:?usage: tools/gpu/check.sh OUTDIR}
mkdir -p "$out"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
[[ -f .devdeps/env.sh ]] && source .devdeps/env.sh
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
torch_prefix=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
start=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DASCLEPIUS_CUDA_ARCHITECTURES=90 -DASCLEPIUS_PYTHON=python3 >"$out/configure.log" 2>&1 &&
  cmake --build build-gpu -j"$(nproc)" --target test_trainer bench_fused_adamw >"$out/build.log" 2>&1
echo "build: rc=$? in $(( $(date +%s) - start )) s" | tee "$out/summary.txt"
build-gpu/bin/test_trainer --gtest_filter='FusedAdamW.*' >"$out/test_fused_adamw.log" 2>&1
echo "fused AdamW tests: rc=$? ($(grep -cE '^\[       OK \]' "$out/test_fused_adamw.log") ok, $(grep -c SKIPPED "$out/test_fused_adamw.log") skipped lines)" | tee -a "$out/summary.txt"
tail -n 3 "$out/test_fused_adamw.log" | tee -a "$out/summary.txt"
