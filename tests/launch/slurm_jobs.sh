# slurm_jobs.sh — sourced by the Slurm tests (slurm_test.sh, slurm_two_nodes_test.sh): checks,
# job submission from the checkout ($src), a job's state, and waiting for its end.
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }
submit() {  # OUT SBATCH-OPTIONS... -- ARGS...
  local out=$1; shift
  sbatch --parsable --chdir="$src" --output="$out" "$@" | cut -d';' -f1
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_done() {  # JOB TIMEOUT_S -> final state
  for _ in $(seq $(($2 * 2))); do
    case $(state "$1") in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
    sleep 0.5
  done
  state "$1"
}
