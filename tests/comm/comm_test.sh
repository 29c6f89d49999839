#!/usr/bin/env bash
# The communicator under a real mpirun: collectives at 2 and 4 ranks (the 4 oversubscribed on
# this machine), then the faults — a rank that never arrives, a rank stopped with SIGSTOP inside
# a collective, a rank killed with SIGKILL — each must end every surviving rank with one message
# and a non-zero exit, well within the timeout plus a margin. Usage: comm_test.sh COMM_MAIN
set -uo pipefail
bin=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }

for np in 2 4; do
  timeout 120 mpirun -np $np --oversubscribe "$bin" collectives >"$tmp/c$np.out" 2>&1
  rc=$?
  cat "$tmp/c$np.out"
  check "collectives at $np ranks" "[[ $rc == 0 ]] && [[ \$(grep -c ', 0 failures' $tmp/c$np.out) == $np ]]"
done

# Rank 2 of 3 never enters all_reduce #3: ranks 0 and 1 time out naming it.
start=$(date +%s)
timeout 60 mpirun -np 3 --oversubscribe "$bin" skip 2 3 >"$tmp/skip.out" 2>&1
rc=$?
took=$(($(date +%s) - start))
cat "$tmp/skip.out"
check "skip: non-zero exit ($rc) in ${took}s" "[[ $rc != 0 && $rc != 124 && $took -lt 30 ]]"
for r in 0 1; do
  check "skip: rank $r names the collective and rank 2" \
    "grep -q 'rank $r of 3: all_reduce #3 (32 bytes) timed out after 3 s (parallel.timeout_s); ranks that did not arrive: 2' $tmp/skip.out"
done
check "skip: nothing finished" "! grep -q 'must not happen' $tmp/skip.out"
check "skip: rank 1, waiting too, is heard (its heartbeats reach rank 0), not named as silent" \
  "! grep -q 'not heard from' $tmp/skip.out"

# A barrier's progress probe (used by checkpoint saves): rank 1 arrives after 7 s while its file
# changes; with a 2 s timeout rank 0 waits it out with the probe and times out without it.
rm -f "$tmp/progress.file"
timeout 60 mpirun -np 2 "$bin" progress 2 7 "$tmp/progress.file" >"$tmp/progress.out" 2>&1
check "progress: a slow rank seen working is waited for" \
  "[[ $? == 0 ]] && [[ \$(grep -c 'waited for the slow rank' $tmp/progress.out) == 2 ]]"
rm -f "$tmp/progress.file"
timeout 60 mpirun -np 2 "$bin" progress 2 7 "$tmp/progress.file" off >"$tmp/noprogress.out" 2>&1
check "progress: without the probe the same wait times out naming rank 1" \
  "grep -q 'rank 0 of 2: barrier #1 (0 bytes) timed out after 2 s (parallel.timeout_s); ranks that did not arrive: 1' $tmp/noprogress.out"

# Rank 2 stops (SIGSTOP) inside an all-reduce every rank entered: rank 0 names it all the same,
# by its missing heartbeats, and rank 1 (which hears rank 0 only) by rank 0's report.
timeout 60 mpirun -np 3 --oversubscribe "$bin" stall 5 >"$tmp/stall.out" 2>&1
pkill -KILL -f "comm_main stall" 2>/dev/null
cat "$tmp/stall.out"
check "stall: rank 0 names the rank stopped inside the transfer" \
  "grep -qE 'rank 0 of 3: all_reduce #[0-9]+ .*timed out after 5 s .*every rank entered it.*not heard from while waiting \\(stopped or hung\\?\\): rank 2' $tmp/stall.out"
check "stall: rank 1 names it too, from rank 0's heartbeats" \
  "grep -qE 'rank 1 of 3: all_reduce #[0-9]+ .*timed out after 5 s .*every rank entered it.*not heard from by rank 0 while waiting \\(stopped or hung\\?\\): rank 2' $tmp/stall.out"

# SIGSTOP and SIGKILL of rank 1 while both ranks loop over all_reduce.
for sig in STOP KILL; do
  rm -f "$tmp"/rank*.pid
  start=$(date +%s)
  timeout 60 mpirun -np 2 "$bin" loop 4 "$tmp" >"$tmp/$sig.out" 2>&1 &
  mp=$!
  for _ in $(seq 100); do [[ -f $tmp/rank1.pid ]] && break; sleep 0.1; done
  sleep 0.5
  kill -$sig "$(cat "$tmp/rank1.pid")"
  wait $mp
  rc=$?
  took=$(($(date +%s) - start))
  kill -KILL "$(cat "$tmp/rank1.pid")" 2>/dev/null  # a stopped rank the launcher left behind
  cat "$tmp/$sig.out"
  check "SIG$sig of rank 1: non-zero exit ($rc) in ${took}s" "[[ $rc != 0 && $rc != 124 && $took -lt 30 ]]"
  check "SIG$sig of rank 1: rank 0 says which collective" "grep -qE 'rank 0 of 2: all_reduce #[0-9]+ \\(4096 bytes\\)' $tmp/$sig.out"
done
# Stopped before announcing the collective, rank 1 is named; stopped inside it, rank 0 says that
# every rank entered it. Either way the message says which collective and why.
check "SIGSTOP: rank 0 says why" "grep -qE 'rank 0 of 2: all_reduce #[0-9]+ .*timed out after 4 s .*(ranks that did not arrive: 1|every rank entered it)' $tmp/STOP.out"
exit $fail
