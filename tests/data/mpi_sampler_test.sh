#!/usr/bin/env bash
# The sample order under real mpirun: identical global batches for 1, 2 and 4 ranks; a restored
# data state continues exactly on every rank; a coordinator error reaches every rank, exit 1.
# With the asclepius binary: the same over a real corpus read by every rank, and a corpus/
# tokenizer mismatch found by the coordinator reported on every rank.
# Usage: mpi_sampler_test.sh PROGRAM ASCLEPIUS_BIN
set -uo pipefail
prog=$1 bin=$2
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
# A real corpus: every rank opens it and reads its own samples; contents equal for 1, 2, 4 ranks.
setup() { "$@" >"$tmp/setup.log" 2>&1 || { bad "setup: $*"; cat "$tmp/setup.log"; echo "$passes passed, $fails failed"; exit 1; }; }
setup "$bin" synth-notes --count 60 --seed 3 --out "$tmp/notes"
setup "$bin" tokenizer train --input "$tmp/notes/train.csv" --vocab-size 500 --out "$tmp/tok.model"
setup "$bin" tokenizer train --input "$tmp/notes/heldout.csv" --vocab-size 400 --out "$tmp/other.model"
setup "$bin" corpus build --input "$tmp/notes/train.csv" --tokenizer "$tmp/tok.model" --out "$tmp/c.h5"
for np in 1 2 4; do
  timeout 120 "${mpi[@]}" "$np" "$prog" "$tmp/corpus_$np.txt" 10 8 --corpus "$tmp/c.h5" "$tmp/tok.model" \
    >"$tmp/clog_$np" 2>&1 && ok || { bad "corpus mpirun -np $np"; cat "$tmp/clog_$np"; }
done
cmp -s "$tmp/corpus_1.txt" "$tmp/corpus_2.txt" && cmp -s "$tmp/corpus_1.txt" "$tmp/corpus_4.txt" && ok \
  || bad "ranks read the same samples from the corpus for 1, 2 and 4 ranks"
timeout 120 "${mpi[@]}" 4 "$prog" "$tmp/y" 4 8 --corpus "$tmp/c.h5" "$tmp/other.model" >"$tmp/mm.log" 2>&1
n=$(grep -c "error: coordinator (rank 0): .*c.h5 was built with tokenizer" "$tmp/mm.log")
[[ $n -eq 4 ]] && ok || { bad "all 4 ranks report the tokenizer mismatch ($n)"; cat "$tmp/mm.log"; }

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
