#!/usr/bin/env bash
# The promise of the parallel modes: for one recipe and global batch, the per-step losses and the
# weights and AdamW moments after 10 steps equal one process's within 1e-5 (fp32), whatever the
# world size, mode (ddp, zero2, fsdp), activation checkpointing and gradient accumulation — and
# whichever implementation steps the shards (train.optimizer: fused or reference).
# Usage: equivalence_test.sh ASCLEPIUS PYTHON NP   (NP = 2: world sizes 1 and 2; NP = 4: 4)
set -uo pipefail
bin=$1 py=$2 np=$3
here=$(cd "$(dirname "$0")" && pwd)
recipe=$here/../../recipes/demo/tiny.yaml
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(train.max_steps=10 train.weight_decay=0.1 train.max_grad_norm=0.5 train.threads=1
        logging.progress=false logging.tensorboard=false)
run() {  # NAME NP MODE MICRO AC [OVERRIDE...]
  local out=$tmp/$1
  timeout 300 mpirun -np "$2" --oversubscribe "$bin" train "$recipe" "${common[@]}" \
    parallel.mode="$3" train.micro_batch_size="$4" parallel.activation_checkpointing="$5" \
    "${@:6}" checkpoint.dir="$out" >"$tmp/$1.log" 2>&1 || { echo "FAIL: run $1"; cat "$tmp/$1.log"; return 1; }
  runs+=("$out")
}
runs=()
fail=0
# The reference: one process (parallel.mode none), the whole global batch (16) in one micro-batch.
timeout 300 "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=16 \
  checkpoint.dir="$tmp/reference" >"$tmp/reference.log" 2>&1 || { cat "$tmp/reference.log"; exit 1; }
if [[ $np == 2 ]]; then
  for mode in ddp zero2 fsdp; do
    run "np1-$mode" 1 "$mode" 16 false || fail=1
    run "np1-$mode-ac-accum" 1 "$mode" 4 true || fail=1
    for ac in false true; do
      run "np2-$mode-ac_$ac" 2 "$mode" 8 "$ac" || fail=1
      run "np2-$mode-ac_$ac-accum4" 2 "$mode" 2 "$ac" || fail=1
    done
    run "np2-$mode-reference-optimizer" 2 "$mode" 4 false train.optimizer=reference || fail=1
  done
else
  for mode in ddp zero2 fsdp; do
    run "np4-$mode" 4 "$mode" 4 false || fail=1
    run "np4-$mode-ac-accum2" 4 "$mode" 2 true || fail=1
  done
fi
"$py" "$here/compare_runs.py" --rtol 1e-5 "$tmp/reference" "${runs[@]}" || fail=1
if [[ $np == 4 ]]; then
  # An odd world size (units padded to a multiple of 3) and tied embeddings (the LM head is the
  # embedding, both in the root unit), against their own one-process reference.
  common+=(train.global_batch_size=12 model.tie_word_embeddings=true)
  timeout 300 "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=12 \
    checkpoint.dir="$tmp/reference-tied" >"$tmp/reference-tied.log" 2>&1 || { cat "$tmp/reference-tied.log"; exit 1; }
  runs=()
  for mode in ddp zero2 fsdp; do run "np3-tied-$mode" 3 "$mode" 2 true || fail=1; done
  "$py" "$here/compare_runs.py" --rtol 1e-5 "$tmp/reference-tied" "${runs[@]}" || fail=1
fi
exit $fail
