#!/usr/bin/env bash
# The sample order under real mpirun: identical global batches for 1, 2 and 4 ranks; a restored
# data state continues exactly on every rank; a coordinator error reaches every rank, exit 1.
# Usage: mpi_sampler_test.sh PROGRAM
set -uo pipefail
prog=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi=(mpirun --oversubscribe --bind-to none -np)
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
for np in 1 2 4; do
  if timeout 120 "${mpi[@]}" "$np" "$prog" "$tmp/order_$np.txt" 12 4 >"$tmp/log_$np" 2>&1; then ok
  else bad "mpirun -np $np"; cat "$tmp/log_$np"; fi
done
[[ $(wc -l <"$tmp/order_1.txt") -eq 12 ]] && ok || bad "12 steps written"
cmp -s "$tmp/order_1.txt" "$tmp/order_2.txt" && ok || bad "2 ranks see the 1-rank order"
cmp -s "$tmp/order_1.txt" "$tmp/order_4.txt" && ok || bad "4 ranks see the 1-rank order"
# 37 samples, batches of 4: 9 steps per epoch, so step 10 starts epoch 1 with a new permutation.
[[ "$(sed -n 1p "$tmp/order_1.txt")" != "$(sed -n 10p "$tmp/order_1.txt")" ]] && ok || bad "epochs differ"
timeout 120 "${mpi[@]}" 2 "$prog" "$tmp/x" 4 4 --fail >"$tmp/fail.log" 2>&1; rc=$?
[[ $rc -ne 0 ]] && ok || bad "coordinator error exits non-zero"
n=$(grep -c "error: coordinator (rank 0): corpus.h5: token 70000" "$tmp/fail.log")
[[ $n -eq 2 ]] && ok || { bad "both ranks report the coordinator error ($n)"; cat "$tmp/fail.log"; }
echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
