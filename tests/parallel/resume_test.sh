#!/usr/bin/env bash
# Resume (checkpoint.resume: auto) from the newest checkpoint: at the same world size the losses
# and the final weights and AdamW state are bit-identical to an uninterrupted run (one process and
# 2-rank fsdp); at another world size and mode they agree within fp32 tolerance; a recipe change
# that alters the math is refused naming the key; an existing run without resume=auto is refused.
# Usage: resume_test.sh ASCLEPIUS PYTHON
source "$(dirname "$0")/lib.sh"
common=(train.max_steps=10 checkpoint.every_steps=5 train.threads=1 logging.progress=false
        logging.tensorboard=false train.weight_decay=0.1)
# A run directory cut back to its step-5 checkpoint, as an interrupted run leaves it.
cut_to_5() {
  cp -r "$1" "$2"
  rm -rf "$2/step-0000010"
  echo step-0000005 >"$2/latest"
  head -n 5 "$1/metrics.jsonl" >"$2/metrics.jsonl"
}
same_bits() {  # every shard file byte-identical, and the per-step losses
  local f n=0
  for f in "$1"/step-0000010/shard-*.safetensors; do
    cmp -s "$f" "$2/step-0000010/$(basename "$f")" || return 1
    n=$((n + 1))
  done
  ((n > 0)) && cmp -s "$1/metrics.jsonl.losses" "$2/metrics.jsonl.losses"
}
losses() { "$py" -c "import json,sys; [print(json.loads(l)['loss']) for l in open(sys.argv[1])]" "$1/metrics.jsonl" >"$1/metrics.jsonl.losses"; }

for launch in "one:" "fsdp2:mpirun -np 2"; do
  name=${launch%%:*} pre=${launch#*:}
  extra=()
  [[ $name == fsdp2 ]] && extra=(parallel.mode=fsdp)
  $pre "$bin" train "$recipe" "${common[@]}" "${extra[@]}" checkpoint.dir="$tmp/$name-full" >/dev/null 2>&1 ||
    { echo "FAILED: $name uninterrupted run"; fail=1; continue; }
  cut_to_5 "$tmp/$name-full" "$tmp/$name-resumed"
  $pre "$bin" train "$recipe" "${common[@]}" "${extra[@]}" checkpoint.dir="$tmp/$name-resumed" \
    checkpoint.resume=auto >"$tmp/$name.log" 2>&1
  rc=$?
  cat "$tmp/$name.log"
  losses "$tmp/$name-full"; losses "$tmp/$name-resumed"
  check "$name: resumed run completes" "[[ $rc == 0 ]] && grep -q 'resuming .*step-0000005 at step 5 of 10' $tmp/$name.log"
  check "$name: losses, weights and AdamW state bit-identical to the uninterrupted run" "same_bits $tmp/$name-full $tmp/$name-resumed"
done

# Another world size and mode: 2-rank zero2 resumes the one-process run's step 5.
cut_to_5 "$tmp/one-full" "$tmp/cross"
mpirun -np 2 "$bin" train "$recipe" "${common[@]}" parallel.mode=zero2 checkpoint.dir="$tmp/cross" \
  checkpoint.resume=auto >"$tmp/cross.log" 2>&1
check "one process -> 2-rank zero2: completes" "[[ $? == 0 ]]"
grep -q "note: resuming with parallel.mode" "$tmp/cross.log"
check "one process -> 2-rank zero2: notes the changed parallel.mode" "[[ $? == 0 ]]"
"$py" "$here/compare_runs.py" --rtol 1e-5 "$tmp/one-full" "$tmp/cross" || fail=1

# A change that alters the math is refused, naming the key; a used run dir needs resume=auto.
cut_to_5 "$tmp/one-full" "$tmp/refuse"
"$bin" train "$recipe" "${common[@]}" checkpoint.dir="$tmp/refuse" checkpoint.resume=auto \
  train.global_batch_size=32 >"$tmp/refuse.log" 2>&1
rc=$?
cat "$tmp/refuse.log"
check "changed global batch: refused" "[[ $rc == 1 ]] && grep -q 'train.global_batch_size is 32 but the run being resumed used 16' $tmp/refuse.log"
"$bin" train "$recipe" "${common[@]}" checkpoint.dir="$tmp/refuse" >"$tmp/again.log" 2>&1
rc=$?
cat "$tmp/again.log"
check "existing run without resume=auto: refused with the hint" "[[ $rc == 1 ]] && grep -q 'checkpoint.resume=auto' $tmp/again.log"
# A damaged newest checkpoint is skipped, naming the file; the run resumes from the one before it
# and still ends bit-identical. `ckpt inspect` prints the manifest and fails on the damage.
cp -r "$tmp/one-full" "$tmp/damaged"
rm -f "$tmp/damaged/metrics.jsonl.losses"
head -n 5 "$tmp/one-full/metrics.jsonl" >"$tmp/damaged/metrics.jsonl"
"$bin" ckpt inspect "$tmp/damaged" >"$tmp/inspect.json" 2>"$tmp/inspect.err"
check "ckpt inspect: a good checkpoint passes and lists its files" \
  "[[ $? == 0 ]] && grep -q '\"name\": \"shard-00000-of-00001.safetensors\"' $tmp/inspect.json && grep -q '\"xxh64\"' $tmp/inspect.json"
printf '\x42' | dd of="$tmp/damaged/step-0000010/shard-00000-of-00001.safetensors" bs=1 seek=4000 conv=notrunc 2>/dev/null
"$bin" ckpt inspect "$tmp/damaged" >/dev/null 2>"$tmp/inspect.err"
check "ckpt inspect: a damaged file is named (exit 1)" \
  "[[ $? == 1 ]] && grep -q 'step-0000010/shard-00000-of-00001.safetensors: checksum' $tmp/inspect.err"
"$bin" train "$recipe" "${common[@]}" checkpoint.dir="$tmp/damaged" checkpoint.resume=auto >"$tmp/damaged.log" 2>&1
rc=$?
cat "$tmp/damaged.log"
losses "$tmp/damaged"
check "damaged newest checkpoint: skipped with a warning naming the file" \
  "[[ $rc == 0 ]] && grep -q 'warning: skipping checkpoint .*step-0000010: .*shard-00000-of-00001.safetensors: checksum' $tmp/damaged.log"
check "damaged newest checkpoint: resumed from step 5, ends bit-identical" \
  "grep -q 'step-0000005 at step 5 of 10' $tmp/damaged.log && same_bits $tmp/one-full $tmp/damaged"

# checkpoint.keep_last keeps the newest N step directories, `latest` among them.
"$bin" train "$recipe" "${common[@]}" train.max_steps=8 checkpoint.every_steps=2 checkpoint.keep_last=2 \
  checkpoint.dir="$tmp/keep" >/dev/null 2>&1
check "keep_last=2: only step-6 and step-8 remain" \
  "[[ \$(ls -d $tmp/keep/step-* | xargs -n1 basename | tr '\n' ' ') == 'step-0000006 step-0000008 ' ]] && grep -qx step-0000008 $tmp/keep/latest"
exit $fail
