#!/usr/bin/env bash
# Stage-two use from the command line: `init`, `eval ppl` (checked against transformers on the
# same corpus), `generate` in its three modes, `eval qa` on its output, and bad input: a note
# longer than the context (cut, with a warning), a tokenizer that does not fit the model, an
# empty question, malformed input lines (reported with their line numbers, the rest answered);
# --profile's trace.
# Usage: generate_test.sh ASCLEPIUS_BIN SOURCE_DIR PYTHON
set -uo pipefail
bin=$1 src=$2 py=$3
source "$(dirname "$0")/lib.sh"

"$bin" synth-notes --count 30 --seed 3 --questions-per-note 2 --out "$tmp/sn" >/dev/null
"$bin" tokenizer train --input "$tmp/sn/train.csv" --vocab-size 600 --out "$tmp/tok.model" >/dev/null 2>&1
"$bin" corpus build --input "$tmp/sn/heldout.csv" --tokenizer "$tmp/tok.model" --out "$tmp/held.h5" >/dev/null
"$bin" corpus build --input "$tmp/sn/heldout.csv" --tokenizer "$tmp/tok.model" --stage instruct \
  --max-len 1024 --out "$tmp/held_ins.h5" >/dev/null
tiny="$src/recipes/demo/tiny.yaml"

# init: the recipe's starting model, seeded; the same seed gives the same file.
"$bin" init "$tiny" model.vocab_size=600 model.max_position_embeddings=1024 --out "$tmp/m" >/dev/null
"$bin" init "$tiny" model.vocab_size=600 model.max_position_embeddings=1024 --out "$tmp/m2" >/dev/null
check "init writes a Hugging Face directory" test -f "$tmp/m/config.json" -a -f "$tmp/m/model.safetensors"
check "init is deterministic for a seed" cmp -s "$tmp/m/model.safetensors" "$tmp/m2/model.safetensors"

# eval ppl equals transformers' on the same windows / masked examples.
"$bin" eval ppl --model "$tmp/m" --corpus "$tmp/held.h5" --seq-len 100 --batch-size 3 --json "$tmp/ppl.json" >/dev/null
check "eval ppl (pretrain windows) equals transformers'" "$py" "$src/tests/oracle/check_perplexity.py" \
  "$tmp/m" "$tmp/held.h5" "$tmp/ppl.json" 100
"$bin" eval ppl --model "$tmp/m" --corpus "$tmp/held_ins.h5" --batch-size 2 --json "$tmp/ppl_ins.json" >/dev/null
check "eval ppl (instruct, answer tokens) equals transformers'" "$py" "$src/tests/oracle/check_perplexity.py" \
  "$tmp/m" "$tmp/held_ins.h5" "$tmp/ppl_ins.json" 1024

# generate: one question.
"$py" -c "import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); open(sys.argv[2],'w').write(r['note'])" \
  "$tmp/sn/heldout.csv" "$tmp/note.txt"
"$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" \
  --question "What was the chief complaint?" --max-new-tokens 8 >"$tmp/one.out" 2>"$tmp/one.err"
check "generate one answer exits 0" test $? -eq 0
check "generate prints one answer line" test "$(wc -l <"$tmp/one.out")" -eq 1
check "generate reports tokens/s" grep -q "tokens generated in" "$tmp/one.err"

"$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" --dtype bf16 \
  --question "What was the chief complaint?" --max-new-tokens 8 --num-beams 2 >"$tmp/bf16.out" 2>/dev/null
check "generate in bf16 with beams" test $? -eq 0 -a "$(wc -l <"$tmp/bf16.out")" -eq 1
"$bin" eval ppl --model "$tmp/m" --corpus "$tmp/held.h5" --seq-len 100 --dtype bf16 --json "$tmp/ppl16.json" >/dev/null
check "eval ppl in bf16 within 2% of fp32" "$py" -c "
import json, sys
a, b = (json.load(open(p))['perplexity'] for p in sys.argv[1:])
sys.exit(abs(a - b) > 0.02 * a)" "$tmp/ppl.json" "$tmp/ppl16.json"

# A note longer than the context: cut from the note's side, with a warning; the answer space kept.
"$bin" init "$tiny" model.vocab_size=600 model.max_position_embeddings=320 data.seq_len=64 --out "$tmp/short" >/dev/null
"$bin" generate --model "$tmp/short" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" \
  --question "What was the chief complaint?" --max-new-tokens 40 >"$tmp/cut.out" 2>"$tmp/cut.err"
check "long note: still answered" test $? -eq 0 -a "$(wc -l <"$tmp/cut.out")" -eq 1
check "long note: warning says it was cut to fit 280 tokens" grep -q "note cut to .* so that the prompt fits 280 tokens (context 320 - max-new-tokens 40)" "$tmp/cut.err"
expect_error "question too long for the context" "the prompt without any note takes" \
  "$bin" generate --model "$tmp/short" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" \
  --question "$(printf 'why %.0s' $(seq 200))" --max-new-tokens 40
expect_error "max-new-tokens beyond the context" "--max-new-tokens 320 leaves no room" \
  "$bin" generate --model "$tmp/short" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" \
  --question "Why?" --max-new-tokens 320

# Tokenizer and model that do not belong together; empty question; nothing to do.
"$bin" init "$tiny" --out "$tmp/v256" >/dev/null
expect_error "tokenizer larger than the model's vocabulary" "has 600 pieces but the model in" \
  "$bin" generate --model "$tmp/v256" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" --question "Why?"
expect_error "corpus vocabulary above the model's" "tokenised with 600 pieces but the model's vocabulary has 256" \
  "$bin" eval ppl --model "$tmp/v256" --corpus "$tmp/held.h5"
expect_error "empty question" "the question is empty" \
  "$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" --question "  "
expect_error "no mode" "generate needs --note and --question" \
  "$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model"

# Batch: a file with malformed lines; every good line answered, bad ones named by line at the end.
"$py" - "$tmp/sn/heldout.csv" "$tmp/in.jsonl" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))[:5]
lines = [json.dumps({"note": r["note"], "question": r["question"], "answer": r["answer"], "task": r["task"]}) for r in rows]
lines.insert(2, '{"note": "broken json", "question": ')           # line 3
lines.insert(4, json.dumps({"note": "a note", "question": ""}))   # line 5: empty question
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
"$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --input "$tmp/in.jsonl" \
  --output "$tmp/ans.jsonl" --max-new-tokens 6 --batch-size 2 --model-name tiny >/dev/null 2>"$tmp/batch.err"
rc=$?
check "batch with bad lines exits 1" test $rc -eq 1
check "batch answers every good line" test "$(wc -l <"$tmp/ans.jsonl")" -eq 5
check "batch names the malformed line" grep -q "line 3" "$tmp/batch.err"
check "batch names the empty question's record" grep -q "in.jsonl record 5: the question is empty" "$tmp/batch.err"
check "batch ends with one summary" grep -q "2 of 7 records in .* could not be answered" "$tmp/batch.err"
check "batch output has the scoring layout" "$py" -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all({'note', 'question', 'answer', 'task', 'tiny_answer'} <= set(r) for r in rows), rows[0].keys()
" "$tmp/ans.jsonl"
"$bin" eval qa --answers "$tmp/ans.jsonl" >"$tmp/qa.out"
check "eval qa scores the batch output" grep -q "^overall  *5 " "$tmp/qa.out"

# Interactive: note, empty line, question -> answer; an empty note ends the loop.
printf '%s\n\nWhat was the chief complaint?\n\n' "$(cat "$tmp/note.txt")" |
  "$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --interactive --max-new-tokens 5 \
    >"$tmp/inter.out" 2>/dev/null
check "interactive answers and ends" test $? -eq 0
check "interactive prints an answer" grep -q "^Answer:" "$tmp/inter.out"

# --profile: a Chrome trace of the generation whose operators include our decoding kernels
# (CPU, fp32), ranked by trace_summary.py --cpu; a path that is an input is refused.
"$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --input "$tmp/sn/heldout.csv" \
  --output "$tmp/prof.jsonl" --max-new-tokens 4 --batch-size 3 --continuous-batching \
  --profile "$tmp/prof/trace.json" >/dev/null 2>"$tmp/prof.err"
check "generate --profile exits 0" test $? -eq 0
check "generate --profile: the trace names the decoding kernels" "$py" -c "
import json, sys
names = {e.get('name') for e in json.load(open(sys.argv[1]))['traceEvents'] if e.get('cat') == 'cpu_op'}
sys.exit(not {'asc::small_m_linear', 'asc::decode_attention'} <= names)" "$tmp/prof/trace.json"
"$py" "$src/tools/bench/trace_summary.py" --cpu "$tmp/prof/trace.json" --top 3 >"$tmp/prof.sum" 2>&1
check "trace_summary.py --cpu ranks the operators" grep -q "asc::\|aten::" "$tmp/prof.sum"
# A bare file name (no directory part) is written in the working directory.
(cd "$tmp" && "$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" \
  --question "Why?" --max-new-tokens 2 --profile bare.json >/dev/null 2>&1)
check "generate --profile with a bare file name writes it" test -s "$tmp/bare.json"
expect_error "generate --profile onto its input" "--profile" \
  "$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --input "$tmp/sn/heldout.csv" \
  --output "$tmp/prof2.jsonl" --profile "$tmp/sn/heldout.csv"
check "the refused --profile left the input alone" test -s "$tmp/sn/heldout.csv"

# --device cuda (generate, synthesize, judge run). Without CUDA: one clear error naming the flag,
# before anything is loaded (the model directory here is empty: reading it would fail otherwise).
# With a GPU: greedy ids (static and continuous batches) equal the CPU's.
mkdir -p "$tmp/empty"
if "$py" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  for mode in "" --continuous-batching; do
    for dev in cpu cuda; do
      "$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --input "$tmp/sn/heldout.csv" \
        --output "$tmp/dev-$dev$mode.jsonl" --with-ids --max-new-tokens 12 --batch-size 4 $mode \
        --device $dev >/dev/null 2>&1
    done
    check "generate --device cuda $mode: greedy ids equal the CPU's" "$py" -c "
import json, sys
ids = [[json.loads(l)['asclepius_ids'] for l in open(p)] for p in sys.argv[1:]]
sys.exit(not (ids[0] and ids[0] == ids[1]))" "$tmp/dev-cpu$mode.jsonl" "$tmp/dev-cuda$mode.jsonl"
  done
else
  expect_error "generate --device cuda without CUDA" "--device cuda: no CUDA device is available" \
    "$bin" generate --model "$tmp/empty" --tokenizer "$tmp/tok.model" --note "$tmp/note.txt" \
    --question "Why?" --device cuda
  expect_error "synthesize --device cuda without CUDA" "--device cuda: no CUDA device is available" \
    "$bin" synthesize answers --model "$tmp/empty" --tokenizer "$tmp/tok.model" \
    --input "$tmp/sn/heldout.csv" --out "$tmp/syn.jsonl" --device cuda
  expect_error "judge run --device cuda without CUDA" "--device cuda: no CUDA device is available" \
    "$bin" judge run --judge-model "$tmp/empty" --tokenizer "$tmp/tok.model" \
    --requests "$tmp/sn/heldout.csv" --out "$tmp/judge.jsonl" --device cuda
  check "no output written by a refused --device cuda" not test -e "$tmp/syn.jsonl" -o -e "$tmp/judge.jsonl"
fi

echo "generate_test: $passes passed, $fails failed"
exit $((fails > 0))
