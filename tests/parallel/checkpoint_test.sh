#!/usr/bin/env bash
# Sharded checkpoints under mpirun:
#  - resume at another world size (4 -> 2 and 2 -> 4 ranks, fsdp and ddp): the losses, weights and
#    AdamW state agree with the uninterrupted run within fp32 tolerance, and in fsdp each rank reads
#    only about its share of the checkpoint's bytes;
#  - crash safety: a rank killed (SIGKILL) at each point of a save leaves `latest` at a complete
#    checkpoint, and resuming ends bit-identical to an uninterrupted run;
#  - SIGTERM to one rank at a random moment: every rank saves the same step and stops; resuming
#    ends bit-identical.
# Usage: checkpoint_test.sh ASCLEPIUS PYTHON
source "$(dirname "$0")/lib.sh"
common=(train.max_steps=10 checkpoint.every_steps=5 train.threads=1 logging.progress=false train.micro_batch_size=2
        logging.tensorboard=false train.weight_decay=0.1)
mpi() { local n=$1; shift; timeout 300 mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
cut_to() {  # RUN STEP: the run directory as an interruption after STEP's checkpoint leaves it
  local s; s=$(printf 'step-%07d' "$2")
  for d in "$1"/step-*; do [[ $(basename "$d") > $s ]] && rm -rf "$d"; done
  echo "$s" >"$1/latest"
  head -n "$2" "$1/metrics.jsonl" >"$1/m" && mv "$1/m" "$1/metrics.jsonl"
}
same_bits() {  # RUN_A RUN_B STEP: shard files and per-step losses identical
  local s f n=0; s=$(printf 'step-%07d' "$3")
  for f in "$1/$s"/shard-*.safetensors; do
    cmp -s "$f" "$2/$s/$(basename "$f")" || return 1
    n=$((n + 1))
  done
  ((n > 0)) && cmp -s <(cut -d, -f1-4 "$1/metrics.jsonl" | grep -o '"loss":[^,]*') \
    <(cut -d, -f1-4 "$2/metrics.jsonl" | grep -o '"loss":[^,]*')
}

# --- another world size: 4 -> 2 and 2 -> 4, fsdp and ddp --------------------------------------
for mode in fsdp ddp; do
  for pair in "4 2" "2 4"; do
    set -- $pair
    from=$1 to=$2 name=$mode-$1to$2
    mpi "$from" "$bin" train "$recipe" "${common[@]}" parallel.mode=$mode checkpoint.dir="$tmp/$name-full" \
      >/dev/null 2>&1 || { echo "FAILED: $name: uninterrupted run"; fail=1; continue; }
    cp -r "$tmp/$name-full" "$tmp/$name"
    cut_to "$tmp/$name" 5
    mpi "$to" "$bin" train "$recipe" "${common[@]}" parallel.mode=$mode checkpoint.dir="$tmp/$name" \
      checkpoint.resume=auto >"$tmp/$name.log" 2>&1
    check "$name: resumes at step 5 on $to ranks" "[[ $? == 0 ]] && grep -q 'step-0000005 at step 5 of 10' $tmp/$name.log"
    "$py" "$here/compare_runs.py" --rtol 1e-5 "$tmp/$name-full" "$tmp/$name" || fail=1
    total=$(cat "$tmp/$name-full"/step-0000005/shard-*.safetensors | wc -c)
    max_read=$(grep -o 'read [0-9]* bytes' "$tmp/$name.log" | awk '{print $2}' | sort -n | tail -1)
    echo "   $name: largest read by one rank $max_read of $total checkpoint bytes"
    if [[ $mode == fsdp ]]; then  # the owned share (1/to) plus slices cut at unit boundaries
      check "$name: no rank reads more than its share + 10%" \
        "[[ -n '$max_read' ]] && (( max_read * $to <= total * 11 / 10 ))"
    fi
  done
done

# --- a truncated shard, a missing manifest: skipped with a warning naming the file -----------------
for damage in truncate manifest; do
  d="$tmp/damage-$damage"
  cp -r "$tmp/fsdp-2to4-full" "$d"
  head -n 5 "$d/metrics.jsonl" >"$d/m" && mv "$d/m" "$d/metrics.jsonl"
  if [[ $damage == truncate ]]; then
    truncate -s -1000 "$d/step-0000010/shard-00001-of-00002.safetensors"
    want='step-0000010: .*shard-00001-of-00002.safetensors: [0-9]* bytes, the manifest says'
  else
    rm "$d/step-0000010/manifest.pb"
    want='step-0000010: no manifest.pb'
  fi
  mpi 2 "$bin" train "$recipe" "${common[@]}" parallel.mode=fsdp checkpoint.dir="$d" checkpoint.resume=auto \
    >"$d.log" 2>&1
  check "$damage: the newest checkpoint is skipped naming the problem; resumed from step 5, bit-identical" \
    "[[ $? == 0 ]] && grep -q 'warning: skipping checkpoint .*$want' $d.log && grep -q 'step-0000005 at step 5' $d.log && same_bits $tmp/fsdp-2to4-full $d 10"
done
"$bin" ckpt inspect "$tmp/fsdp-2to4-full" >"$tmp/inspect.json" 2>/dev/null
check "the step directory holds the resolved recipe, listed in the manifest" \
  "cmp -s $tmp/fsdp-2to4-full/recipe.yaml $tmp/fsdp-2to4-full/step-0000010/recipe.yaml && grep -q '\"name\": \"recipe.yaml\"' $tmp/inspect.json"

# --- a rank killed at each point of the step-4 save ----------------------------------------------
mpi 2 "$bin" train "$recipe" "${common[@]}" train.max_steps=6 checkpoint.every_steps=2 parallel.mode=fsdp \
  checkpoint.dir="$tmp/crash-ref" >/dev/null 2>&1 || { echo "FAILED: crash reference run"; fail=1; }
for case in shard:0 shard:1 report:0 report:1 manifest:0 rename:0 latest:0 done:0 done:1; do
  d="$tmp/crash-${case/:/-}"
  ASCLEPIUS_FAULT_SAVE="$case:4" mpi 2 "$bin" train "$recipe" "${common[@]}" train.max_steps=6 \
    checkpoint.every_steps=2 parallel.mode=fsdp checkpoint.dir="$d" >"$d.log" 2>&1
  rc=$?
  killed=$(grep -c "fault injection: rank ${case#*:} killed at save point '${case%:*}' of step 4" "$d.log")
  "$bin" ckpt inspect "$d" >/dev/null 2>"$d.inspect"
  inspect=$?
  mpi 2 "$bin" train "$recipe" "${common[@]}" train.max_steps=6 checkpoint.every_steps=2 parallel.mode=fsdp \
    checkpoint.dir="$d" checkpoint.resume=auto >"$d.resume.log" 2>&1
  resumed=$?
  from=$(grep -o 'step-000000[0-9] at step [0-9]' "$d.resume.log" | head -1)
  check "kill at '$case' of the save: killed (rc $rc), latest loadable, resumed from ${from:-?}, bit-identical, no .partial left" \
    "[[ $rc != 0 && $killed == 1 && $inspect == 0 && $resumed == 0 ]] && same_bits $tmp/crash-ref $d 6 && ! ls -d $d/*.partial 2>/dev/null"
done
# Killed after the first checkpoint was renamed into place but before `latest` existed: the run
# is resumed from that checkpoint, not started over (nor refused).
d="$tmp/crash-first"
ASCLEPIUS_FAULT_SAVE="latest:0:2" mpi 2 "$bin" train "$recipe" "${common[@]}" train.max_steps=6 \
  checkpoint.every_steps=2 parallel.mode=fsdp checkpoint.dir="$d" >"$d.log" 2>&1
mpi 2 "$bin" train "$recipe" "${common[@]}" train.max_steps=6 checkpoint.every_steps=2 parallel.mode=fsdp \
  checkpoint.dir="$d" checkpoint.resume=auto >"$d.resume.log" 2>&1
check "killed before the first 'latest': resumed from step 2, bit-identical" \
  "[[ $? == 0 ]] && grep -q 'step-0000002 at step 2' $d.resume.log && same_bits $tmp/crash-ref $d 6"

# --- SIGTERM to rank 1 at a random moment ---------------------------------------------------------
rank_pid() {  # PATTERN RANK -> pid of the rank whose command line matches PATTERN
  for p in $(pgrep -f "$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$p"; return; fi
  done
}
long=(train.max_steps=300 checkpoint.every_steps=100 parallel.mode=fsdp)
mpi 2 "$bin" train "$recipe" "${common[@]}" "${long[@]}" checkpoint.dir="$tmp/term-ref" >/dev/null 2>&1
mpi 2 "$bin" train "$recipe" "${common[@]}" "${long[@]}" checkpoint.dir="$tmp/term" >"$tmp/term.log" 2>&1 &
mp=$!
sleep "$(awk -v s=$RANDOM 'BEGIN { print 1 + (s % 30) / 10 }')"
victim=$(rank_pid "checkpoint.dir=$tmp/term" 1)
[[ -n $victim ]] && kill -TERM "$victim"
wait $mp
rc=$?
steps=$(wc -l <"$tmp/term/metrics.jsonl")
check "SIGTERM to rank 1: stopped at step $steps with exit $rc (143) and a checkpoint" \
  "[[ $rc == 143 && $steps -lt 300 ]] && grep -qx \"\$(printf 'step-%07d' $steps)\" $tmp/term/latest"
mpi 2 "$bin" train "$recipe" "${common[@]}" "${long[@]}" checkpoint.dir="$tmp/term" checkpoint.resume=auto \
  >"$tmp/term.resume.log" 2>&1
check "SIGTERM to rank 1: resumed to the end, bit-identical to the uninterrupted run" \
  "[[ $? == 0 ]] && same_bits $tmp/term-ref $tmp/term 300"

# --- export without a gather: every rank writes its share into the final files --------------------
src="$tmp/fsdp-2to4-full"
"$bin" export "$src" --out "$tmp/exp1" >/dev/null 2>&1
mpi 3 "$bin" export "$src" --out "$tmp/exp3" >/dev/null 2>"$tmp/exp3.log"
check "export on 3 ranks: byte-identical to one process (bf16, one file)" "diff -r $tmp/exp1 $tmp/exp3 >/dev/null"
total=$(stat -c %s "$tmp/exp1/model.safetensors")
max_w=$(grep -o 'wrote [0-9]* bytes' "$tmp/exp3.log" | awk '{print $2}' | sort -n | tail -1)
check "export on 3 ranks: each rank wrote about a third ($max_w of $total bytes)" \
  "[[ -n '$max_w' ]] && (( max_w * 3 <= total * 11 / 10 ))"
"$bin" export "$src" --out "$tmp/exps1" --dtype fp32 --max-shard-size 200KB >/dev/null 2>&1
mpi 2 "$bin" export "$src" --out "$tmp/exps2" --dtype fp32 --max-shard-size 200KB >/dev/null 2>&1
check "export on 2 ranks: byte-identical sharded fp32 directory with its index" \
  "diff -r $tmp/exps1 $tmp/exps2 >/dev/null && [[ -f $tmp/exps2/model.safetensors.index.json ]]"
check "export on 2 ranks: loads in transformers, equal to the checkpoint" \
  "$py $here/../oracle/check_hf_dir.py $tmp/exps2 $src/step-0000010 float32 >/dev/null"

# --- async save: the step goes on while a thread writes; the files equal a synchronous save's ----
mpi 2 "$bin" train "$recipe" "${common[@]}" train.max_steps=8 checkpoint.every_steps=2 parallel.mode=fsdp \
  checkpoint.dir="$tmp/sync" >/dev/null 2>&1
ASCLEPIUS_ASYNC_SAVE_DELAY_MS=400 mpi 2 -x ASCLEPIUS_ASYNC_SAVE_DELAY_MS "$bin" train "$recipe" "${common[@]}" \
  train.max_steps=8 checkpoint.every_steps=2 parallel.mode=fsdp checkpoint.async=true \
  checkpoint.dir="$tmp/async" >"$tmp/async.log" 2>&1
check "async save: completes, three checkpoints written in the background" \
  "[[ $? == 0 ]] && [[ \$(grep -c 'in the background (' $tmp/async.log) == 3 ]]"
check "async save: each checkpoint holds its own step's state though training went on (writes held back 0.4 s)" \
  "same_bits $tmp/sync $tmp/async 2 && same_bits $tmp/sync $tmp/async 4 && same_bits $tmp/sync $tmp/async 6 && same_bits $tmp/sync $tmp/async 8"
d="$tmp/async-crash"
ASCLEPIUS_FAULT_SAVE="report:1:4" mpi 2 -x ASCLEPIUS_FAULT_SAVE "$bin" train "$recipe" "${common[@]}" \
  train.max_steps=8 checkpoint.every_steps=2 parallel.mode=fsdp checkpoint.async=true checkpoint.dir="$d" \
  >"$d.log" 2>&1
"$bin" ckpt inspect "$d" >/dev/null 2>&1
check "async save: a rank killed before the commit leaves latest loadable (an earlier step)" \
  "[[ $? == 0 ]] && ! grep -qx step-0000004 $d/latest"

# --- verify-resume: the users' own check ------------------------------------------------------------
"$bin" verify-resume "$recipe" --steps 6 --world-size 2 --work-dir "$tmp/vr" parallel.mode=fsdp \
  train.threads=1 >"$tmp/vr.out" 2>&1
check "verify-resume at 2 ranks: PASS, bit-identical" \
  "[[ $? == 0 ]] && grep -q 'PASS: the resumed run is bit-identical' $tmp/vr.out && [[ \$(grep -c 'yes' $tmp/vr.out) == 3 ]]"
"$bin" verify-resume "$recipe" --steps 6 --world-size 2 --resume-world-size 4 --work-dir "$tmp/vr4" \
  parallel.mode=fsdp train.threads=1 train.micro_batch_size=2 >"$tmp/vr4.out" 2>&1
check "verify-resume 2 -> 4 ranks: PASS within tolerance" "[[ $? == 0 ]] && grep -q 'PASS: largest relative difference' $tmp/vr4.out"
"$bin" verify-resume "$recipe" --steps 6 --world-size 2 --resume-world-size 4 --rtol 0 --work-dir "$tmp/vr0" \
  parallel.mode=fsdp train.threads=1 train.micro_batch_size=2 >"$tmp/vr0.out" 2>&1
check "verify-resume reports a difference beyond --rtol as FAIL (exit 1)" "[[ $? == 1 ]] && grep -q '^FAIL' $tmp/vr0.out"
exit $fail
