"""`asclepius judge run`: the local judge's replies to `judge export`'s requests, against
transformers' greedy generate on the same model and prompt.

A small LLaMA made by transformers (peaked weights: greedy is stable, EOS wins now and then) is
the judge. Checked:
  - one OpenAI batch output line per request, in request order, custom ids equal;
  - each prompt is the request's content unchanged: prompt_tokens equals the slow
    LlamaTokenizer's count, and the reply equals greedy decoding by the transformers model's own
    forward, decoded by the slow tokenizer (finish_reason 'stop' exactly when it ended at EOS);
  - a prompt longer than the context and a request that is not one user message get error
    replies (nothing is cut, nothing is skipped silently); an unreadable line is listed and the
    run exits 1 after writing the rest;
  - the same bytes at 2 ranks (mpirun);
  - judge import reads the replies: every request answered once, the unusable ones listed.
Usage: check_judge_run.py ASCLEPIUS_BIN WORKDIR
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import torch
from transformers import LlamaTokenizer

from peaked_llama import make_peaked_llama

bin_, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_mpi_yield_when_idle="1")
fails = 0


def check(name, ok, detail=""):
    global fails
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)
    fails += 0 if ok else 1


def run(*args, np=1, ok=True):
    cmd = [bin_, *args]
    if np > 1:
        cmd = ["mpirun", "--oversubscribe", "-np", str(np), *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if ok and p.returncode != 0:
        sys.exit(f"{args}: rc {p.returncode}\n{p.stderr[-3000:]}")
    return p


run("synth-notes", "--count", "10", "--seed", "4", "--questions-per-note", "1", "--out", f"{work}/sn")
run("tokenizer", "train", "--input", f"{work}/sn/train.csv", "--vocab-size", "800", "--out",
    f"{work}/tok.model")
tok = LlamaTokenizer(vocab_file=f"{work}/tok.model")
model = make_peaked_llama(11, 1536, f"{work}/hf")

rows = list(csv.DictReader(open(f"{work}/sn/train.csv", newline="", encoding="utf-8")))[:8]
with open(f"{work}/m1.jsonl", "w") as f:
    for i, r in enumerate(rows):
        f.write(json.dumps({"note": r["note"][:400], "question": r["question"], "answer": r["answer"],
                            "task": r["task"], "m1_answer": f"m1 answer {i}"}) + "\n")
run("judge", "export", "--answers", f"{work}/m1.jsonl", "--out", f"{work}/req.jsonl", "--seed", "2")
reqs = [json.loads(l) for l in open(f"{work}/req.jsonl")]
# A request too long for the judge's context, one that is not a single user message.
long_req = json.loads(json.dumps(reqs[0]))
long_req["custom_id"] = "too-long"
long_req["body"]["messages"][0]["content"] *= 12
two = json.loads(json.dumps(reqs[1]))
two["custom_id"] = "two-messages"
two["body"]["messages"].insert(0, {"role": "system", "content": "Be fair."})
reqs += [long_req, two]
with open(f"{work}/req2.jsonl", "w") as f:
    for r in reqs:
        f.write(json.dumps(r) + "\n")
MAX_NEW = 20
jargs = ["judge", "run", "--requests", f"{work}/req2.jsonl", "--judge-model", f"{work}/hf",
         "--tokenizer", f"{work}/tok.model", "--max-new-tokens", str(MAX_NEW), "--batch-size", "3",
         "--threads", "1"]
p = run(*jargs, "--out", f"{work}/rep1.jsonl")
reps = [json.loads(l) for l in open(f"{work}/rep1.jsonl")]
check("one reply per request, in request order",
      [r["custom_id"] for r in reps] == [q["custom_id"] for q in reqs])
errs = {r["custom_id"]: r["error"]["code"] for r in reps if r["error"]}
check("too long and malformed requests get error replies",
      errs == {"too-long": "context_length_exceeded", "two-messages": "invalid_request"}
      and "2 error replies" in p.stderr, str(errs))

same_tokens = same_text = True
detail = ""
for q, r in zip(reqs[:-2], reps[:-2]):
    content = q["body"]["messages"][0]["content"]
    ids = tok.encode(content)  # BOS + pieces (slow tokenizer)
    body = r["response"]["body"]
    same_tokens &= body["usage"]["prompt_tokens"] == len(ids)
    # Greedy by definition: the argmax of the model's own forward over the whole sequence at
    # each step. (transformers' generate() disagreed with that forward on these ~1,200-token
    # prompts by up to 3.3 in a logit, with and without its cache, so it is not the reference.)
    seq, out = list(ids), []
    with torch.no_grad():
        for _ in range(MAX_NEW):
            t = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            out.append(t)
            seq.append(t)
            if t == 2:
                break
    stop = 2 in out
    gen = out[:out.index(2)] if stop else out
    want = tok.decode(gen)
    choice = body["choices"][0]
    ok = choice["message"]["content"] == want and (choice["finish_reason"] == "stop") == stop \
        and body["usage"]["completion_tokens"] == len(gen) + (1 if stop else 0)
    if not ok and not detail:
        detail = f"{q['custom_id']}: ours {choice['message']['content']!r} vs {want!r}"
    same_text &= ok
check("prompt_tokens equal the slow tokenizer's count of the request content", same_tokens)
check("replies equal greedy decoding by the transformers model (text, stop reason, tokens)", same_text,
      detail)
check("some replies end at EOS, some at the limit",
      {r["response"]["body"]["choices"][0]["finish_reason"] for r in reps[:-2]} == {"stop", "length"})

run(*jargs, "--out", f"{work}/rep2.jsonl", np=2)
check("2 ranks: the same bytes",
      open(f"{work}/rep2.jsonl", "rb").read() == open(f"{work}/rep1.jsonl", "rb").read())

p = run("judge", "import", "--requests", f"{work}/req.jsonl", "--responses", f"{work}/rep1.jsonl",
        ok=False)
# The two extra requests are not export's: import names them as unknown.
check("import refuses replies to requests it did not export, naming them",
      p.returncode != 0 and "too-long" in p.stderr and "two-messages" in p.stderr)
with open(f"{work}/rep_export_only.jsonl", "w") as f:
    for r in reps[:-2]:
        f.write(json.dumps(r) + "\n")
p = run("judge", "import", "--requests", f"{work}/req.jsonl", "--responses",
        f"{work}/rep_export_only.jsonl")
check("import reads the local judge's replies (unusable ones listed, never guessed)",
      p.stdout.count("unparsed") + p.stdout.count("scored") >= 1 and "line-1" in p.stdout,
      p.stdout[-500:])

with open(f"{work}/req3.jsonl", "w") as f:
    f.write(json.dumps(reqs[0]) + "\n{broken\n")
p = run("judge", "run", "--requests", f"{work}/req3.jsonl", "--judge-model", f"{work}/hf",
        "--tokenizer", f"{work}/tok.model", "--max-new-tokens", "4", "--out", f"{work}/rep3.jsonl",
        ok=False)
check("an unreadable request line is listed; the rest answered; exit 1",
      p.returncode == 1 and "req3.jsonl:2: not JSON" in p.stderr
      and len(open(f"{work}/rep3.jsonl").readlines()) == 1)

print(f"{fails} failed" if fails else "all passed")
sys.exit(1 if fails else 0)
