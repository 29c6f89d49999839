#!/usr/bin/env bash
# The launch scripts across two nodes: a real two-node Slurm cluster on this machine
# (two_node_cluster.sh: each node its own network namespace, interface, IP address and hostname,
# joined by a bridge; slurmctld, one slurmd per node, munge), torn down on exit, failure and
# Ctrl-C. Skips (exit 77) with the reason where network namespaces or Slurm are not available.
# The reference is 4 ranks of the tiny recipe in fsdp on one node (plain mpirun).
#  1. sbatch --nodes=2 --ntasks-per-node=2 asclepius.sbatch: ranks on both nodes, talking over
#     TCP across the bridge (ASCLEPIUS_IFACE selects the interface), the same per-step losses and
#     final state as the reference, bit for bit;
#  2. scontrol requeue mid-run: the job restarts on both nodes, resumes from its checkpoint and
#     ends with the reference's losses and state, bit for bit;
#  3. mpirun --hostfile across the two nodes, no Slurm (its daemon started on the other node by
#     an rsh agent, as ssh would): the reference's losses, bit for bit;
#  4. a node lost mid-run (its slurmd, job step and ranks killed): the surviving ranks stop within
#     parallel.timeout_s (plus a margin), each naming the lost ranks; Slurm sees the node fail
#     and requeues the job (submitted with --nodes=1-2), which is shrunk to what remains (one node,
#     2 ranks: scontrol update) and resumes from the last checkpoint at the other world size,
#     within fp32 tolerance of the reference (compare_runs.py --rtol 1e-5: every step's loss, the
#     final weights and AdamW moments).
# Usage: slurm_two_nodes_test.sh ASCLEPIUS SOURCE_DIR PYTHON
set -uo pipefail
bin=$(realpath "$1") src=$(realpath "$2") py=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/two_node_cluster.sh"
tmp=$(mktemp -d /tmp/asc-two.XXXXXX)
cleanup() { two_nodes_down; [[ -n ${ASC_KEEP_TMP:-} ]] || rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
up_rc=0
two_nodes_up "$tmp" 2>"$tmp/up.err" || up_rc=$?
if ((up_rc == 77)); then
  echo "SKIPPED: a two-node cluster cannot start on this machine: $(cat "$tmp/up.err")"
  exit 77
elif ((up_rc)); then
  echo "FAILED: the two-node cluster did not start: $(cat "$tmp/up.err")"
  exit 1
fi
echo "cluster up: $(sinfo -h -N -o '%N(%T)' | tr '\n' ' ')"
source "$src/tests/launch/slurm_jobs.sh"  # check, submit, state, wait_done
export ASCLEPIUS_BIN=$bin ASCLEPIUS_IFACE=$(node_iface) OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
script=$src/launch/slurm/asclepius.sbatch
recipe=recipes/demo/tiny.yaml
# micro-batch 4: the global batch of 16 divides over 4 ranks (and over 2, with accumulation).
common=(parallel.mode=fsdp train.threads=1 train.micro_batch_size=4 logging.progress=false
  logging.tensorboard=false)
long=(train.max_steps=200 checkpoint.every_steps=50)
restart_now() {  # JOB: a requeued job waits ~2 min (BeginTime); start it once Slurm is done with it
  for _ in $(seq 120); do [[ $(state "$1") == PENDING ]] && break; sleep 0.5; done
  sleep 5
  scontrol update JobId="$1" StartTime=now 2>/dev/null
}
losses() { sed 's/.*"loss": *\([^,}]*\).*/\1/' "$1/metrics.jsonl"; }
same_losses() { [[ -s $1/metrics.jsonl ]] && cmp -s <(losses "$1") <(losses "$2"); }
same_state() { "$py" "$src/tests/parallel/same_state.py" "$1/step-0000200" "$2/step-0000200"; }
bridge_bytes() {  # bytes node 2's interface has received so far
  on_node 2 awk -v i="$(node_iface):" '$1 == i { print $2 }' /proc/net/dev
}
wait_steps() {  # RUN N: until RUN's metrics.jsonl has N lines (60 s at most)
  for _ in $(seq 600); do [[ -f $1/metrics.jsonl && $(wc -l <"$1/metrics.jsonl") -ge $2 ]] && return; sleep 0.1; done
}

# The reference: 4 ranks on one node.
(cd "$src" && timeout 300 mpirun -np 4 --oversubscribe "$bin" train "$recipe" "${common[@]}" "${long[@]}" \
  checkpoint.dir="$tmp/ref" >"$tmp/ref.log" 2>&1)
check "reference: 4 ranks on one node trained 200 steps" "grep -q 'trained 200 steps' $tmp/ref.log" || cat "$tmp/ref.log"

# 1. Two nodes, two ranks each.
rx0=$(bridge_bytes)
job=$(submit "$tmp/two.out" --nodes=2 --ntasks-per-node=2 "$script" "$recipe" "${common[@]}" "${long[@]}" \
  checkpoint.dir="$tmp/two")
st=$(wait_done "$job" 180)
rx=$(($(bridge_bytes) - rx0))
cat "$tmp/two.out"
check "2 nodes x 2 tasks: COMPLETED ($st) on $(scontrol show job "$job" | sed -n 's/^ *NodeList=\([^ ]*\).*/\1/p')" \
  "[[ $st == COMPLETED ]] && scontrol show job $job | grep -q '^ *NodeList=ascnode\[1-2\]'"
check "2 nodes x 2 tasks: MPI crossed the bridge ($rx bytes into node 2)" "((rx > 5000000))"
check "2 nodes x 2 tasks: the interface chosen by ASCLEPIUS_IFACE" "grep -q 'ranks talk over $(node_iface)' $tmp/two.out"
check "2 nodes x 2 tasks: per-step losses equal 4 ranks on one node's, bit for bit" "same_losses $tmp/two $tmp/ref"
check "2 nodes x 2 tasks: final weights and AdamW state equal, bit for bit" "same_state $tmp/two $tmp/ref"

# 2. scontrol requeue mid-run: restarts on both nodes, resumes, ends bit-identical.
job=$(submit "$tmp/rq.out" --nodes=2 --ntasks-per-node=2 "$script" "$recipe" "${common[@]}" "${long[@]}" \
  checkpoint.dir="$tmp/rq")
wait_steps "$tmp/rq" 70
scontrol requeue "$job"
restart_now "$job"
st=$(wait_done "$job" 180)
cat "$tmp/rq.out"
check "requeue: COMPLETED after a restart ($st)" "[[ $st == COMPLETED ]] && grep -q 'restart 1: 4 tasks' $tmp/rq.out"
check "requeue: resumed from its checkpoint" "grep -qE 'resuming .*/rq/step-[0-9]{7} at step [1-9][0-9]* of 200' $tmp/rq.out"
check "requeue: per-step losses equal the uninterrupted run's, bit for bit" "same_losses $tmp/rq $tmp/ref"
check "requeue: final weights and AdamW state equal, bit for bit" "same_state $tmp/rq $tmp/ref"

# 3. mpirun --hostfile across the nodes, without Slurm, started on node 1.
printf '%s slots=2\n' "$(node_name 1)" "$(node_name 2)" >"$tmp/hostfile"
on_node 1 bash -c "cd $src && timeout 300 mpirun --hostfile $tmp/hostfile -np 4 --mca plm_rsh_agent $TWO_NODES_RSH \
  --mca btl_tcp_if_include $(node_iface) --mca oob_tcp_if_include $(node_iface) \
  $bin train $recipe ${common[*]} ${long[*]} checkpoint.dir=$tmp/hostfile-run" >"$tmp/hostfile.log" 2>&1
rc=$?
tail -3 "$tmp/hostfile.log"
check "mpirun --hostfile, 2 nodes: trained (exit $rc)" "[[ $rc == 0 ]] && grep -q 'trained 200 steps' $tmp/hostfile.log"
check "mpirun --hostfile, 2 nodes: per-step losses equal the reference's, bit for bit" "same_losses $tmp/hostfile-run $tmp/ref"

# 4. A node lost mid-run. Checkpoints every 50 steps; node 2 goes after step 120.
timeout=10
job=$(submit "$tmp/lost.out" --nodes=1-2 --ntasks-per-node=2 "$script" "$recipe" "${common[@]}" "${long[@]}" \
  parallel.timeout_s=$timeout checkpoint.dir="$tmp/lost")
wait_steps "$tmp/lost" 120
t0=$(date +%s)
node_kill 2
for _ in $(seq 600); do
  [[ $(grep -c 'timed out after' "$tmp/lost.out") -ge 2 ]] && break
  sleep 0.1
done
took=$(($(date +%s) - t0))
check "node lost: both surviving ranks stopped in ${took}s (parallel.timeout_s=$timeout)" \
  "[[ \$(grep -cE 'rank [01] of 4: [a-z_]+ #[0-9]+ .* timed out after $timeout s' $tmp/lost.out) == 2 ]] && ((took <= timeout + 10))"
check "node lost: started on both nodes (4 tasks)" "grep -q 'restart 0: 4 tasks' $tmp/lost.out"
# Each of ranks 2 and 3 either never entered the collective ("did not arrive: ...") or entered it
# and went silent ("not heard from [by rank 0] while waiting (stopped or hung?): ..."): each
# survivor names both (rank 1 hears heartbeats from rank 0 only, which reports whom it misses).
for r in 0 1; do
  named=$(grep -m1 "rank $r of 4: .*timed out" "$tmp/lost.out" |
    grep -oE '(did not arrive: |\(stopped or hung\?\): ranks? )[0-9, ]+' | grep -oE '[0-9]+' | sort -un | tr '\n' ' ')
  check "node lost: rank $r names the lost ranks (${named:-none}; want 2 3)" "[[ '$named' == '2 3 ' ]]"
done
for _ in $(seq 120); do [[ $(state "$job") == PENDING ]] && break; sleep 0.5; done
node2=$(sinfo -h -n "$(node_name 2)" -o %T)
check "node lost: Slurm marked node 2 down ($node2) and requeued the job ($(state "$job"))" \
  "[[ \$(state $job) == PENDING && $node2 == down* ]] && scontrol show job $job | grep -q 'Restarts=1'"
# The job asked for 1-2 nodes, but its requeued record keeps the size it ran at (2 nodes, 4 tasks):
# shrink it to what remains (one node, 2 tasks), as an operator would, and let it run there.
scontrol update JobId="$job" NumNodes=1-1 NumTasks=2 NumCPUs=2 MinCPUsNode=2 ||
  echo "FAILED: scontrol update of the requeued job's size"
restart_now "$job"
st=$(wait_done "$job" 180)
[[ $st == COMPLETED ]] || scontrol show job "$job"
cat "$tmp/lost.out"
check "node lost: the job's output says the node failed" "grep -qE 'Node failure on $(node_name 2)|DUE TO NODE FAILURE' $tmp/lost.out"
check "node lost: the job ran again on one node with 2 tasks ($st)" \
  "[[ $st == COMPLETED ]] && grep -q 'restart 1: 2 tasks' $tmp/lost.out"
check "node lost: resumed from the last checkpoint (step 100) at 2 ranks" \
  "grep -qE 'resuming .*/lost/step-0000100 at step 100 of 200' $tmp/lost.out"
check "node lost: losses and final state within fp32 tolerance of the uninterrupted run" \
  "$py $src/tests/parallel/compare_runs.py --rtol 1e-5 $tmp/ref $tmp/lost"
exit $fail
