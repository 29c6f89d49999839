#!/usr/bin/env bash
# A 1.1B-parameter LLaMA (TinyLlama's shapes: preset tinyllama-1.1b) on one CPU machine (issue 22):
# fsdp at 4 ranks, fp32 master weights, activation checkpointing, short sequences, a few steps;
# a checkpoint (~13 GB of state); a resume at 2 ranks; a parallel Hugging Face export
# (mpirun asclepius export) that transformers loads. It records per rank the peak resident memory
# against `asclepius plan`'s, save and load GB/s against dd on the same disk, and start-up memory
# (no rank holds the whole model), and prints them as a markdown block for docs/PERFORMANCE.md.
#
# Needs about 20 GB of free memory and ~20 GB of disk: it refuses to start unless MemAvailable
# covers the plan for 4 ranks (and 2 at the resume) and no other process holds more than 2 GB.
# Run by `tools/test.sh --scale`. --small: the same steps with the `small` preset (58.6 M), to
# check the script itself in a few minutes.
#
# Usage: tools/scale/tinyllama_1b.sh [--small] [--keep]
#   ASCLEPIUS (default build/bin/asclepius), SCALE_DIR (default: a new directory under /var/tmp;
#   the disk measured), PYTHON (default: the venv's, from .venv-path).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
preset=tinyllama-1.1b params=1100048384 seq=128 steps=3 keep=0
for a in "$@"; do
  case $a in
    --small) preset=small params=58073600 seq=256 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--small] [--keep]" >&2; exit 2 ;;
  esac
done
bin=${ASCLEPIUS:-$root/build/bin/asclepius}
py=${PYTHON:-$(cat "$root/.venv-path" 2>/dev/null)/bin/python}
[[ -x $bin ]] || { echo "no asclepius at $bin (set ASCLEPIUS)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=${SCALE_DIR:-$(mktemp -d /var/tmp/asclepius-scale.XXXXXX)}
mkdir -p "$work"
[[ $keep -eq 1 ]] || trap 'rm -rf "$work"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }
mpi() { local n=$1; shift; mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
gib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1073741824 }'; }

recipe=$root/recipes/demo/tiny.yaml
# train.cache_host_memory=false: the heap's cache of freed blocks would add ~0.4 GiB per rank
# (the plan counts it), which 4 ranks of the 1.1B model cannot spare on a 24 GB machine.
args=(model.preset="$preset" data.seq_len=$seq data.demo_samples=512 train.micro_batch_size=1
      train.cache_host_memory=false
      train.global_batch_size=4 train.max_steps=$((steps + 1)) train.dtype=fp32 train.threads=1
      train.lr=1e-4 train.warmup_ratio=0 parallel.mode=fsdp parallel.activation_checkpointing=true
      checkpoint.every_steps=0 checkpoint.at_end=true logging.tensorboard=false
      logging.progress=false checkpoint.dir="$work/run")

# --- the plan, and whether this machine can take it now ------------------------------------
plan4=$("$bin" plan "$recipe" "${args[@]}" --world-size 4) || { echo "$plan4"; exit 1; }
plan2=$("$bin" plan "$recipe" "${args[@]}" --world-size 2) || exit 1
peak4=$(awk '/^  peak resident/ { print $(NF - 1) }' <<<"$plan4")
peak2=$(awk '/^  peak resident/ { print $(NF - 1) }' <<<"$plan2")
head -1 <<<"$plan4"
echo "planned peak resident per rank: $peak4 GiB at 4 ranks, $peak2 GiB at 2 ranks"
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
need_kb=$(awk -v a="$peak4" -v b="$peak2" 'BEGIN { m = 4 * a > 2 * b ? 4 * a : 2 * b; printf "%d", m * 1048576 }')
big=$(ps -eo rss=,pid=,comm= --sort=-rss | awk -v me=$$ '$1 > 2097152 && $2 != me' | head -3)
echo "MemAvailable $((avail_kb >> 20)) GiB; the run needs $((need_kb >> 20)) GiB"
total_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
if (( total_kb < need_kb )); then
  echo "SKIPPED: the plan needs $((need_kb >> 20)) GiB on this node; it has $((total_kb >> 20)) GiB in all"
  exit 3
fi
if (( avail_kb < need_kb )) || [[ -n $big ]]; then
  echo "SKIPPED: not enough free memory now, or another big process runs:"; echo "$big"
  exit 3
fi
echo "disk: $(df -h "$work" | tail -1)"

# --- dd on the same disk: the reference for save and load ----------------------------------
dd_gib=$([[ $preset == small ]] && echo 1 || echo 4)
dd_c=$(dd if=/dev/zero of="$work/dd.bin" bs=64M count=$((dd_gib * 16)) 2>&1 | tail -1)
rm -f "$work/dd.bin"
dd_w=$(dd if=/dev/zero of="$work/dd.bin" bs=64M count=$((dd_gib * 16)) conv=fdatasync 2>&1 | tail -1)
dd_r=$(dd if="$work/dd.bin" of=/dev/null bs=64M iflag=direct 2>&1 | tail -1)
rm -f "$work/dd.bin"
echo "dd write (page cache): $dd_c"; echo "dd write (fdatasync): $dd_w"; echo "dd read (O_DIRECT): $dd_r"

# --- train at 4 ranks, stopped (as a preemption) with a checkpoint after $steps steps -------
t0=$(date +%s.%N)
mpi 4 "$bin" train "$recipe" "${args[@]}" --stop-after-step $steps >"$work/train.log" 2>&1
rc=$?
echo "train at 4 ranks: rc $rc, $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
# --stop-after-step acts as a SIGTERM at that step: a checkpoint, then exit 143 (a preemption).
check "trained $steps steps at 4 ranks, stopped as preempted (exit 143) and saved" \
  "(( rc == 143 )) && [[ -f $work/run/step-$(printf %07d $steps)/manifest.pb ]]"
[[ $rc -eq 143 ]] || tail -20 "$work/train.log"
grep -E '^step|loss' "$work/train.log" | head -5
model_mib=$((params * 4 >> 20))
startup=$(sed -n 's/^rank \([0-9]*\): start-up peak resident memory \([0-9]*\) MiB (model state kept: \([0-9]*\) MiB).*/\1 \2 \3/p' "$work/train.log" | sort -n)
echo "start-up (rank, peak MiB, model state kept MiB; the model in fp32 is $model_mib MiB):"; echo "$startup"
# Beyond the state it keeps and the runtime every process holds (the plan's 370 MiB), a rank's
# start-up peak must stay under a quarter of the model in fp32: none held the whole model.
check "no rank held the whole model at start-up (peak - state - 370 MiB runtime < the fp32 model / 4)" \
  "[[ -n \"\$startup\" ]] && awk -v m=$model_mib '{ if (\$2 - \$3 - 370 >= m / 4) bad = 1 } END { exit bad }' <<<\"\$startup\""
peaks4=$(sed -n 's/^rank \([0-9]*\): peak resident memory \([0-9]*\) MiB (planned \([0-9]*\) MiB, \(.*\)).*/\1 \2 \3 \4/p' "$work/train.log" | sort -n)
echo "peak resident per rank at 4 ranks (rank, measured MiB, planned MiB, plan - measured):"; echo "$peaks4"
check "4 ranks: every rank's peak within 10% of the plan" \
  "[[ \$(wc -l <<<\"\$peaks4\") -eq 4 ]] && awk '{ e = (\$3 - \$2) / \$2; if (e < -0.1 || e > 0.1) bad = 1 } END { exit bad }' <<<\"\$peaks4\""
save=$(grep -m1 '^saved ' "$work/train.log")
save_s=$(sed -n 's/.* in \([0-9.]*\) s .*/\1/p' <<<"$save")
step_dir=$work/run/step-$(printf %07d $steps)
state_bytes=$(du -sb "$step_dir" | cut -f1)
save_gbs=$(awk -v b="$state_bytes" -v s="$save_s" 'BEGIN { if (s > 0) printf "%.2f", b / s / 1e9 }')
echo "save: $(gib "$state_bytes") GiB in $save_s s = $save_gbs GB/s"

# --- resume at 2 ranks (one more step) ------------------------------------------------------
mpi 2 "$bin" train "$recipe" "${args[@]}" checkpoint.resume=auto >"$work/resume.log" 2>&1
rc=$?
check "resumed at 2 ranks from step $steps and trained step $((steps + 1))" \
  "(( rc == 0 )) && grep -q 'resuming .* at step $steps of $((steps + 1))' $work/resume.log"
[[ $rc -eq 0 ]] || tail -20 "$work/resume.log"
load=$(sed -n 's/^rank [0-9]*: read \([0-9]*\) bytes of checkpoint state in \([0-9.]*\) s/\1 \2/p' "$work/resume.log")
load_gbs=$(awk '{ b += $1; if ($2 > s) s = $2 } END { if (s > 0) printf "%.2f", b / s / 1e9 }' <<<"$load")
echo "load at 2 ranks: $(awk '{ b += $1 } END { printf "%.2f", b / 1073741824 }' <<<"$load") GiB, $load_gbs GB/s (slowest rank)"
peaks2=$(sed -n 's/^rank \([0-9]*\): peak resident memory \([0-9]*\) MiB (planned \([0-9]*\) MiB, \(.*\)).*/\1 \2 \3 \4/p' "$work/resume.log" | sort -n)
echo "peak resident per rank at 2 ranks (rank, measured MiB, planned MiB, plan - measured):"; echo "$peaks2"
check "2 ranks: every rank's peak within 10% of the plan" \
  "[[ \$(wc -l <<<\"\$peaks2\") -eq 2 ]] && awk '{ e = (\$3 - \$2) / \$2; if (e < -0.1 || e > 0.1) bad = 1 } END { exit bad }' <<<\"\$peaks2\""

# --- parallel export, loaded by transformers ------------------------------------------------
t0=$(date +%s.%N)
mpi 4 "$bin" export "$work/run" --out "$work/hf" --dtype bf16 >"$work/export.log" 2>&1
rc=$?
export_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "parallel export at 4 ranks (rc $rc, $export_s s)" "(( rc == 0 ))"
[[ $rc -eq 0 ]] || tail -10 "$work/export.log"
"$py" - "$work/hf" "$params" >"$work/load.log" 2>&1 <<'PY'
import sys, torch, transformers
m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.bfloat16)
n = sum(p.numel() for p in m.parameters())
with torch.no_grad():
    logits = m(torch.tensor([[1, 450, 22191, 338]])).logits
ok = n == int(sys.argv[2]) and bool(torch.isfinite(logits).all())
print(f"transformers: {type(m).__name__}, {n:,} parameters, logits {tuple(logits.shape)} finite: {ok}")
sys.exit(0 if ok else 1)
PY
rc=$?
tail -3 "$work/load.log"
check "transformers loads the export ($params parameters) and runs it" "(( rc == 0 ))"

# --- the figures --------------------------------------------------------------------------
cat <<MD

### $preset in fsdp on one CPU machine ($(date -u +%Y-%m-%d), $(nproc) cores, $(($(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) >> 20)) GiB)
\`tools/scale/tinyllama_1b.sh$([[ $preset == small ]] && echo " --small")\` (sequence $seq, micro-batch 1, $steps steps at 4 ranks, resume at 2)

| ranks | rank | peak resident (MiB) | planned (MiB) | plan - measured |
|---|---|---|---|---|
$(awk '{ printf "| 4 | %s | %s | %s | %s |\n", $1, $2, $3, $4 }' <<<"$peaks4")
$(awk '{ printf "| 2 (resumed) | %s | %s | %s | %s |\n", $1, $2, $3, $4 }' <<<"$peaks2")

- start-up peak per rank (MiB, model state kept): $(awk '{ printf "%s (%s) ", $2, $3 }' <<<"$startup")— the model in fp32 is $model_mib MiB
- save: $(gib "$state_bytes") GiB in $save_s s = $save_gbs GB/s; dd write into the page cache: $(sed 's/.*, //' <<<"$dd_c"), with fdatasync: $(sed 's/.*, //' <<<"$dd_w")
- load at 2 ranks: $load_gbs GB/s (bytes of both ranks / the slower one's time); dd read with O_DIRECT: $(sed 's/.*, //' <<<"$dd_r")
- parallel export (bf16) at 4 ranks: $export_s s
MD
exit $fail
