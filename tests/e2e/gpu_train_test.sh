#!/usr/bin/env bash
# Training on one GPU against the CPU path (train.device=cuda vs cpu, the same recipe and seed):
#  - parallel.mode none, fp32: per-step losses and final weights within 1e-4;
#  - bf16, and fsdp at world size 1 under mpirun (NCCL, activation checkpointing, the chunked
#    cross-entropy): within bf16 tolerance;
#  - a GPU run stopped after step 3 and resumed equals the uninterrupted GPU run.
# Exit 77 (skipped) where this build or machine has no CUDA device, CUDA kernels or NCCL.
# Usage: gpu_train_test.sh ASCLEPIUS PYTHON
source "$(dirname "$0")/../parallel/lib.sh"
"$bin" --version >"$tmp/version" 2>&1
if ! grep -q 'CUDA devices: [1-9]' "$tmp/version" || ! grep -q 'fused CUDA kernels: built' "$tmp/version" ||
   ! grep -q 'NCCL backend: built' "$tmp/version"; then
  echo "SKIP: this build or machine has no CUDA device, CUDA kernels or NCCL backend"
  cat "$tmp/version"
  exit 77
fi
common=(train.max_steps=6 checkpoint.every_steps=3 train.threads=2 logging.progress=false
        logging.tensorboard=false train.weight_decay=0.1)
run() {  # NAME [key=value ...]
  local name=$1; shift
  timeout 300 "$bin" train "$recipe" "${common[@]}" checkpoint.dir="$tmp/$name" "$@" >"$tmp/$name.log" 2>&1 ||
    { echo "FAILED: run $name"; tail -5 "$tmp/$name.log"; fail=1; }
}
mpi1() {  # NAME [key=value ...]: one rank under mpirun
  local name=$1; shift
  timeout 300 mpirun -np 1 "$bin" train "$recipe" "${common[@]}" checkpoint.dir="$tmp/$name" "$@" \
    >"$tmp/$name.log" 2>&1 || { echo "FAILED: run $name"; tail -5 "$tmp/$name.log"; fail=1; }
}
run cpu32 train.device=cpu
run gpu32 train.device=cuda
check "fp32: the GPU run equals the CPU run within 1e-4" "$py $here/../parallel/compare_runs.py --rtol 1e-4 $tmp/cpu32 $tmp/gpu32"
run cpu16 train.device=cpu train.dtype=bf16
run gpu16 train.device=cuda train.dtype=bf16
check "bf16: the GPU run equals the CPU run within 2e-2" "$py $here/../parallel/compare_runs.py --rtol 2e-2 $tmp/cpu16 $tmp/gpu16"
extra=(parallel.mode=fsdp train.dtype=bf16 parallel.activation_checkpointing=true train.loss_chunk_rows=40)
mpi1 cpu-fsdp train.device=cpu "${extra[@]}"
mpi1 gpu-fsdp train.device=cuda "${extra[@]}"
check "fsdp (NCCL, checkpointing, chunked loss), bf16: GPU equals CPU within 2e-2" \
  "$py $here/../parallel/compare_runs.py --rtol 2e-2 $tmp/cpu-fsdp $tmp/gpu-fsdp && grep -q 'mfu\|MFU' $tmp/gpu-fsdp/metrics.jsonl"
cp -r "$tmp/gpu32" "$tmp/gpu32-cut"
rm -rf "$tmp/gpu32-cut/step-0000006"
echo step-0000003 >"$tmp/gpu32-cut/latest"
run gpu32-cut train.device=cuda checkpoint.resume=auto
check "a GPU run resumed at step 3 equals the uninterrupted one" \
  "grep -q 'at step 3 of 6' $tmp/gpu32-cut.log && $py $here/../parallel/compare_runs.py --rtol 1e-5 $tmp/gpu32 $tmp/gpu32-cut"
exit $fail
