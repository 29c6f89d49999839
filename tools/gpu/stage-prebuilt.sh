#!/usr/bin/env bash
# Stages this machine's build of the binaries the GPU check runs into .gpubin/ (git-ignored), so
# that tools/gpu/check.sh can skip the build on the device (minutes of a 15-minute lease):
#   tools/gpu/stage-prebuilt.sh [BUILD_DIR]      (default: build)
# Then `run` with carry=[".devdeps", ".gpubin"]. It works because this machine's libtorch is the
# same pinned wheel as the device's (torch 2.11.0+cu130) and the other libraries travel in
# .devdeps; check.sh falls back to building there when the staged binaries do not start.
# The build must hold sm_90 code (ASCLEPIUS_CUDA_ARCHITECTURES includes 90) and the NCCL backend.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
cd "$root"
archs=$(sed -n 's/^ASCLEPIUS_CUDA_ARCHITECTURES:STRING=//p' "$build/CMakeCache.txt")
[[ ";$archs;" == *";90;"* ]] || { echo "stage-prebuilt: $build builds CUDA for '$archs', not 90" >&2; exit 1; }
"$build/bin/asclepius" --version | grep -q 'NCCL backend: built' ||
  { echo "stage-prebuilt: $build/bin/asclepius has no NCCL backend" >&2; exit 1; }
cmake --build "$build" --target test_trainer bench_fused_adamw_gpu bench_layer_kernels_gpu comm_main asclepius
rm -rf .gpubin && mkdir .gpubin
cp "$build"/bin/{asclepius,test_trainer,comm_main,bench_layer_kernels_gpu,bench_fused_adamw_gpu} .gpubin/
cp "$build/trainer/libasclepius_kernels_device.a" .gpubin/
# The tests carry the paths they were built with (ASC_SOURCE_DIR, ASC_BINARY_DIR, ASC_PYTHON):
# check.sh recreates them on the device as links to its checkout and its python3.
{
  echo "source_dir=$root"
  echo "binary_dir=$build"
  echo "python=$(sed -n 's/^ASCLEPIUS_PYTHON:[A-Z]*=//p' "$build/CMakeCache.txt")"
  echo "commit=$(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!.gpubin' || echo '+dirty')"
} >.gpubin/paths
grep -qx '/.gpubin/' .git/info/exclude 2>/dev/null || echo '/.gpubin/' >>.git/info/exclude
du -sh .gpubin
