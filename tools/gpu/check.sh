#!/usr/bin/env bash
# The GPU check: one prepared command for a machine with an NVIDIA GPU and the staged dependencies
# (../shared/device/stage-deps.sh .devdeps pkgconf pkgconf-bin libpkgconf3 -> .devdeps/):
#   tools/gpu/check.sh OUTDIR [PART ...]
# Uses the binaries staged in .gpubin/ by tools/gpu/stage-prebuilt.sh when they start there (the
# same pinned libtorch; CHECK_BUILD=1 forces a build), else builds against that machine's own
# libtorch for sm_90. Then runs the PARTs in the order given, each only while the time budget
# (CHECK_BUDGET_S, default 540 s from the start, build included) lasts, so the command ends inside
# the device's 10-minute limit with a summary of what it reached:
#   tests   the CUDA tests: fused AdamW against the CPU loop bit for bit, the flat optimizer and
#           training steps on the GPU against the CPU, each fused layer kernel (RMSNorm, SwiGLU,
#           rotary, chunked cross-entropy) against the libtorch reference over odd shapes
#   e2e     training on the GPU against the CPU (tests/e2e/kernel_train_test.sh, = ctest gpu.train)
#   sanitize the kernel tests under compute-sanitizer memcheck and racecheck
#   bench   each layer kernel's GB/s against a device copy in the same run
#   train   llama2-7b shapes, 4 layers, seq 2048: tokens/s, MFU and the GPU peak against the plan,
#           against transformers + AdamW(fused=True) (tools/bench/gpu_train.py)
#   train32 the same benchmark with all 32 layers (CHECK_TRAIN_ARGS adds gpu_train.py flags)
#   nccl    the NCCL backend's collectives at one rank
#   adamw   the fused AdamW step against torch.optim.AdamW(fused=True) (measured before)
#   decode  `generate --device cuda`: greedy ids against --device cpu (fp32 equal, bf16
#           agreement) and bf16 tokens/s against transformers' generate (tools/bench/decode_gpu.py)
# Default: tests e2e train bench decode (decode last: it runs only while the budget lasts). Logs
# and JSON go into OUTDIR, a summary last. The device tool brings back at most 8 files from $OUT:
# with CHECK_PACK_TO=DIR (e.g. OUTDIR=/tmp/gpu CHECK_PACK_TO=$OUT), DIR receives summary.txt,
# OUTDIR packed as gpu.tgz (profiler traces gzipped inside it, any over 15 MB left out) and
# nothing else.
set -uo pipefail
out=${1:?usage: tools/gpu/check.sh OUTDIR [PART ...]}
shift
parts=("$@")
((${#parts[@]})) || parts=(tests e2e train bench decode)
t_start=$(date +%s)
budget=${CHECK_BUDGET_S:-540}
left() { echo $((budget - ($(date +%s) - t_start))); }
# limit WANTED: the timeout for a step, capped by the time left (0: skip the step).
limit() { local l; l=$(($(left) - 5)); ((l > $1)) && l=$1; ((l < 20)) && l=0; echo $l; }
mkdir -p "$out"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
summary="$out/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

if [[ -f .devdeps/env.sh ]]; then
  source .devdeps/env.sh >"$out/env.log" 2>&1
  # The staged .pc files say prefix=/usr: point pkg-config at them and re-root their paths.
  export PKG_CONFIG_SYSROOT_DIR=/opt/deps
  export PKG_CONFIG_PATH=/opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig:/opt/deps/usr/share/pkgconfig
fi
pc=$(command -v pkg-config || echo /opt/deps/usr/bin/pkgconf)
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
note "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
torch_prefix=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
note "torch: $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)')"

# prebuilt: use .gpubin/ when its binaries start here. The tests were compiled with the paths
# of the machine that built them (ASC_SOURCE_DIR, ASC_BINARY_DIR, ASC_PYTHON): they are made here
# as links to this checkout, .gpubin and python3 where nothing is at those paths yet.
prebuilt() {
  [[ -f .gpubin/paths && -z ${CHECK_BUILD:-} ]] || return 1
  local src bdir py nv
  src=$(sed -n 's/^source_dir=//p' .gpubin/paths)
  bdir=$(sed -n 's/^binary_dir=//p' .gpubin/paths)
  py=$(sed -n 's/^python=//p' .gpubin/paths)
  nv=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "..", "nvidia"))')
  export LD_LIBRARY_PATH=$nv/nccl/lib:$nv/cu13/lib:${LD_LIBRARY_PATH:-}
  [[ -e $src ]] || { mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"; }
  [[ $(cd "$src" && pwd -P) == $(pwd -P) ]] || { note "prebuilt: $src is not this checkout"; return 1; }
  [[ -e $bdir/bin ]] || { mkdir -p "$bdir" && ln -s "$root/.gpubin" "$bdir/bin"; }
  [[ -e $py ]] || { mkdir -p "$(dirname "$py")" && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >"$py" && chmod +x "$py"; }
  .gpubin/asclepius --version >"$out/version.txt" 2>&1
  if ! grep -q 'CUDA devices: [1-9]' "$out/version.txt"; then
    note "prebuilt: .gpubin/asclepius does not start or sees no GPU:"; tail -n 5 "$out/version.txt" | tee -a "$summary"
    return 1
  fi
  note "prebuilt: .gpubin ($(sed -n 's/^commit=//p' .gpubin/paths)), $(grep -E 'NCCL backend' "$out/version.txt")"
}
if prebuilt; then
  bin=.gpubin kernels_a=.gpubin/libasclepius_kernels_device.a
else
  bin=build-gpu/bin kernels_a=build-gpu/trainer/libasclepius_kernels_device.a
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DPKG_CONFIG_EXECUTABLE="$pc" -DASCLEPIUS_CUDA_ARCHITECTURES=90 -DASCLEPIUS_PYTHON=python3 \
    >"$out/configure.log" 2>&1 &&
    cmake --build build-gpu -j"$(nproc)" --target test_trainer bench_fused_adamw_gpu bench_layer_kernels_gpu comm_main asclepius -- -k 0 \
      >"$out/build.log" 2>&1
  rc=$?
  note "build: rc=$rc in $(($(date +%s) - t_start)) s"
  if [[ $rc != 0 ]]; then
    tail -n 5 "$out/configure.log"
    grep -E "error|FAILED" "$out/build.log" | head -40
    exit 1
  fi
  "$bin/asclepius" --version >"$out/version.txt" 2>&1
fi

cuobjdump --dump-sass "$kernels_a" 2>&1 |
  grep -oE "(LDG|STG)\.E[.A-Z0-9]*" | sort | uniq -c >"$out/sass_mem_ops.txt"
note "global loads/stores in the kernels' SASS: $(tr -s ' \n' ' ' <"$out/sass_mem_ops.txt")"

# step NAME SECONDS CMD...: CMD under a timeout capped by the time left; rc in $rc (137: timed
# out; skipped and rc=-1 when too little time is left). A timed-out step is killed outright (a
# SIGTERM would make asclepius save a checkpoint: 94 GB at 7B), with whatever it started in other
# process groups (the inner timeouts, mpirun), and its scratch run directories go.
step() {
  local name=$1 t; t=$(limit "$2"); shift 2
  if ((t == 0)); then note "$name: skipped (time budget spent)"; rc=-1; return; fi
  timeout -s KILL "$t" "$@"; rc=$?
  if ((rc == 137)); then
    pkill -KILL -f "$bin/|tools/bench/gpu_train.py|kernel_train_test.sh" 2>/dev/null
    pkill -KILL mpirun 2>/dev/null
    rm -rf /tmp/asc-gpu-train-*
  fi
}

part_tests() {
  step "CUDA tests" 240 "$bin/test_trainer" \
    --gtest_filter='FusedAdamW.*:FlatAdamW.*:*FlatVsReference*:LayerOps.*' >"$out/test_cuda.log" 2>&1
  note "CUDA tests: rc=$rc ($(grep -cE '^\[       OK \]' "$out/test_cuda.log") ok," \
    "$(grep -cE '^\[  SKIPPED \] [A-Z]' "$out/test_cuda.log") skipped," \
    "$(grep -cE '^\[  FAILED  \] [A-Z]' "$out/test_cuda.log") failed)"
  grep -E 'relative difference|FAILED|Failure' "$out/test_cuda.log" | head -20 | tee -a "$summary"
}

part_e2e() {
  step "GPU training against CPU" 240 bash tests/e2e/kernel_train_test.sh "$bin/asclepius" \
    python3 >"$out/gpu_train_test.log" 2>&1
  note "GPU training against CPU: rc=$rc $(grep -cE '^ok' "$out/gpu_train_test.log") ok, $(grep -cE '^FAILED' "$out/gpu_train_test.log") failed"
  grep -E '^FAILED|^FAIL |^SKIP' -A5 "$out/gpu_train_test.log" | head -30 | tee -a "$summary"
}

part_sanitize() {
  for tool in memcheck racecheck; do
    step "compute-sanitizer $tool" 150 compute-sanitizer --tool $tool --error-exitcode 9 \
      "$bin/test_trainer" \
      --gtest_filter='FusedAdamW.CudaKernelEqualsCpuLoop:LayerOps.CudaKernelsMatchTheReferenceOverOddShapes' \
      >"$out/$tool.log" 2>&1
    note "compute-sanitizer $tool: rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$tool.log" | tail -1)"
    grep -E '^========= (Invalid|Error|Race|.*hazard)' "$out/$tool.log" | sort | uniq -c | head -8 | tee -a "$summary"
  done
}

part_bench() {
  step "layer kernels bench" 90 "$bin/bench_layer_kernels_gpu" 4096 50 \
    >"$out/layer_kernels_gpu.json" 2>"$out/layer_kernels_gpu.log"
  note "layer kernels bench: rc=$rc"
  python3 - "$out/layer_kernels_gpu.json" <<'PY' 2>/dev/null | tee -a "$summary"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  device copy {r['copy_GBps']:.0f} GB/s")
for k in r["kernels"]:
    print(f"  {k['name']}: {k['ms']:.3f} ms, {k['GBps']:.0f} GB/s ({k['fraction_of_copy']:.0%} of copy)")
PY
}

train_bench() {  # LAYERS SECONDS [gpu_train.py flags]
  local layers=$1 secs=$2; shift 2
  PYTHONUNBUFFERED=1 step "llama2-7b shape, $layers layers" "$secs" python3 tools/bench/gpu_train.py \
    --bin "$bin/asclepius" --layers "$layers" --steps 6 --warmup 2 "$@" \
    --json "$out/gpu_train_$layers.json" >"$out/gpu_train_$layers.log" 2>&1
  note "llama2-7b shape, $layers layers, seq 2048 $*: rc=$rc $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); o=r['ours']; p=r.get('peer',{}); print(f\"ours {o['tokens_per_s']:.0f} tok/s mfu {o['mfu']:.1%} peak {o['peak_bytes']/2**30:.1f} GiB (plan {r.get('plan_error',float('nan')):+.1%}); peer {p.get('tokens_per_s',float('nan')):.0f} tok/s peak {p.get('peak_bytes',0)/2**30:.1f} GiB {p.get('error','')}; speedup {r.get('speedup',float('nan')):.2f}x\")" "$out/gpu_train_$layers.json" 2>&1 | tail -1)"
  [[ $rc == 0 ]] || tail -n 8 "$out/gpu_train_$layers.log" | tee -a "$summary"
}
part_train() { train_bench 4 180; }
# shellcheck disable=SC2086  # CHECK_TRAIN_ARGS is a list of flags
part_train32() { train_bench 32 420 ${CHECK_TRAIN_ARGS:-}; }

part_nccl() {
  grep -E "NCCL backend" "$out/version.txt" | tee -a "$summary"
  step "NCCL collectives" 120 mpirun -np 1 "$bin/comm_main" collectives cuda >"$out/nccl.log" 2>&1
  note "NCCL collectives (1 rank): rc=$rc $(grep -E 'collectives, [0-9]+ failures' "$out/nccl.log")"
  grep -E "FAIL|error" "$out/nccl.log" | head -5 | tee -a "$summary"
}

part_adamw() {
  for n in 100000000 1000000000; do
    PYTHONUNBUFFERED=1 step "fused AdamW bench numel=$n" 200 python3 tools/bench/fused_adamw_gpu.py \
      --bench "$bin/bench_fused_adamw_gpu" --numel $n --iters 30 \
      --json "$out/fused_adamw_gpu_$n.json" >"$out/bench_$n.log" 2>&1
    note "fused AdamW bench numel=$n: rc=$rc"
    python3 - "$out/fused_adamw_gpu_$n.json" <<'PY' 2>/dev/null | tee -a "$summary"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  ours {r['ours_ms']:.3f} ms = {r['ours_GBps']:.0f} GB/s ({r['fraction_of_copy']:.0%} of copy {r['copy_GBps']:.0f} GB/s);"
      f" torch fused {r['torch_fused_ms']:.3f} ms -> {r['speedup_vs_torch_fused']:.2f}x;"
      f" foreach {r['torch_foreach_ms']:.3f} ms -> {r['speedup_vs_torch_foreach']:.2f}x;"
      f" bf16 out {r['ours_bf16out_GBps']:.0f} GB/s, bf16 grad+out {r['ours_bf16grad_bf16out_GBps']:.0f} GB/s,"
      f" norm+clip {r['ours_with_norm_clip_GBps']:.0f} GB/s")
PY
  done
}

part_decode() {
  PYTHONUNBUFFERED=1 step "generate on the GPU" 150 python3 tools/bench/decode_gpu.py \
    --bin "$bin/asclepius" --device cuda --prompts 32 --new 64 --batch 8 --rounds 2 \
    --json "$out/decode_gpu.json" >"$out/decode_gpu.log" 2>&1
  note "generate --device cuda: rc=$rc (rc 1: fp32 greedy ids differ from the CPU's)"
  grep -E '^(greedy ids|bf16 on)' "$out/decode_gpu.log" | tee -a "$summary"
  ((rc == 0 || rc == 1)) || tail -n 8 "$out/decode_gpu.log" | tee -a "$summary"
}

for p in "${parts[@]}"; do
  if [[ $(type -t "part_$p") == function ]]; then "part_$p"; else note "unknown part '$p'"; fi
done
note "total: $(($(date +%s) - t_start)) s of the ${budget} s budget"
if [[ -n ${CHECK_PACK_TO:-} ]]; then
  mkdir -p "$CHECK_PACK_TO"
  for t in "$out"/*_trace.json; do
    [[ -f $t ]] || continue
    python3 tools/bench/trace_summary.py "$t" --top 15 >"$t.summary.txt" 2>&1
    gzip -f "$t"
    (($(stat -c %s "$t.gz") < 15000000)) || { rm -f "$t.gz"; note "packed: $(basename "$t") left out (over 15 MB gzipped)"; }
  done
  cp "$summary" "$CHECK_PACK_TO/summary.txt"
  tar czf "$CHECK_PACK_TO/gpu.tgz" --exclude=gpu.tgz -C "$(dirname "$out")" "$(basename "$out")"
fi
echo "=== summary ==="
cat "$summary"
