#!/usr/bin/env bash
# No rank ever holds the whole model: under mpirun -np 4 in fsdp, a rank's start-up peak resident
# memory beyond the model state the engine keeps (its fp32 shards: master, moments, gradient) must
# stay well under the model's fp32 size when it starts fresh (seeded initialisation), resumes
# from a sharded checkpoint, or starts from init_from (a step checkpoint, or a bf16 Hugging Face
# export). Control: one process (parallel.mode=none), which does hold the whole model state, shows
# the measurement sees it in the raw peak. The baseline is the same measurement with the tiny
# model.
# Usage: startup_memory_test.sh ASCLEPIUS PYTHON
source "$(dirname "$0")/lib.sh"
small=(train.threads=1 logging.progress=false logging.tensorboard=false train.global_batch_size=4
       train.micro_batch_size=1 train.max_steps=2 checkpoint.every_steps=0)
# 77 M parameters (308 MB in fp32): 6 layers of hidden 1024.
big=(model.hidden_size=1024 model.intermediate_size=2816 model.num_hidden_layers=6
     model.num_attention_heads=8 model.num_key_value_heads=8)
model_mib=$(( (6 * (4 * 1024 * 1024 + 3 * 1024 * 2816) + 2 * 256 * 1024 + 13 * 1024) * 4 >> 20 ))
mpi() { local n=$1; shift; timeout 300 mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
# The largest (peak - model state kept) over the ranks of a start-up, in MiB; RAW=1: the peak.
extra() {
  local log=$1; shift
  ASCLEPIUS_EXIT_AFTER_STARTUP=1 "$@" >"$log" 2>&1 || { echo "FAILED: start-up: $*" >&2; tail -5 "$log" >&2; echo -1; return; }
  sed -n 's/.*start-up peak resident memory \([0-9]*\) MiB (model state kept: \(-\?[0-9]*\) MiB).*/\1 \2/p' "$log" |
    awk -v raw="${RAW:-0}" 'BEGIN { m = -1 } { e = $1 - (raw == 0 && $2 > 0 ? $2 : 0); if (e > m) m = e } END { print m }'
}

base=$(extra "$tmp/base.log" mpi 4 "$bin" train "$recipe" "${small[@]}" parallel.mode=fsdp checkpoint.dir="$tmp/base")
base1=$(extra "$tmp/base1.log" "$bin" train "$recipe" "${small[@]}" checkpoint.dir="$tmp/base1")
echo "   model: $model_mib MiB in fp32; baseline beyond the model state: $base MiB (fsdp x4), $base1 MiB (one process)"
limit=$((model_mib / 4))

raw1=$(RAW=1 extra "$tmp/raw1.log" "$bin" train "$recipe" "${small[@]}" checkpoint.dir="$tmp/raw1")
e=$(RAW=1 extra "$tmp/none.log" "$bin" train "$recipe" "${small[@]}" "${big[@]}" checkpoint.dir="$tmp/none")
echo "   parallel.mode=none (the whole model and its AdamW state), raw peak: $((e - raw1)) MiB beyond the baseline"
check "control: the measurement sees a whole model in one process" "(( e >= 0 && e - raw1 >= model_mib * 9 / 10 ))"

e=$(extra "$tmp/fresh.log" mpi 4 "$bin" train "$recipe" "${small[@]}" "${big[@]}" parallel.mode=fsdp checkpoint.dir="$tmp/fresh")
echo "   fsdp x4, fresh: $((e - base)) MiB beyond the baseline (limit $limit)"
check "fresh start: no rank holds the model" "(( e >= 0 && e - base < limit ))"

# A checkpoint of the big model (stopped after one step, as a preemption), then a resume of it.
mpi 4 "$bin" train "$recipe" "${small[@]}" "${big[@]}" parallel.mode=fsdp checkpoint.dir="$tmp/run" \
  --stop-after-step 1 >"$tmp/run.log" 2>&1
[[ -f $tmp/run/step-0000001/manifest.pb ]] || { echo "FAILED: one step of the big model"; tail -5 "$tmp/run.log"; fail=1; }
e=$(extra "$tmp/resume.log" mpi 4 "$bin" train "$recipe" "${small[@]}" "${big[@]}" parallel.mode=fsdp \
  checkpoint.dir="$tmp/run" checkpoint.resume=auto)
echo "   fsdp x4, resumed: $((e - base)) MiB beyond the baseline (limit $limit)"
check "resume: no rank holds the model" "(( e >= 0 && e - base < limit )) && grep -q 'resuming .* at step 1 of 2' $tmp/resume.log"

e=$(extra "$tmp/from-step.log" mpi 4 "$bin" train "$recipe" "${small[@]}" parallel.mode=fsdp \
  checkpoint.dir="$tmp/from-step" model.init_from="$tmp/run" model.preset=)
echo "   fsdp x4, init_from a step checkpoint: $((e - base)) MiB beyond the baseline (limit $limit)"
check "init_from a step checkpoint: no rank holds the model" "(( e >= 0 && e - base < limit ))"

"$bin" export "$tmp/run" --out "$tmp/hf" >"$tmp/export.log" 2>&1 || { echo "FAILED: export"; fail=1; }
e=$(extra "$tmp/from-hf.log" mpi 4 "$bin" train "$recipe" "${small[@]}" parallel.mode=fsdp \
  checkpoint.dir="$tmp/from-hf" model.init_from="$tmp/hf" model.preset=)
echo "   fsdp x4, init_from a bf16 Hugging Face directory: $((e - base)) MiB beyond the baseline (limit $limit)"
check "init_from a Hugging Face directory: no rank holds the model" "(( e >= 0 && e - base < limit ))"
exit $fail
