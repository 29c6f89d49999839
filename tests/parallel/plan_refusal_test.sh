#!/usr/bin/env bash
# Refuse what will not fit: a run whose plan exceeds the host memory it can see stops on every
# rank before it allocates the model, with the plan's numbers and the settings that would fit
# (computed), exit non-zero, no hang; train.check_memory=false skips the check.
# 1. ddp of a 260 M-parameter model under ulimit -v 4 GB (per process): refused, and fsdp named
#    as the fix that fits.
# 2. ddp at 4 ranks of a model sized to 0.3 x this node's memory per rank: one rank would fit,
#    four on one node do not (their sum against the node's memory).
# Usage: plan_refusal_test.sh ASCLEPIUS PYTHON
source "$(dirname "$0")/lib.sh"
base=(train.threads=1 logging.progress=false logging.tensorboard=false train.max_steps=1
      checkpoint.every_steps=0 checkpoint.at_end=false data.seq_len=64 train.micro_batch_size=2
      model.preset=small model.vocab_size=4000 model.hidden_size=1024 model.intermediate_size=2816
      model.num_attention_heads=8 model.num_key_value_heads=8)
capped_mpi() {  # NP ARGS...: mpirun under a 4 GB address-space cap, 120 s at most
  local np=$1; shift
  bash -c 'ulimit -v 4000000; exec timeout 120 mpirun -np "$0" --oversubscribe --bind-to none "$@"' \
    "$np" "$bin" train "$recipe" "${base[@]}" "$@"
}

# --- 1. one process's limit ---------------------------------------------------------------
capped_mpi 2 model.num_hidden_layers=20 parallel.mode=ddp checkpoint.dir="$tmp/a" >"$tmp/a.log" 2>&1
rc=$?
cat "$tmp/a.log" | grep -v '^--\|^ *$' | head -12
check "refused: exit non-zero, not killed by the timeout (rc $rc)" "(( rc != 0 && rc != 124 ))"
check "refused on every rank with the plan's numbers" \
  "[[ \$(grep -c 'this run needs about .* GiB of host memory per rank (runtime .* model state' $tmp/a.log) -eq 2 ]]"
check "before allocating the model (no start-up report)" "! grep -q 'start-up peak resident' $tmp/a.log"
check "names the fix that fits: fsdp, with its need" \
  "grep -qE 'parallel.mode=fsdp parallel.activation_checkpointing=false would need [0-9.]+ GiB per rank \\(fits\\)' $tmp/a.log"
# The fix's figure is the plan's for that setting.
need=$(sed -n 's/.*parallel.mode=fsdp parallel.activation_checkpointing=false would need \([0-9.]*\) GiB.*/\1/p' "$tmp/a.log" | head -1)
plan=$("$bin" plan "$recipe" "${base[@]}" model.num_hidden_layers=20 parallel.mode=fsdp \
  parallel.activation_checkpointing=false --world-size 2 |
  awk '/^  peak resident/ { print $(NF - 1) }')
check "the fix's need ($need GiB) is \`asclepius plan\`'s peak resident for fsdp ($plan GiB)" \
  "awk -v a='$need' -v b='$plan' 'BEGIN { d = a - b; exit !(a > 0 && d < 0.006 && d > -0.006) }'"
# The override: the check is skipped, so the run goes on to allocate (and under this cap fails
# there, in libtorch's allocator: what the check exists to prevent).
capped_mpi 2 model.num_hidden_layers=20 parallel.mode=ddp train.check_memory=false \
  checkpoint.dir="$tmp/b" >"$tmp/b.log" 2>&1
check "train.check_memory=false skips the check" "! grep -q 'this run needs about' $tmp/b.log"

# --- 2. the ranks of one node share its memory ----------------------------------------------
node_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
# 16 bytes per parameter in ddp (fp32 weights, gradient, two moments); a layer of hidden 1024 is
# 12.6 M parameters.
layers=$(( node_kb * 1024 * 3 / 10 / 16 / 12587008 ))
one=$("$bin" plan "$recipe" "${base[@]}" model.num_hidden_layers=$layers parallel.mode=ddp --world-size 4 |
  awk '/^  peak resident/ { print $(NF - 1) }')
echo "   $layers layers: $one GiB per rank planned, node $((node_kb >> 20)) GiB"
check "one such rank would fit the node" "awk -v g=$one -v n=$node_kb 'BEGIN { exit !(g * 1048576 < n) }'"
timeout 120 mpirun -np 4 --oversubscribe --bind-to none "$bin" train "$recipe" "${base[@]}" \
  model.num_hidden_layers=$layers parallel.mode=ddp checkpoint.dir="$tmp/c" >"$tmp/c.log" 2>&1
rc=$?
grep '^error (rank 0)' "$tmp/c.log" | cut -c1-400
check "four on one node: refused on all 4 ranks, non-zero exit (rc $rc)" \
  "(( rc != 0 && rc != 124 )) && [[ \$(grep -c 'x 4 rank(s) on this node' $tmp/c.log) -eq 4 ]]"
check "and before allocating" "! grep -q 'start-up peak resident' $tmp/c.log"
exit $fail
