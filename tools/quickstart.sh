#!/usr/bin/env bash
# The whole Asclepius loop in miniature, on a fresh machine, in minutes:
#   set-up -> synthetic discharge summaries with questions -> a SentencePiece tokenizer -> the
#   pretraining and instruction corpora (HDF5) -> stage one (continued pretraining of a tiny
#   LLaMA) under `mpirun -np 2` in fsdp mode -> stage two (instruction tuning, answer-only loss)
#   under `mpirun -np 2` -> held-out perplexity before/after stage one and QA scores
#   before/after stage two -> one generated answer beside its reference -> a Hugging Face
#   export of the final model.
#   ASCLEPIUS_QUICKSTART_QUESTIONS=N   held-out questions answered for the QA table (default 60)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
start=$SECONDS
bin=build/bin/asclepius
py="$(cat .venv-path)/bin/python"
run=runs/quickstart
data=$run/data
questions=${ASCLEPIUS_QUICKSTART_QUESTIONS:-60}
rm -rf "$run"
step() { printf '\n== [%4ds] %s\n' $((SECONDS - start)) "$*"; }

step "synthetic notes: 2000 discharge summaries, 2 questions each (every 10th note held out)"
"$bin" synth-notes --count 2000 --seed 1 --questions-per-note 2 --out "$data"
step "tokenizer (SentencePiece BPE, LLaMA conventions, 1000 pieces)"
"$bin" tokenizer train --input "$data/train.csv" --vocab-size 1000 --out "$data/tok.model" 2>/dev/null
step "corpora: stage one (notes), held-out notes, stage two (prompt + answer)"
"$bin" corpus build --input "$data/train.csv" --tokenizer "$data/tok.model" --out "$data/pretrain.h5"
"$bin" corpus build --input "$data/heldout.csv" --tokenizer "$data/tok.model" --out "$data/heldout.h5"
"$bin" corpus build --input "$data/train.csv" --tokenizer "$data/tok.model" --stage instruct \
  --max-len 1024 --out "$data/instruct.h5"
# The held-out questions the QA table is scored on (the first N of heldout.csv).
"$py" - "$data/heldout.csv" "$data/heldout-qa.jsonl" "$questions" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))[: int(sys.argv[3])]
with open(sys.argv[2], "w") as f:
    for r in rows:
        f.write(json.dumps({"note": r["note"], "question": r["question"], "answer": r["answer"],
                            "task": r["task"]}) + "\n")
PY

step "stage one: continued pretraining, mpirun -np 2, parallel.mode=fsdp"
"$bin" init recipes/demo/notes.yaml --out "$run/init" >/dev/null
launch/mpirun.sh 2 recipes/demo/notes.yaml parallel.mode=fsdp checkpoint.dir="$run/stage1"
step "stage two: instruction tuning from stage one, mpirun -np 2, parallel.mode=fsdp"
launch/mpirun.sh 2 recipes/demo/instruct.yaml parallel.mode=fsdp checkpoint.dir="$run/stage2" \
  model.init_from="$run/stage1"

step "evaluation: held-out perplexity and QA on $questions held-out questions (greedy)"
for m in init stage1; do
  "$bin" eval ppl --model "$run/$m" --corpus "$data/heldout.h5" --seq-len 512 \
    --json "$run/ppl-$m.json"
done
for m in stage1 stage2; do
  "$bin" generate --model "$run/$m" --tokenizer "$data/tok.model" --input "$data/heldout-qa.jsonl" \
    --output "$run/answers-$m.jsonl" --max-new-tokens 64 --batch-size 8 2>"$run/generate-$m.log"
  "$bin" eval qa --answers "$run/answers-$m.jsonl" --json "$run/qa-$m.json" >/dev/null
done

step "results"
"$py" - "$run" <<'PY'
import json, sys
run = sys.argv[1]
ppl = {m: json.load(open(f"{run}/ppl-{m}.json")) for m in ("init", "stage1")}
qa = {m: json.load(open(f"{run}/qa-{m}.json"))["overall"] for m in ("stage1", "stage2")}
print(f"held-out notes perplexity ({ppl['init']['tokens']} tokens):")
print(f"  before stage one (initial weights)  {ppl['init']['perplexity']:8.2f}")
print(f"  after stage one                     {ppl['stage1']['perplexity']:8.2f}")
n = qa["stage2"]["n"]
print(f"held-out QA ({n} questions, greedy)     EM      F1  ROUGE-L")
for m, name in (("stage1", "before stage two (stage one)"), ("stage2", "after stage two")):
    q = qa[m]
    print(f"  {name:32s} {100 * q['em']:6.1f}  {100 * q['f1']:6.1f}  {100 * q['rouge_l']:6.1f}")
row = json.loads(open(f"{run}/answers-stage2.jsonl").readline())
print("\nexample (held-out note):")
print("  question:  " + row["question"])
print("  reference: " + row["answer"])
print("  stage two: " + row["asclepius_answer"])
PY
"$bin" export "$run/stage2" --out "$run/hf" >/dev/null
step "done: Hugging Face model in $run/hf (AutoModelForCausalLM.from_pretrained loads it)"
