#!/usr/bin/env bash
# The CLI as a user meets it: --version, --help, --print-config round trip, one-line errors
# with exit status 1, a short training run, and export loaded by transformers.
# Usage: cli_test.sh ASCLEPIUS_BIN SOURCE_DIR PYTHON
set -uo pipefail
bin=$1 src=$2 py=$3
source "$(dirname "$0")/lib.sh"

"$bin" --version >"$tmp/v"
check "--version names libtorch" grep -q "^libtorch 2\." "$tmp/v"
check "--version names CUDA" grep -q "^CUDA: " "$tmp/v"
check "--version says whether NCCL is built" grep -qE "^NCCL backend: (built|not built)$" "$tmp/v"
check "train --help" "$bin" train --help >/dev/null
check "export --help" "$bin" export --help >/dev/null

# --print-config: resolved recipe; printing the printed recipe gives the same text.
"$bin" train "$src/recipes/demo/tiny.yaml" train.lr=5e-4 --print-config >"$tmp/a.yaml"
"$bin" train "$tmp/a.yaml" --print-config >"$tmp/b.yaml"
check "print-config round trip" cmp -s "$tmp/a.yaml" "$tmp/b.yaml"
check "print-config applies override" grep -q "lr: 0.0005" "$tmp/a.yaml"

printf 'model:\n  preset: tiny\ntrain:\n  warmup: 0.1\n' >"$tmp/bad.yaml"
expect_error "unknown key" "bad.yaml:4: train.warmup: unknown key; did you mean train.warmup_ratio?" \
  "$bin" train "$tmp/bad.yaml"
expect_error "bad override" "train.lr: expected a number, got 'x'" \
  "$bin" train "$src/recipes/demo/tiny.yaml" train.lr=x
expect_error "missing init_from" "no config.json" \
  "$bin" train "$src/recipes/demo/tiny.yaml" model.preset= model.init_from=$tmp/nowhere \
  checkpoint.dir=$tmp/run0
expect_error "export of nothing" "neither a run directory" "$bin" export "$tmp" --out "$tmp/x"

# Short run, then export: loads in transformers, weights equal the checkpoint's (bf16-rounded).
"$bin" train "$src/recipes/demo/tiny.yaml" train.max_steps=6 checkpoint.every_steps=3 \
  checkpoint.dir="$tmp/run" logging.progress=false >"$tmp/train.out" 2>"$tmp/train.err"
check "train exits 0" test $? -eq 0
check "train writes metrics" test "$(wc -l <"$tmp/run/metrics.jsonl")" -eq 6
check "latest names the last step" grep -qx "step-0000006" "$tmp/run/latest"
"$bin" export "$tmp/run" --out "$tmp/hf" >/dev/null
check "export exits 0" test $? -eq 0
# checkpoint.at_end=false (benchmarks): the periodic saves only; MFU against logging.peak_tflops.
"$bin" train "$src/recipes/demo/tiny.yaml" train.max_steps=5 checkpoint.every_steps=2 \
  checkpoint.at_end=false logging.peak_tflops=0.5 checkpoint.dir="$tmp/run-noend" \
  logging.progress=false >/dev/null 2>&1
check "at_end=false: steps 2 and 4 saved, not 5" bash -c \
  "[[ -d $tmp/run-noend/step-0000004 && ! -d $tmp/run-noend/step-0000005 ]] && grep -qx step-0000004 $tmp/run-noend/latest"
check "mfu = tflops / peak_tflops at one rank" "$py" -c "
import json, sys
rows = [json.loads(l) for l in open('$tmp/run-noend/metrics.jsonl')]
sys.exit(not rows or not all(abs(r['mfu'] - r['tflops'] / 0.5) <= 1e-9 * r['tflops'] + 1e-12 for r in rows))"
# model.preset beside model.init_from names the architecture the weights must have.
check "init_from with its own preset trains" "$bin" train "$src/recipes/demo/tiny.yaml" \
  model.init_from="$tmp/hf" train.max_steps=1 checkpoint.dir="$tmp/from_hf" logging.progress=false
expect_error "init_from with another preset" "num_key_value_heads is 2 but model.preset tiny" \
  "$bin" train "$src/recipes/demo/tiny.yaml" model.init_from="$tmp/hf" model.preset=tiny \
  train.max_steps=1 checkpoint.dir="$tmp/from_hf2"
check "export is one file" test -f "$tmp/hf/model.safetensors" -a ! -f "$tmp/hf/model.safetensors.index.json"
check "export loads in transformers" "$py" "$src/tests/oracle/check_hf_dir.py" "$tmp/hf" \
  "$tmp/run/step-0000006" bfloat16
"$bin" export "$tmp/run/step-0000003" --out "$tmp/hf3" --dtype fp32 --max-shard-size 20KB >/dev/null
check "sharded fp32 export of an older step loads" "$py" "$src/tests/oracle/check_hf_dir.py" \
  "$tmp/hf3" "$tmp/run/step-0000003" float32
expect_error "bad shard size" "unknown unit 'XB'" "$bin" export "$tmp/run" --out "$tmp/hf4" --max-shard-size 5XB

# Continue from the export with model.init_from: the architecture comes from config.json.
"$bin" train "$src/recipes/demo/tiny.yaml" model.preset= model.init_from="$tmp/hf3" \
  train.max_steps=2 checkpoint.dir="$tmp/run2" logging.progress=false >/dev/null 2>&1
check "init_from an export trains" grep -qx "step-0000002" "$tmp/run2/latest"

# synth-notes: the released layout, byte-identical for a seed, different for another seed.
"$bin" synth-notes --count 40 --seed 9 --questions-per-note 2 --out "$tmp/sn1" >/dev/null
"$bin" synth-notes --count 40 --seed 9 --questions-per-note 2 --out "$tmp/sn2" >/dev/null
"$bin" synth-notes --count 40 --seed 10 --questions-per-note 2 --out "$tmp/sn3" >/dev/null
check "synth-notes deterministic" cmp -s "$tmp/sn1/train.csv" "$tmp/sn2/train.csv"
check "synth-notes seed matters" not cmp -s "$tmp/sn1/train.csv" "$tmp/sn3/train.csv"
check "synth-notes header" test "$(head -n1 "$tmp/sn1/train.csv")" = "patient_id,note,question,answer,task"
check "synth-notes reads with pandas-compatible csv" "$py" -c "
import csv, sys
rows = list(csv.DictReader(open('$tmp/sn1/train.csv', newline='')))
held = list(csv.DictReader(open('$tmp/sn1/heldout.csv', newline='')))
assert len(rows) + len(held) == 80, (len(rows), len(held))
assert {r['patient_id'] for r in rows}.isdisjoint({r['patient_id'] for r in held})
assert len({r['task'] for r in rows + held}) == 8
"

# tokenizer train on the synthetic notes, then encode: LLaMA conventions (bos 1 first).
"$bin" tokenizer train --input "$tmp/sn1/train.csv" --vocab-size 600 --out "$tmp/tok.model" >/dev/null 2>&1
check "tokenizer train" test -s "$tmp/tok.model"
check "tokenizer encode starts with bos" test "$("$bin" tokenizer encode --model "$tmp/tok.model" "BP 120/80" | cut -d' ' -f1)" = 1
expect_error "tokenizer on a non-model" "not a SentencePiece model" \
  "$bin" tokenizer encode --model "$tmp/sn1/train.csv" "x"

# The data path end to end: notes -> corpus.h5 -> training on it; wrong tokenizer refused.
"$bin" corpus build --input "$tmp/sn1/train.csv" --tokenizer "$tmp/tok.model" --out "$tmp/pre.h5" >/dev/null
check "corpus build" test -s "$tmp/pre.h5"
"$bin" corpus inspect "$tmp/pre.h5" --tokenizer "$tmp/tok.model" >"$tmp/inspect.txt"
check "corpus inspect shows the stage" grep -q "stage pretrain" "$tmp/inspect.txt"
"$bin" train "$src/recipes/demo/tiny.yaml" data.corpus="$tmp/pre.h5" data.tokenizer="$tmp/tok.model" \
  model.vocab_size=600 data.seq_len=32 train.max_steps=4 checkpoint.dir="$tmp/run_corpus" \
  logging.progress=false >/dev/null 2>&1
check "train on a corpus" grep -qx "step-0000004" "$tmp/run_corpus/latest"
"$bin" tokenizer train --input "$tmp/sn3/train.csv" --vocab-size 600 --out "$tmp/tok_other.model" >/dev/null 2>&1
expect_error "corpus/tokenizer mismatch" "was built with tokenizer" \
  "$bin" train "$src/recipes/demo/tiny.yaml" data.corpus="$tmp/pre.h5" data.tokenizer="$tmp/tok_other.model" \
  model.vocab_size=600 data.seq_len=32 train.max_steps=4 checkpoint.dir="$tmp/run_bad"
expect_error "corpus vocabulary above the model's" "was built with a 600-token vocabulary but the model has 100" \
  "$bin" train "$src/recipes/demo/tiny.yaml" data.corpus="$tmp/pre.h5" model.vocab_size=100 data.seq_len=32 checkpoint.dir="$tmp/run_bad2"

# Stage two on an instruct corpus: padded (Asclepius) and packed batches both train; a
# pretrain corpus is refused for train.stage instruct.
"$bin" corpus build --input "$tmp/sn1/train.csv" --tokenizer "$tmp/tok.model" --stage instruct \
  --max-len 1024 --out "$tmp/ins.h5" >/dev/null
for pack in false true; do
  "$bin" train "$src/recipes/demo/tiny.yaml" train.stage=instruct data.corpus="$tmp/ins.h5" \
    data.pack=$pack model.vocab_size=600 model.max_position_embeddings=1024 data.seq_len=1024 \
    train.global_batch_size=4 train.micro_batch_size=2 train.max_steps=3 \
    checkpoint.dir="$tmp/run_ins_$pack" logging.progress=false >/dev/null 2>"$tmp/ins_$pack.err"
  check "instruct training (pack=$pack)" grep -qx "step-0000003" "$tmp/run_ins_$pack/latest"
done
expect_error "stage/corpus mismatch" "is a pretrain corpus but train.stage is instruct" \
  "$bin" train "$src/recipes/demo/tiny.yaml" train.stage=instruct data.corpus="$tmp/pre.h5" \
  model.vocab_size=600 data.seq_len=32 checkpoint.dir="$tmp/run_bad3"

# SIGTERM mid-run: the step in flight finishes, a checkpoint is saved, `latest` names it,
# exit status 128+15 and one line saying so.
"$bin" train "$src/recipes/demo/tiny.yaml" train.max_steps=1000000 checkpoint.dir="$tmp/sig" \
  logging.progress=false >/dev/null 2>"$tmp/sig.err" &
pid=$!
for _ in $(seq 600); do [[ -f "$tmp/sig/metrics.jsonl" && $(wc -l <"$tmp/sig/metrics.jsonl") -ge 3 ]] && break; sleep 0.1; done
kill -TERM $pid; wait $pid; rc=$?
check "SIGTERM exits 143" test $rc -eq 143
steps=$(wc -l <"$tmp/sig/metrics.jsonl")
check "SIGTERM saves the last finished step" grep -qx "$(printf 'step-%07d' "$steps")" "$tmp/sig/latest"
check "SIGTERM says where" grep -q "stopped by SIGTERM after step $steps; checkpoint saved" "$tmp/sig.err"
check "SIGTERM checkpoint exports" "$bin" export "$tmp/sig" --out "$tmp/sig_hf"

# logging.profile_*: a Chrome trace of exactly the chosen steps, which trace_summary.py reads.
"$bin" train "$src/recipes/demo/tiny.yaml" checkpoint.dir="$tmp/prof" train.max_steps=4 \
  logging.progress=false logging.profile_start_step=2 logging.profile_steps=2 >/dev/null 2>"$tmp/prof.err"
check "profile: saved and said where" grep -q "profile of steps 2..3 saved to $tmp/prof/profile/trace-rank0.json" "$tmp/prof.err"
check "profile: the trace holds libtorch's operators of the steps" "$py" -c "
import json, sys
ev = json.load(open('$tmp/prof/profile/trace-rank0.json'))['traceEvents']
ops = [e for e in ev if e.get('cat') == 'cpu_op']
sys.exit(not (len(ops) > 100 and any(e['name'] == 'aten::mm' for e in ops)))"
check "profile: trace_summary reads a CPU trace (no device events)" \
  bash -c "'$py' '$src/tools/bench/trace_summary.py' '$tmp/prof/profile/trace-rank0.json' | grep -q 'no device events'"
"$bin" train "$src/recipes/demo/tiny.yaml" checkpoint.dir="$tmp/noprof" train.max_steps=2 \
  logging.progress=false >/dev/null 2>&1
check "profile: none unless asked for" test ! -e "$tmp/noprof/profile"
expect_error "profile: zero steps" "logging.profile_steps" \
  "$bin" train "$src/recipes/demo/tiny.yaml" logging.profile_start_step=1 logging.profile_steps=0

# The memory planner on the paper's model sizes (and the arithmetic it checks like a launch).
cat >"$tmp/plan.yaml" <<'YAML'
model:
  preset: llama2-7b
data:
  corpus: demo
  seq_len: 2048
train:
  global_batch_size: 128
  micro_batch_size: 1
  dtype: bf16
parallel:
  mode: fsdp
YAML
"$bin" plan "$tmp/plan.yaml" --world-size 8 --gpu-memory-gb 80 >"$tmp/plan7" 2>&1
check "plan 7B on 8 ranks fits 80 GiB" grep -q "fits in 80 GiB per device: yes" "$tmp/plan7"
check "plan 7B: model state per rank ~14.1 GiB (16 bytes x 6.74B / 8)" grep -qE "model state +14\.1[0-9]+ GiB" "$tmp/plan7"
"$bin" plan "$tmp/plan.yaml" model.preset=llama-13b --world-size 1 --gpu-memory-gb 141 >"$tmp/plan13" 2>&1
check "plan 13B on one 141 GiB device does not fit" grep -q "fits in 141 GiB per device: NO" "$tmp/plan13"
for f in "$src"/recipes/asclepius/*.yaml; do
  "$bin" plan "$f" --world-size 8 --gpu-memory-gb 80 >"$tmp/planA" 2>&1
  check "plan $(basename "$f") on 8 x 80 GiB" grep -q "fits in 80 GiB per device: yes" "$tmp/planA"
done
expect_error "plan: batch arithmetic" "data-parallel ranks (3)" "$bin" plan "$tmp/plan.yaml" --world-size 3

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
