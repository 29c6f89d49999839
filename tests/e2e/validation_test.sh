#!/usr/bin/env bash
# Validation during training (eval.corpus, eval.every_steps, eval.max_batches): the held-out loss
# and perplexity appear in metrics.jsonl, the progress line and TensorBoard on the due steps; the
# loss equals `asclepius eval ppl` (a separate code path) on that step's checkpoint; it is the same
# at 1 rank and at 3 ranks in fsdp (uneven shares of the held-out sequences); a resumed run
# validates on its own schedule; bad eval keys and corpora are refused with one clear line.
# Usage: validation_test.sh ASCLEPIUS PYTHON
set -uo pipefail
bin=$1 py=$2
here=$(cd "$(dirname "$0")" && pwd)
recipe=$here/../../recipes/demo/tiny.yaml
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; return 1; fi; }

"$bin" synth-notes --count 60 --seed 3 --out "$tmp/sn" >/dev/null
"$bin" tokenizer train --input "$tmp/sn/train.csv" --vocab-size 600 --out "$tmp/tok.model" >/dev/null 2>&1
"$bin" corpus build --input "$tmp/sn/train.csv" --tokenizer "$tmp/tok.model" --out "$tmp/train.h5" >/dev/null
"$bin" corpus build --input "$tmp/sn/heldout.csv" --tokenizer "$tmp/tok.model" --out "$tmp/heldout.h5" >/dev/null
seq=48
# The held-out windows: eval reads every one (max_batches 0). At 3 ranks with micro-batches of 2
# the shares must be uneven and the shortest one even, so that one rank runs a padding pass (a
# forward with no target, for the others' fsdp gathers): 62 windows = 21 + 21 + 20.
n=$("$py" -c "import h5py; f=h5py.File('$tmp/heldout.h5'); t=int(f.attrs['num_tokens']); print(len(range(0, t - 1, $seq)))")
echo "held-out corpus: $n windows of $seq tokens"
check "the 3-rank run exercises a padding pass ($n windows)" "(( n % 3 != 0 && (n / 3) % 2 == 0 ))"

common=(data.corpus="$tmp/train.h5" data.tokenizer="$tmp/tok.model" model.vocab_size=600
        data.seq_len=$seq train.global_batch_size=12 train.max_steps=6 train.threads=1
        train.weight_decay=0.1 logging.progress=true logging.tensorboard=true
        eval.corpus="$tmp/heldout.h5" eval.every_steps=4 checkpoint.every_steps=4)
timeout 300 "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=4 \
  checkpoint.dir="$tmp/one" >"$tmp/one.log" 2>&1 || { cat "$tmp/one.log"; exit 1; }
timeout 300 mpirun -np 3 --oversubscribe "$bin" train "$recipe" "${common[@]}" parallel.mode=fsdp \
  train.micro_batch_size=2 checkpoint.dir="$tmp/three" >"$tmp/three.log" 2>&1 || { cat "$tmp/three.log"; exit 1; }

evals() { "$py" -c "
import json, sys
for l in open('$1/metrics.jsonl'):
    j = json.loads(l)
    if 'eval_loss' in j: print(j['step'], repr(j['eval_loss']), repr(j['eval_ppl']), j['eval_tokens'])
"; }
evals "$tmp/one" >"$tmp/one.evals"; evals "$tmp/three" >"$tmp/three.evals"
cat "$tmp/one.evals" "$tmp/three.evals"
check "validated after steps 4 and 6 (every 4, and the last)" "[[ \$(cut -d' ' -f1 $tmp/one.evals | tr '\n' ' ') == '4 6 ' ]]"
check "perplexity = exp(loss)" "$py -c \"
import math
for l in open('$tmp/one.evals'):
    s, loss, ppl, n = l.split(); assert abs(math.exp(float(loss)) - float(ppl)) < 1e-9 * float(ppl)
\""
check "progress line shows the validation" "grep -q 'step 4/6 .* | val loss [0-9.]* ppl [0-9.]*' $tmp/one.log"
check "TensorBoard has eval/loss" "$py -c \"
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(glob.glob('$tmp/one/tensorboard')[0]); ea.Reload()
assert [e.step for e in ea.Scalars('eval/loss')] == [4, 6], ea.Scalars('eval/loss')
\""
check "1 rank and 3 ranks (fsdp): same held-out loss within 1e-5" "$py -c \"
a = [l.split() for l in open('$tmp/one.evals')]; b = [l.split() for l in open('$tmp/three.evals')]
assert len(a) == len(b) == 2, (a, b)
for x, y in zip(a, b):
    assert x[0] == y[0] and x[3] == y[3], (x, y)
    assert abs(float(x[1]) - float(y[1])) <= 1e-5 * abs(float(x[1])), (x, y)
\""
# The oracle: eval ppl on the checkpoint of step 4 (the weights the validation saw).
"$bin" eval ppl --model "$tmp/one/step-0000004" --corpus "$tmp/heldout.h5" --seq-len $seq \
  --json "$tmp/ppl.json" >/dev/null 2>&1
check "equals eval ppl on the step-4 checkpoint (1e-6)" "$py -c \"
import json
ppl = json.load(open('$tmp/ppl.json')); step, loss, _, n = open('$tmp/one.evals').readline().split()
assert step == '4' and int(n) == ppl['tokens'], (step, n, ppl)
assert abs(float(loss) - ppl['mean_loss']) <= 1e-6 * ppl['mean_loss'], (loss, ppl)
\""
# eval.max_batches: the first max_batches x global batch sequences only.
timeout 300 "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=4 eval.max_batches=1 \
  checkpoint.dir="$tmp/capped" >"$tmp/capped.log" 2>&1
"$bin" eval ppl --model "$tmp/capped/step-0000004" --corpus "$tmp/heldout.h5" --seq-len $seq \
  --max-sequences 12 --json "$tmp/ppl12.json" >/dev/null 2>&1
evals "$tmp/capped" >"$tmp/capped.evals"
check "eval.max_batches=1 scores the first 12 sequences" "$py -c \"
import json
ppl = json.load(open('$tmp/ppl12.json')); step, loss, _, n = open('$tmp/capped.evals').readline().split()
assert int(n) == ppl['tokens'] and abs(float(loss) - ppl['mean_loss']) <= 1e-6 * ppl['mean_loss'], (loss, n, ppl)
\""
# Resumed after step 4 (a preemption): validates after step 6 again, once.
timeout 300 "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=4 \
  checkpoint.dir="$tmp/resumed" --stop-after-step 4 >/dev/null 2>&1
timeout 300 "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=4 \
  checkpoint.dir="$tmp/resumed" checkpoint.resume=auto >"$tmp/resumed.log" 2>&1
evals "$tmp/resumed" >"$tmp/resumed.evals"
check "resumed run: the same validations as the uninterrupted one" "cmp -s $tmp/one.evals $tmp/resumed.evals"

# Bad input: one line naming the key or the file.
expect_error() {  # NAME TEXT CMD...
  local name=$1 text=$2; shift 2
  "$@" >"$tmp/err.out" 2>&1; local rc=$?
  check "$name: refused ($rc)" "[[ $rc != 0 ]] && grep -q -- \"$text\" $tmp/err.out" ||
    cat "$tmp/err.out"
}
expect_error "eval.every_steps without eval.corpus" "eval.every_steps is 3 but eval.corpus is not set" \
  "$bin" train "$recipe" eval.every_steps=3 checkpoint.dir="$tmp/bad1"
expect_error "eval.corpus missing" "nothing.h5" \
  "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=4 eval.corpus="$tmp/nothing.h5" \
  checkpoint.dir="$tmp/bad2"
"$bin" tokenizer train --input "$tmp/sn/heldout.csv" --vocab-size 600 --out "$tmp/tok2.model" >/dev/null 2>&1
"$bin" corpus build --input "$tmp/sn/heldout.csv" --tokenizer "$tmp/tok2.model" --out "$tmp/other.h5" >/dev/null
expect_error "eval.corpus from another tokenizer" "was built with tokenizer" \
  "$bin" train "$recipe" "${common[@]}" train.micro_batch_size=4 eval.corpus="$tmp/other.h5" \
  checkpoint.dir="$tmp/bad3"
check "nothing written for refused runs" "[[ ! -e $tmp/bad2/metrics.jsonl && ! -e $tmp/bad3/metrics.jsonl ]]"
exit $fail
