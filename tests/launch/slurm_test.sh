#!/usr/bin/env bash
# The launch scripts against a real Slurm: a one-node cluster started on this machine
# (slurm_cluster.sh; daemons stopped on exit, also when a check fails). Skips (exit 77) with the
# reason when Slurm cannot start here.
#  1. sbatch the tiny demo recipe with 2 tasks through launch/slurm/asclepius.sbatch: completes,
#     checkpoint written;
#  2. scontrol requeue, and SIGUSR1 (the time-limit signal) mid-run: the job saves, restarts,
#     resumes from its checkpoint and ends with the same final loss and weights (bit for bit) as
#     an uninterrupted 2-rank run;
#  3. ASCLEPIUS_MAX_RESTARTS=0 and a requeue: the restarted job refuses to start again;
#  4. bad input fails fast with the reason in the job's output: a missing recipe, a task count
#     that does not divide the global batch, a run directory whose parent does not exist;
#  5. submit_two_stage.sh: the second job waits for the first (afterok) and starts from its run.
# Usage: slurm_test.sh ASCLEPIUS SOURCE_DIR
set -uo pipefail
bin=$(realpath "$1") src=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
source "$here/slurm_cluster.sh"
tmp=$(mktemp -d /tmp/asc-slurm.XXXXXX)
trap 'slurm_down; [[ -n ${ASC_KEEP_TMP:-} ]] || rm -rf "$tmp"' EXIT
if ! slurm_up "$tmp/cluster" 2>"$tmp/up.err"; then
  echo "SKIPPED: Slurm could not start on this machine: $(cat "$tmp/up.err")"
  exit 77
fi
source "$src/tests/launch/slurm_jobs.sh"  # check, submit, state, wait_done
export ASCLEPIUS_BIN=$bin OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
script=$src/launch/slurm/asclepius.sbatch
recipe=recipes/demo/tiny.yaml
common=(parallel.mode=fsdp train.threads=1 logging.progress=false logging.tensorboard=false)

# 1. A plain 2-task job.
job=$(submit "$tmp/one.out" -n 2 "$script" "$recipe" "${common[@]}" train.max_steps=10 checkpoint.dir="$tmp/one")
st=$(wait_done "$job" 180)
cat "$tmp/one.out"
check "sbatch 2 tasks: COMPLETED ($st)" "[[ $st == COMPLETED ]]"
check "sbatch 2 tasks: checkpoint written" "grep -qx step-0000010 $tmp/one/latest && [[ -f $tmp/one/step-0000010/manifest.pb ]]"

# 2. Interrupted mid-run, then resumed from the checkpoint it saved; the final loss and weights
#    equal an uninterrupted run's bit for bit. Two ways: the scheduler requeues the job (SIGTERM),
#    and the time-limit signal (SIGUSR1, what --signal=USR1@180 sends) after which the script
#    requeues the job itself.
long=(train.max_steps=200 checkpoint.every_steps=50)
(cd "$src" && mpirun -np 2 "$bin" train "$recipe" "${common[@]}" "${long[@]}" checkpoint.dir="$tmp/straight" >/dev/null 2>&1)
last() { tail -n 1 "$1/metrics.jsonl" | sed 's/.*"loss": *\([^,]*\).*/\1/'; }
interrupted() {  # NAME HOW(requeue|usr1)
  local name=$1 how=$2 job st
  job=$(submit "$tmp/$name.out" -n 2 "$script" "$recipe" "${common[@]}" "${long[@]}" checkpoint.dir="$tmp/$name")
  for _ in $(seq 600); do [[ -f $tmp/$name/metrics.jsonl && $(wc -l <"$tmp/$name/metrics.jsonl") -ge 20 ]] && break; sleep 0.1; done
  if [[ $how == requeue ]]; then
    scontrol requeue "$job"
  else
    scancel --signal=USR1 "$job"
  fi
  for _ in $(seq 120); do [[ $(state "$job") == PENDING ]] && break; sleep 0.5; done
  # A requeued job is held back 2 minutes (BeginTime); start it sooner, once Slurm has finished
  # with the old instance (an immediate restart can collide with its step's teardown).
  sleep 5
  scontrol update JobId="$job" StartTime=now 2>/dev/null
  st=$(wait_done "$job" 300)
  cat "$tmp/$name.out"
  check "$name: COMPLETED after a restart ($st)" "[[ $st == COMPLETED ]] && grep -q 'restart 1:' $tmp/$name.out"
  check "$name: resumed from its checkpoint" "grep -qE 'resuming .*/$name/step-[0-9]{7} at step [1-9][0-9]* of 200' $tmp/$name.out"
  check "$name: final loss and weights equal the uninterrupted run's ($(last "$tmp/$name") vs $(last "$tmp/straight"))" \
    "[[ \$(last $tmp/$name) == \$(last $tmp/straight) ]] && cmp -s $tmp/$name/step-0000200/shard-00000-of-00002.safetensors $tmp/straight/step-0000200/shard-00000-of-00002.safetensors && cmp -s $tmp/$name/step-0000200/shard-00001-of-00002.safetensors $tmp/straight/step-0000200/shard-00001-of-00002.safetensors"
}
interrupted rq requeue
interrupted usr1 usr1
check "usr1: the script requeued the job itself" "grep -q 'stopped by SIGUSR1 after a checkpoint; requeueing' $tmp/usr1.out"

# 3. Bounded restarts.
job=$(submit "$tmp/max.out" -n 2 --export=ALL,ASCLEPIUS_MAX_RESTARTS=0 "$script" "$recipe" "${common[@]}" \
  train.max_steps=100000 checkpoint.dir="$tmp/max")
for _ in $(seq 600); do [[ -s $tmp/max/metrics.jsonl ]] && break; sleep 0.1; done
scontrol requeue "$job"
for _ in $(seq 120); do [[ $(state "$job") == PENDING ]] && break; sleep 0.5; done
sleep 5
scontrol update JobId="$job" StartTime=now 2>/dev/null
st=$(wait_done "$job" 180)
cat "$tmp/max.out"
check "max restarts: the restarted job refuses to start ($st)" \
  "[[ $st == FAILED ]] && grep -q 'was restarted 1 times (ASCLEPIUS_MAX_RESTARTS=0); not starting again' $tmp/max.out"

# 4. Bad input fails fast, saying why, in the job's output.
bad() {  # NAME PATTERN SBATCH-ARGS...
  local name=$1 pattern=$2; shift 2
  local j t0 st
  t0=$(date +%s)
  j=$(submit "$tmp/$name.out" "$@")
  st=$(wait_done "$j" 60)
  cat "$tmp/$name.out"
  check "bad input ($name): FAILED in $(($(date +%s) - t0)) s" "[[ $st == FAILED ]] && grep -qF -- '$pattern' $tmp/$name.out"
}
bad missing-recipe "recipe recipes/demo/nope.yaml does not exist" -n 2 "$script" recipes/demo/nope.yaml
bad task-count "data-parallel ranks (3)" -n 3 --overcommit "$script" "$recipe" "${common[@]}" checkpoint.dir="$tmp/tc"
bad run-dir "$tmp/no/such does not exist (checkpoint.dir=$tmp/no/such/run)" -n 2 "$script" "$recipe" \
  "${common[@]}" checkpoint.dir="$tmp/no/such/run"

# 5. Two stages chained with afterok: the second starts from the first's run directory.
sed -e "s|dir: runs/demo-tiny|dir: $tmp/stage1|" -e 's|max_steps: 60|max_steps: 5|' \
  -e 's|mode: none|mode: fsdp|' "$src/$recipe" >"$tmp/pre.yaml"
sed -e "s|dir: $tmp/stage1|dir: $tmp/stage2|" -e "s|  preset: tiny-gqa.*|  preset: tiny-gqa\n  init_from: $tmp/stage1|" \
  "$tmp/pre.yaml" >"$tmp/ins.yaml"
out=$(cd "$src" && "$src/launch/slurm/submit_two_stage.sh" --recipes "$tmp/pre.yaml" "$tmp/ins.yaml" \
  -n 2 --chdir="$src" --output="$tmp/two-%j.out" 2>&1)
echo "$out"
j1=$(echo "$out" | sed -n 's/pretrain job \([0-9]*\);.*/\1/p')
j2=$(echo "$out" | sed -n 's/.*instruct job \([0-9]*\) .*/\1/p')
check "two stages: both submitted" "[[ -n '$j1' && -n '$j2' ]]"
check "two stages: the second waits on the first" "scontrol show job $j2 | grep -q 'Dependency=afterok:$j1'"
st1=$(wait_done "$j1" 180)
st2=$(wait_done "$j2" 180)
cat "$tmp"/two-*.out
check "two stages: both COMPLETED ($st1, $st2)" "[[ $st1 == COMPLETED && $st2 == COMPLETED ]]"
check "two stages: the second started from the first's weights" "grep -qx step-0000005 $tmp/stage2/latest && grep -q 'init_from: $tmp/stage1' $tmp/stage2/recipe.yaml"
# 6. The per-recipe batch scripts: valid shell, each names an existing Asclepius recipe, and
#    Slurm accepts their directives (sbatch --test-only; GPUs dropped, this node has none).
for f in "$src"/launch/slurm/*-pretrain.sbatch "$src"/launch/slurm/*-instruct.sbatch; do
  r=$(sed -n 's|^exec launch/slurm/asclepius.sbatch \(recipes/asclepius/[^ ]*\.yaml\).*|\1|p' "$f")
  check "$(basename "$f"): valid, names $r" "bash -n $f && [[ -f $src/$r ]]"
  grep -v gpus-per-node "$f" >"$tmp/t.sbatch"
  check "$(basename "$f"): Slurm accepts its directives" \
    "sbatch --test-only --chdir=$src --nodes=1 --ntasks-per-node=1 --cpus-per-task=1 --time=10 $tmp/t.sbatch >/dev/null 2>&1"
done
exit $fail
