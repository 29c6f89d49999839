#!/usr/bin/env bash
# The plan counts what a rank really holds: short CPU trainings under mpirun, each rank's peak
# resident memory (VmHWM, which the trainer reports at its end) against `asclepius plan`'s
# "peak resident" for the same recipe and world size: the ranks' mean within 10%, each rank
# within 15% (ranks of one run differ by timing). Covers the issue-22
# case (the `small` preset in fsdp at 2 ranks, sequence 256, micro-batch 2), ddp without
# activation checkpointing, fsdp at 4 ranks, one process, and the runtime floor (tiny model).
# Usage: plan_memory_test.sh ASCLEPIUS PYTHON
source "$(dirname "$0")/lib.sh"
base=(train.threads=1 logging.progress=false logging.tensorboard=false train.max_steps=2
      checkpoint.every_steps=0)
# NP MODE PRESET SEQ MICRO CHECKPOINTING
configs=("2 fsdp small 256 2 true" "2 ddp small 128 2 false" "4 fsdp small 256 2 true"
         "1 none small 256 2 true" "2 fsdp tiny 128 2 false")
n=0
for cfg in "${configs[@]}"; do
  read -r np mode preset seq mb ck <<<"$cfg"
  n=$((n + 1))
  args=("$recipe" "${base[@]}" model.preset="$preset" data.seq_len="$seq" train.micro_batch_size="$mb"
        train.global_batch_size=$((mb * np)) parallel.mode="$mode"
        parallel.activation_checkpointing="$ck" checkpoint.dir="$tmp/run$n")
  planned=$("$bin" plan "${args[@]}" --world-size "$np" | awk '/^  peak resident/ { print $(NF - 1) }')
  if [[ $mode == none ]]; then
    timeout 300 "$bin" train "${args[@]}" >"$tmp/log$n" 2>&1
  else
    timeout 300 mpirun -np "$np" --oversubscribe --bind-to none "$bin" train "${args[@]}" >"$tmp/log$n" 2>&1
  fi
  rc=$?
  lines=$(sed -n 's/^rank \([0-9]*\): peak resident memory \([0-9]*\) MiB (planned \([0-9]*\) MiB.*/\1 \2 \3/p' "$tmp/log$n")
  check "$cfg: the run completes (rc $rc) and each of its $np ranks reports its peak" \
    "(( rc == 0 )) && [[ \$(wc -l <<<\"\$lines\") -eq $np && -n \"\$lines\" ]]"
  [[ $rc -eq 0 ]] || tail -5 "$tmp/log$n"
  # The trainer's planned figure is the plan command's (GiB, 3 decimals).
  check "$cfg: the trainer plans what \`asclepius plan\` prints ($planned GiB)" \
    "awk -v g=\"$planned\" '{ d = \$3 / 1024 - g; if (d < -0.002 || d > 0.002) bad = 1 } END { exit bad + (NR == 0) }' <<<\"\$lines\""
  # The ranks of one run differ from each other by up to ~15% at 4 ranks on 2 cores (which of
  # a step's blocks are freed before the next is allocated depends on timing): the ranks' mean
  # must be within 10% of the plan, and each rank within 15%.
  mean=$(awk '{ s += $2 } END { if (NR) printf "%.0f", s / NR }' <<<"$lines")
  err=$(awk -v m="$mean" -v p="$(awk 'NR == 1 { print $3 }' <<<"$lines")" \
    'BEGIN { if (m > 0) printf "%.1f", 100 * (p - m) / m; else print 999 }')
  check "$cfg: the ranks' mean $mean MiB against the plan ($err%), within 10%" \
    "awk -v e=$err 'BEGIN { exit !(e >= -10 && e <= 10) }'"
  while read -r rank measured plan; do
    [[ -n $rank ]] || continue
    err=$(awk -v m="$measured" -v p="$plan" 'BEGIN { printf "%.1f", 100 * (p - m) / m }')
    check "$cfg: rank $rank measured $measured MiB, planned $plan MiB ($err%), within 15%" \
      "awk -v e=$err 'BEGIN { exit !(e >= -15 && e <= 15) }'"
  done <<<"$lines"
done
exit $fail
