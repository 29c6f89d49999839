#!/usr/bin/env bash
# The planner against what the engine allocates, per rank, in every mode and compute dtype at 1,
# 2 and 4 ranks (within 5%), and fsdp's model state shrinking as 1/N. Usage: memory_test.sh BIN
set -uo pipefail
bin=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0
for np in 1 2 4; do
  for mode in ddp zero2 fsdp; do
    for dt in fp32 bf16; do
      timeout 120 mpirun -np $np --oversubscribe "$bin" $mode $dt >>"$out" 2>&1 || fail=1
    done
  done
done
cat "$out"
# fsdp fp32 model state on rank 0: 1 rank vs 4 ranks.
m1=$(grep 'rank 0 of 1 fsdp fp32' "$out" | sed 's/.*measured \([0-9]*\).*/\1/')
m4=$(grep 'rank 0 of 4 fsdp fp32' "$out" | sed 's/.*measured \([0-9]*\).*/\1/')
ratio=$(awk -v a="$m1" -v b="$m4" 'BEGIN { printf "%.2f", a / b }')
echo "fsdp model state, 1 rank / 4 ranks: $ratio (ideal 4)"
# Both measurements carry the allocator's bookkeeping noise (about 0.2%, either way: 4.006 seen),
# so the bound allows a little above 4; the engine's own count (checked exactly above) is 4 - padding.
awk -v r="$ratio" 'BEGIN { exit !(r > 3.8 && r < 4.1) }' || { echo "FAILED: fsdp does not shrink as 1/N"; fail=1; }
exit $fail
