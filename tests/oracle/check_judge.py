"""`asclepius judge export` / `import` against an independent rendering of upstream's GPT-4
evaluation (eval/gpt4_evaluate.py: generate_inst_prompt, the agents' order, the score mapping).

Two answer files (two models, the dataset's reference answer in both) → requests. Checked:
  - each request's content equals upstream's prompt built here from the recorded agent order
    (prompt.format(note, question, answers, num_samples); agent blocks A, B, C, ...), text in
    the note that looks like a placeholder included; body: judge model, temperature 0, max_tokens;
  - the agents are a permutation of the candidates, the order varies by line and is fixed by
    --seed (same seed, same bytes; another seed, another order);
  - a simulated judge scoring reference 4, m1 3, m2 1 (replies as OpenAI batch output lines and
    as {custom_id, content}, one quoted, one chatty, one failed request) → import gives exactly
    those means, the distributions per task, and lists the two unusable replies;
  - responses with an unknown, a duplicated or a missing id → one error line naming them.
Usage: check_judge.py ASCLEPIUS_BIN SOURCE_DIR WORKDIR
"""
import json
import os
import random
import shutil
import subprocess
import sys

bin_, src, work = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
template = open(os.path.join(src, "data/judge/asclepius-gpt4.txt"), encoding="utf-8").read()
fails = 0


def check(name, ok):
    global fails
    print(("ok   " if ok else "FAIL ") + name)
    fails += 0 if ok else 1


def run(*args, ok=True):
    p = subprocess.run([bin_, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        sys.exit(f"{args}: {p.stderr}")
    return p


rng = random.Random(5)
tasks = ["Question Answering", "Summarization", "Paraphrasing"]
rows = []
for i in range(12):
    rows.append({"note": f"Note {i}: pt with CP. Café ✓ {{answers}} {{num_samples}}\nline two",
                 "question": f"What happened in note {i}?", "answer": f"reference {i}",
                 "task": tasks[i % 3]})
for name in ("m1", "m2"):
    with open(f"{work}/{name}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({**r, f"{name}_answer": f"{name} says {rng.random():.3f}\nmore"},
                               ensure_ascii=False) + "\n")
ans = {n: [json.loads(l) for l in open(f"{work}/{n}.jsonl")] for n in ("m1", "m2")}

run("judge", "export", "--answers", f"{work}/m1.jsonl", f"{work}/m2.jsonl", "--out",
    f"{work}/req.jsonl", "--seed", "3", "--judge-model", "gpt-4-0314")
reqs = [json.loads(l) for l in open(f"{work}/req.jsonl")]
agents = [json.loads(l) for l in open(f"{work}/req.jsonl.agents.jsonl")]
check("one request per line", len(reqs) == len(rows) == len(agents))
cands = ["answer", "m1_answer", "m2_answer"]
good_prompt = True
for i, (q, a) in enumerate(zip(reqs, agents)):
    good_prompt &= q["custom_id"] == a["custom_id"] and sorted(a["agents"]) == sorted(cands)
    values = {**ans["m1"][i], **ans["m2"][i]}
    samples = [values[c] for c in a["agents"]]
    answers = ""  # upstream's generate_inst_prompt
    for k, s in enumerate(samples):
        n = chr(65 + k)
        answers += f"[Agent {n}'s Answer Begin]\n{s}\n[Agent {n}'s Answer End]\n\n"
    want = template.format(note=rows[i]["note"], question=rows[i]["question"], answers=answers,
                           num_samples=len(samples))
    body = q["body"]
    good_prompt &= (body["messages"] == [{"role": "user", "content": want}] and
                    body["temperature"] == 0 and body["model"] == "gpt-4-0314" and
                    body["max_tokens"] == 2048 and q["url"] == "/v1/chat/completions")
    good_prompt &= a["task"] == rows[i]["task"] and a["line"] == i + 1
check("request contents equal upstream's prompt for the recorded order", good_prompt)
check("the order varies by line", len({tuple(a["agents"]) for a in agents}) > 1)
run("judge", "export", "--answers", f"{work}/m1.jsonl", f"{work}/m2.jsonl", "--out",
    f"{work}/req2.jsonl", "--seed", "3")
check("same seed, same requests", open(f"{work}/req2.jsonl").read() == open(f"{work}/req.jsonl").read())
run("judge", "export", "--answers", f"{work}/m1.jsonl", f"{work}/m2.jsonl", "--out",
    f"{work}/req3.jsonl", "--seed", "4")
other = [json.loads(l)["agents"] for l in open(f"{work}/req3.jsonl.agents.jsonl")]
check("another seed, another order", other != [a["agents"] for a in agents])

# A simulated judge: reference 4, m1 3, m2 1, written in each request's agent order.
truth = {"answer": 4, "m1_answer": 3, "m2_answer": 1}
out = []
for i, a in enumerate(agents):
    scores = " ".join(str(truth[c]) for c in a["agents"])
    cid = a["custom_id"]
    if i == 1:
        out.append({"custom_id": cid, "content": "I would rate them highly."})
    elif i == 2:
        out.append({"custom_id": cid, "content": f'"{scores}"\nbecause ...'})
    elif i == 3:
        out.append({"custom_id": cid, "response": None, "error": {"code": "rate_limit"}})
    elif i % 2:
        out.append({"custom_id": cid, "content": scores})
    else:
        out.append({"id": f"batch_req_{i}", "custom_id": cid, "error": None, "response": {
            "status_code": 200, "body": {"choices": [{"index": 0, "message": {
                "role": "assistant", "content": scores}}]}}})
with open(f"{work}/resp.jsonl", "w") as f:
    for o in out:
        f.write(json.dumps(o) + "\n")
p = run("judge", "import", "--requests", f"{work}/req.jsonl", "--responses", f"{work}/resp.jsonl",
        "--json", f"{work}/scores.json")
s = json.load(open(f"{work}/scores.json"))
m = s["models"]
n = len(rows) - 2
check("means per model equal the simulated judge's",
      m["reference"]["mean"] == 4 and m["m1"]["mean"] == 3 and m["m2"]["mean"] == 1 and
      all(m[k]["count"] == n for k in m) and s["scored"] == n)
check("distribution per model", m["m1"]["distribution"] == {"1": 0, "2": 0, "3": n, "4": 0})
per_task = {t: sum(1 for i, r in enumerate(rows) if r["task"] == t and i not in (1, 3)) for t in tasks}
check("per task counts", all(s["tasks"][t]["m2"]["count"] == per_task[t] for t in tasks))
check("unusable replies are listed, not guessed",
      sorted(u["custom_id"] for u in s["unparsed"]) == ["line-2", "line-4"])
check("the table names every model", all(k in p.stdout for k in ("reference", "m1", "m2")))

lines = open(f"{work}/resp.jsonl").read().splitlines()
for name, body, pattern in [
        ("unknown id", lines + ['{"custom_id": "line-99", "content": "1 1 1"}'], "line-99"),
        ("duplicate id", lines + [lines[0]], "1 duplicate(s) [line-1]"),
        ("missing id", lines[1:], "1 request(s) without a response [line-1]")]:
    with open(f"{work}/bad.jsonl", "w") as f:
        f.write("\n".join(body) + "\n")
    p = run("judge", "import", "--requests", f"{work}/req.jsonl", "--responses",
            f"{work}/bad.jsonl", ok=False)
    check(f"{name}: one error line naming it",
          p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and pattern in p.stderr)
with open(f"{work}/short.jsonl", "w") as f:
    f.write(open(f"{work}/m2.jsonl").read().splitlines()[0] + "\n")
p = run("judge", "export", "--answers", f"{work}/m1.jsonl", f"{work}/short.jsonl", "--out",
        f"{work}/x.jsonl", ok=False)
check("export: answer files of other lengths are refused naming both",
      p.returncode == 1 and "short.jsonl has 1 lines but" in p.stderr)
print(f"judge: {fails} failed")
sys.exit(1 if fails else 0)
