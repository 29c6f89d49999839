#!/usr/bin/env bash
# `generate --input/--output` at scale, under real mpirun: ranks take disjoint shares of fixed
# batches (sorted by prompt length), the output holds every good line once, in input order, and
# is byte-identical at 1, 2 and 3 ranks for greedy decoding, beam search and sampling (a seed
# per line); a job killed (kill -9) at random moments and run again with the same command
# continues from the batches already written (at the same or another number of ranks) and ends
# with the same bytes; a parts directory from other settings is refused; bad lines are listed at
# the end and never shift the other answers.
# Usage: generate_ranks_test.sh ASCLEPIUS_BIN SOURCE_DIR PYTHON
set -uo pipefail
bin=$1 src=$2 py=$3
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

"$bin" synth-notes --count 24 --seed 5 --questions-per-note 2 --out "$tmp/sn" >/dev/null
"$bin" tokenizer train --input "$tmp/sn/train.csv" --vocab-size 500 --out "$tmp/tok.model" >/dev/null 2>&1
"$bin" init "$src/recipes/demo/tiny.yaml" model.vocab_size=500 model.max_position_embeddings=1024 \
  --out "$tmp/m" >/dev/null
# JSON Lines input with a broken line and an empty question among the good ones.
"$py" - "$tmp/sn/train.csv" "$tmp/in.jsonl" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
with open(sys.argv[2], "w") as f:
    for i, r in enumerate(rows):
        if i == 5:
            f.write('{"note": "broken\n')
        if i == 9:
            f.write(json.dumps({"note": r["note"], "question": "  "}) + "\n")
        f.write(json.dumps({k: r[k] for k in ("note", "question", "answer", "task")}) + "\n")
PY
good=$(($(wc -l <"$tmp/in.jsonl") - 2))
gen() {  # NP OUT [flags...]: exit status 1 is expected (the two bad lines are reported)
  local np=$1 out=$2; shift 2
  local cmd=("$bin" generate --model "$tmp/m" --tokenizer "$tmp/tok.model" --input "$tmp/in.jsonl"
             --output "$out" --threads 1 "$@")
  if [[ $np == 1 ]]; then "${cmd[@]}"; else mpirun --oversubscribe -np "$np" "${cmd[@]}"; fi
}
std=(--batch-size 4 --max-new-tokens 24)
gen 1 "$tmp/g1.jsonl" "${std[@]}" >"$tmp/g1.log" 2>&1
check "one rank: the good lines answered, the bad two listed (exit 1)" \
  bash -c "[[ \$(wc -l <'$tmp/g1.jsonl') == $good ]] && grep -q '2 of .* records .* could not be answered' '$tmp/g1.log'"
check "output in input order" "$py" -c "
import json, sys
ins = [l for l in open('$tmp/in.jsonl')]
good = []
for l in ins:
    try:
        j = json.loads(l)
    except Exception:
        continue
    if j['question'].strip(): good.append((j['note'], j['question']))
out = [json.loads(l) for l in open('$tmp/g1.jsonl')]
sys.exit(not (good == [(o['note'], o['question']) for o in out] and all('asclepius_answer' in o for o in out)))"
for np in 2 3; do
  gen $np "$tmp/g$np.jsonl" "${std[@]}" >"$tmp/g$np.log" 2>&1
  check "greedy at $np ranks: the same bytes as one rank" cmp -s "$tmp/g1.jsonl" "$tmp/g$np.jsonl"
done
check "progress lines name lines/s, tokens/s and ETA" grep -q "lines/s, .* tokens/s, ETA" "$tmp/g2.log"
gen 1 "$tmp/s1.jsonl" "${std[@]}" --do-sample --top-k 20 --seed 7 >/dev/null 2>&1
gen 3 "$tmp/s3.jsonl" "${std[@]}" --do-sample --top-k 20 --seed 7 >/dev/null 2>&1
check "sampling (a seed per line): 3 ranks = 1 rank" cmp -s "$tmp/s1.jsonl" "$tmp/s3.jsonl"
check "sampling differs from greedy" not cmp -s "$tmp/s1.jsonl" "$tmp/g1.jsonl"
gen 1 "$tmp/b1.jsonl" "${std[@]}" --num-beams 3 >/dev/null 2>&1
gen 2 "$tmp/b2.jsonl" "${std[@]}" --num-beams 3 >/dev/null 2>&1
check "beam search: 2 ranks = 1 rank" cmp -s "$tmp/b1.jsonl" "$tmp/b2.jsonl"
gen 2 "$tmp/c2.jsonl" "${std[@]}" --continuous-batching >/dev/null 2>&1
check "continuous batching at 2 ranks: the same greedy answers" cmp -s "$tmp/g1.jsonl" "$tmp/c2.jsonl"
gen 1 "$tmp/p1.jsonl" --batch-size 4 --preset asclepius-eval --max-new-tokens 8 >"$tmp/p1.log" 2>&1
gen 2 "$tmp/p2.jsonl" --batch-size 4 --preset asclepius-eval --max-new-tokens 8 >/dev/null 2>&1
check "--preset asclepius-eval: upstream's settings, an explicit option wins" \
  grep -q "preset asclepius-eval: bf16, 5 beams, sampling, temperature 1, top-k 50, 8 new tokens" "$tmp/p1.log"
check "--preset asclepius-eval (beam sampling, bf16): 2 ranks = 1 rank" cmp -s "$tmp/p1.jsonl" "$tmp/p2.jsonl"

# Killed at random moments, then the same command (2 ranks, or 3 the second time). Longer
# answers (always 160 tokens, 2 lines a batch) so that a kill lands mid-way.
long=(--batch-size 2 --max-new-tokens 160 --ignore-eos)
gen 1 "$tmp/l1.jsonl" "${long[@]}" >/dev/null 2>&1
k=0
for delay in $(shuf -i 500-1200 -n 3 | sed "s/\(.*\)\(...\)$/\1.\2/"); do  # random moments, printed
  out="$tmp/k$delay.jsonl"
  setsid bash -c "$(declare -f gen); bin='$bin' tmp='$tmp'; gen 2 '$out' ${long[*]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  parts=$(ls "$out.parts" 2>/dev/null | grep -c batch || true)
  k=$((k + 1)); np=$((2 + k % 2))
  gen $np "$out" "${long[@]}" >"$tmp/k.log" 2>&1
  echo "killed after ${delay}s with $parts batches written; resumed at $np ranks"
  if [[ $parts -gt 0 ]]; then
    check "killed after ${delay}s: the rerun resumed from the $parts batches written" \
      grep -q "resuming from $out.parts" "$tmp/k.log"
  fi
  check "killed after ${delay}s ($parts batches written), resumed at $np ranks: the same bytes" \
    bash -c "cmp -s '$tmp/l1.jsonl' '$out' && [[ ! -e '$out.parts' ]]"
done
# A parts directory from other settings is refused.
mkdir -p "$tmp/o.jsonl.parts" && echo '{}' >"$tmp/o.jsonl.parts/plan.json"
expect_error "a parts directory of other settings" "holds an interrupted job with other settings" \
  gen 1 "$tmp/o.jsonl" "${std[@]}"

# Answers without their plan.json cannot be matched to a job: refused.
mkdir -p "$tmp/q.jsonl.parts" && echo '{}' >"$tmp/q.jsonl.parts/batch-000000.jsonl"
expect_error "answers without plan.json" "holds results but no plan.json" \
  gen 1 "$tmp/q.jsonl" "${std[@]}"

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
