"""`asclepius synthesize notes|questions|answers` against an independent rendering of upstream's
data pipeline (preprocessing/pmc_preprocessing.py, bootstraping.py, postproc_questions.py,
make_instruction_dataset.py): its prompts transcribed here and filled with Python's str.format.

With a small random model (its replies are noise; the structure is what is checked):
  - the built-in prompt and task files equal upstream's text byte for byte;
  - notes: every prompt equals upstream's note prompt filled with the case report; an empty and a
    non-UTF-8 case report are listed by record and skipped, a huge one is cut to fit the context
    (marked, warned), the output keeps input order and fields, a model that does not stop is
    bounded and its rows rejected with the reason;
  - questions: every prompt equals upstream's, its examples are 3 distinct fixed samples of the
    row's task then min(2, pool) questions from the pool of that task's questions of earlier
    waves; the pool grows; the tasks spread over all 8; a given task is kept, an unknown one
    listed; identical bytes at 1, 2 and 3 ranks (mpirun); killed (kill -9) and run again, the
    output equals the uninterrupted one;
  - answers: every prompt equals upstream's answer prompt; upstream's filter rejects a
    self-referencing row (kept with --no-filters); the output is in the released layout and
    `corpus build --stage instruct` takes it;
  - a prompt file missing a placeholder is refused at start, naming the file and placeholder.
Usage: check_synthesize.py ASCLEPIUS_BIN SOURCE_DIR WORKDIR
"""
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

bin_, src, work = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_mpi_yield_when_idle="1")
fails = 0

# Upstream's prompts, transcribed from preprocessing/ (Python literals, filled with .format).
NOTES = """You are an intelligent clinical model.

[The start of case report]
{pmc}
[The end of case report]

Based on the patient's case report provided, please generate a synthetic discharge summary in the style of an Electronic Health Record (EHR).

Please follow these requirements:

1. Generate only the discharge summary. Do not generate any other phrases such as notification.
2. If there are any standard clinical terms used in the case report, they should be replaced with their commonly used non-standardized equivalents in the discharge summary. For example, "hypercholesterolemia" can be rewritten as "high cholesterol".
3. The discharge summary include abbreviations that are not defined in the context.
4. The discharge summary may contain minor grammatical errors.
5. Ensure that the discharge summary does not contain any clinical information or details (such as medication names, dosages, treatment plans, diagnoses, procedures, test results, etc.) that are not explicitly mentioned or defined within the given case report.
6. For patients who have not yet been discharged, create a hospital course summary rather than discharge summary.
7. While preserving the structure of the EHR and maintaining medical consistency, generate a detailed and comprehensive discharge summary.
8. The discharge summary is a comprehensive document that can be organized using several distinct headings."""

QUESTIONS = """You are a healthcare professional who often uses an advanced clinical language model that can analyze clinical notes.
You can ask a question and use the output from this model to aid in your decision-making process.

Let's suppose you want to ask a question about the task of "{task}" related to the given discharge summary.
How would you frame your question?

[Discharge Summary Begin]
{note}
[Discharge Summary End]

We also offer five example questions related to the task for your reference.
Although you can refer to these samples, try to create a distinct question.
Try not to repeat the verb or structure of sentences used in examples to maximize diversity.
The crucial aspect of your question is that it should be answerable using only the information available in the discharge summary.
Also, try to keep your question as brief as possible.

[Example Questions Begin]
{samples}
[Example Questions End]

Please output solely a question."""

ANSWERS = """You are an intelligent clinical language model.

[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End]

Above, we provide you with a part of the discharge summary and the instruction that the healthcare professional gave about it.
Generate a response to the healthcare professional's instruction using the given discharge summary.

Here are requirements:
- Your response must be accurate and concise to the instruction.
- If the instruction is not fully answerable within the given discharge summary, explain the reason why it is unanswerable using the given information. 
- Do not say that you cannot respond as an AI model.
- Do not ask back nor rephrase the instruction.

Response:"""

TASKS = {
    "Named Entity Recognition": [
        "Can you identify and categorize all the medical conditions?",
        "Could you extract all medications prescribed and their corresponding dosages?",
        "What were the diagnostic tests and their results?",
        "Identify all the medical procedures.",
        "Can you recognize and list any life style factors such as smoking, alcohol consumption, or exercise habits?"],
    "Abbreviation Expansion": [
        "What is the expanded form of the abbreviation 'COPD'?",
        "Could you decode all the abbreviations?",
        "'HTN' has been mentioned frequently in this report. Could you clarify what it means?",
        "In this medical report, what would 'CAD' typically stand for?",
        "I see 'DM' used here in relation to a patient's condition, could you provide the full term?"],
    "Relation Extraction": [
        "Identify the connection between the medication 'Metformin' and the patient's diagnosed condition 'Type 2 diabetes'.",
        "Establish the relation between the prescribed dosage of 'Lisinopril' and the patient's 'hypertension' management.",
        "Can you find the link between the use of 'antibiotics' and the patient's 'post-operative infection'?",
        "Determine the association between the patient's lifestyle modifications, specifically 'diet and exercise', and the improvement in 'cholesterol levels'.",
        "Decipher the relationship between the 'radiation therapy' administered and the progress of the patient's 'breast cancer'."],
    "Temporal Information Extraction": [
        "Can you extract the duration of the patient's treatment?",
        "Identify the duration of the hospital stay mentioned in the discharge summary.",
        "Retrieve the timestamps of any surgical procedures.",
        "Extract the date and time of the last medication administration.",
        "Identify any temporal references to follow-up appointments or scheduled tests in the summary."],
    "Coreference Resolution": [
        "Which medication does 'it' refer to in the line mentioning 'it should be taken twice daily' in the medication instructions section?",
        "Please clarify what 'this procedure' refers to in the surgeon's notes section of the discharge summary.",
        "Identify the coreferents for the pronouns used in the second paragraph.",
        "In the patient education section, when 'these exercises' are mentioned, what specific exercises are being referred to?",
        "Who does 'he' refer to in the sentence 'He is expected to recover fully' in the prognosis section?"],
    "Paraphrasing": [
        "The discharge summary states that the patient suffered from 'an anomalous blockage in the coronary artery.' Could you paraphrase this medical term into simpler language that the patient might understand?",
        "How would you rephrase the line in the discharge summary, 'Patient exhibits signs of acute rhinosinusitis,' to make it easier for a non-medical professional to grasp?",
        "In this discharge summary, it mentions 'diabetes mellitus type 2 with hyperglycemia.' Can you provide a paraphrase that might be more straightforward for the patient and their family?",
        "The term 'post-operative seroma' appears in the patient's discharge summary. Can you paraphrase this to a less clinical terminology?",
        "Could you translate the sentence, 'The patient's condition was complicated by acute renal failure due to ischemia,' into more common terms to aid in communicating the situation to the patient?"],
    "Summarization": [
        "Can you provide a succinct summary of the key clinical findings and treatment recommendations outlined in this discharge summary?",
        "Can you identify and condense any lifestyle and medication modifications recommended in the patient's discharge summary?",
        "Given the patient's discharge summary, can you extract the diagnosis and prognosis information and summarize it in layman's terms for the patient's understanding?",
        "Could you extract and summarize the patient's progress during hospitalization, as well as key notes regarding her discharge planning?",
        "What were the key findings from the lab tests, imaging, and other diagnostic procedures? Please summarize these in simple terms."],
    "Question Answering": [
        "Considering the 'uncontrolled diabetes' statement in the hospital release notes, what lifestyle changes and medication revisions can be recommended?",
        "Identify all the instances suggesting 'adverse reactions' from drugs mentioned in the discharge synopsis.",
        "In light of the 'congestive heart failure' diagnosis in the patient's discharge summary, what are the subsequent tests and procedures that need to be arranged?",
        "Locate all references to 'dietary restrictions' in the discharge document and provide an explanation for each constraint.",
        "Based on the 'chronic kidney disease' mention in the discharge documents, what routine follow-up strategy and patient awareness should be put into action?"],
}


def check(name, ok):
    global fails
    print(("ok   " if ok else "FAIL ") + name, flush=True)
    fails += 0 if ok else 1


def run(*args, ok=True, np=1):
    cmd = [bin_, *args]
    if np > 1:
        cmd = ["mpirun", "--oversubscribe", "-np", str(np), *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if ok and p.returncode != 0:
        sys.exit(f"{args}: rc {p.returncode}\n{p.stderr[-3000:]}")
    return p


def rows_of(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")] if os.path.exists(path) else []


# --- the built-in files are upstream's text ------------------------------------------------
sdir = os.path.join(src, "data/synthesis")
read = lambda n: open(os.path.join(sdir, n), encoding="utf-8", newline="").read()
check("notes-upstream.txt is upstream's note prompt byte for byte", read("notes-upstream.txt") == NOTES)
check("questions-upstream.txt is upstream's question prompt", read("questions-upstream.txt") == QUESTIONS)
check("answers-upstream.txt is upstream's answer prompt (trailing space kept)",
      read("answers-upstream.txt") == ANSWERS)
parsed, cur = {}, None
for line in read("tasks-upstream.txt").split("\n"):
    if line.startswith("# "):
        cur = line[2:]
        parsed[cur] = []
    elif line.strip():
        parsed[cur].append(line)
check("tasks-upstream.txt holds upstream's 8 tasks and their samples, in order",
      list(parsed.items()) == list(TASKS.items()))

# --- a small model and case reports ---------------------------------------------------------
run("synth-notes", "--count", "36", "--seed", "3", "--questions-per-note", "1", "--out", f"{work}/sn")
run("tokenizer", "train", "--input", f"{work}/sn/train.csv", "--vocab-size", "500", "--out",
    f"{work}/tok.model")
run("init", os.path.join(src, "recipes/demo/tiny.yaml"), "model.vocab_size=500",
    "model.max_position_embeddings=2048", "--out", f"{work}/m")
notes_src = [r["note"] for r in csv.DictReader(open(f"{work}/sn/train.csv", newline="", encoding="utf-8"))]
with open(f"{work}/cases.csv", "wb") as f:  # PMC-Patients' columns
    w = lambda *cells: f.write((",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\n").encode())
    w("patient_id", "patient", "title")
    for i in range(30):
        w(f"pmc-{i}", notes_src[i][:500] + " {note} {{pmc}}", f"case {i}")  # braces stay as written
        if i == 4:
            w("pmc-empty", "   ", "empty")
        if i == 9:
            f.write(b'"pmc-latin1","Patient with caf\xe9 au lait spots","bad"\n')
    w("pmc-huge", "History. " + "Long case report text. " * 600, "huge")
common = ["--model", f"{work}/m", "--tokenizer", f"{work}/tok.model", "--threads", "1"]

# --- notes ----------------------------------------------------------------------------------
p = run("synthesize", "notes", "--input", f"{work}/cases.csv", "--out", f"{work}/notes.jsonl",
        "--max-new-tokens", "24", "--batch-size", "4", "--keep-unfinished", "--with-prompts",
        "--seed", "1", *common)
notes = rows_of(f"{work}/notes.jsonl")
cases = {r["patient_id"]: r["patient"] for r in csv.DictReader(
    open(f"{work}/cases.csv", newline="", encoding="utf-8", errors="replace"))}
check("notes: one row per good case report, in input order",
      [n["patient_id"] for n in notes] == [f"pmc-{i}" for i in range(30)] + ["pmc-huge"])
check("notes: the empty and the non-UTF-8 case report listed by record, skipped",
      "2 input record(s) skipped" in p.stderr and "record 6 (line 87): empty note" in p.stderr
      and "record 12 (line 173): invalid UTF-8" in p.stderr)
uncut = [n for n in notes if "input_cut" not in n["synthesis"]["note"]]
check("notes: every prompt equals upstream's note prompt filled with the case report",
      len(uncut) == 30 and all(n["synthesis"]["note"]["prompt_text"] == NOTES.format(pmc=n["case_report"])
                                and n["case_report"] == cases[n["patient_id"]] for n in uncut))
huge = notes[-1]
cut = huge["synthesis"]["note"].get("input_cut", {})
kept = huge["case_report"].encode()[:cut.get("bytes_kept", 0)].decode()
check("notes: a huge case report is cut at its end to fit the context, marked and warned",
      cut.get("field") == "pmc" and 0 < cut["bytes_kept"] < cut["bytes"] == len(huge["case_report"])
      and huge["synthesis"]["note"]["prompt_text"] == NOTES.format(pmc=kept)
      and "warning:" in p.stderr and "pmc cut to" in p.stderr)
meta = notes[0]["synthesis"]["note"]
check("notes: rows record prompt name and hash, model and hash, finish reason; the case report "
      "as case_report (not 'patient', the released data's name for the note)",
      meta["prompt"] == "upstream" and len(meta["prompt_xxh64"]) == 16 and len(meta["model_xxh64"]) == 16
      and meta["model"].endswith("/m") and meta["finish_reason"] in ("stop", "length")
      and "patient" not in notes[0])
p = run("synthesize", "notes", "--input", f"{work}/cases.csv", "--out", f"{work}/notes8.jsonl",
        "--max-new-tokens", "8", "--batch-size", "8", "--seed", "1", *common)
kept8, rej8 = rows_of(f"{work}/notes8.jsonl"), rows_of(f"{work}/notes8.jsonl.rejected.jsonl")
check("notes: replies that hit --max-new-tokens are bounded and rejected with the reason",
      len(kept8) + len(rej8) == 31 and len(rej8) > 0
      and all(r["reject_reason"] in ("length", "empty") for r in rej8)
      and all(r["synthesis"]["note"]["finish_reason"] == "stop" for r in kept8)
      and f"{sum(r['reject_reason'] == 'length' for r in rej8)} length" in p.stderr)

p = run("synthesize", "notes", "--input", f"{work}/cases.csv", "--out", f"{work}/notes_chat.jsonl",
        "--max-new-tokens", "24", "--batch-size", "4", "--keep-unfinished", "--seed", "1",
        "--chat-template", "llama3", *common)
chat = rows_of(f"{work}/notes_chat.jsonl")
check("notes: --chat-template wraps the prompt (recorded with its hash; other replies)",
      chat[0]["synthesis"]["note"].get("chat_template") == "llama3"
      and len(chat[0]["synthesis"]["note"].get("chat_template_xxh64", "")) == 16
      and [c["note"] for c in chat] != [n["note"] for n in notes])

# --- questions ------------------------------------------------------------------------------
qargs = ["synthesize", "questions", "--input", f"{work}/notes.jsonl", "--max-new-tokens", "16",
         "--batch-size", "4", "--wave-size", "6", "--keep-unfinished", "--with-prompts",
         "--seed", "9", *common]
run(*qargs, "--out", f"{work}/q1.jsonl")
q1 = rows_of(f"{work}/q1.jsonl")
q1_rej = rows_of(f"{work}/q1.jsonl.rejected.jsonl")
order = [n["patient_id"] for n in notes]
index = {pid: i for i, pid in enumerate(order)}
check("questions: every note answered or rejected once, in input order",
      sorted(index[q["patient_id"]] for q in q1 + q1_rej) == list(range(len(notes)))
      and [index[q["patient_id"]] for q in q1] == sorted(index[q["patient_id"]] for q in q1))
good_prompts = good_examples = True
pools_used = []
for q in q1:
    i, m = index[q["patient_id"]], q["synthesis"]["question"]
    ex, task = m["examples"], q["task"]
    wave_start = i - i % 6
    pool = [r["question"] for r in q1 if index[r["patient_id"]] < wave_start and r["task"] == task]
    n_pool = min(2, len(pool))
    good_examples &= (task in TASKS and len(ex) == 3 + n_pool and len(set(ex[:3])) == 3
                      and all(e in TASKS[task] for e in ex[:3])
                      and len(set(ex[3:])) == n_pool and all(e in pool for e in ex[3:])
                      and m["pool_examples"] == n_pool)
    good_prompts &= m["prompt_text"] == QUESTIONS.format(task=task, note=q["note"],
                                                         samples="\n".join(ex))
    pools_used.append(n_pool)
check("questions: every prompt equals upstream's question prompt", good_prompts)
check("questions: 3 distinct fixed samples of the task, then min(2, pool) from earlier waves' "
      "questions of that task", good_examples)
check("questions: the pool grows (first wave none, later rows draw 2)",
      pools_used[0] == 0 and pools_used.count(2) >= 5)
tasks_seen = [q["task"] for q in q1 + q1_rej]
check("questions: tasks drawn over all 8", len(set(tasks_seen)) == 8)
for np in (2, 3):
    run(*qargs, "--out", f"{work}/q{np}.jsonl", np=np)
    check(f"questions at {np} ranks: the same bytes as one rank",
          open(f"{work}/q{np}.jsonl", "rb").read() == open(f"{work}/q1.jsonl", "rb").read())

# Killed at a random moment (some waves written), then run again: the same output.
rng = random.Random(11)
for attempt, np in enumerate((2, 1)):
    out = f"{work}/qk{attempt}.jsonl"
    cmd = [bin_, *qargs, "--out", out]
    if np > 1:
        cmd = ["mpirun", "--oversubscribe", "-np", str(np), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    want = rng.randint(2, 6)
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        parts = out + ".parts"
        n = len([f for f in os.listdir(parts) if f.startswith("wave-")]) if os.path.isdir(parts) else 0
        if n >= want:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len([f for f in os.listdir(out + ".parts") if f.startswith("wave-")]) if os.path.isdir(out + ".parts") else -1
    run(*qargs, "--out", out, np=3 - np)
    check(f"questions killed (kill -9, {np} rank(s), {written} batches written) and run again at "
          f"{3 - np}: the same bytes", written >= 0 and
          open(out, "rb").read() == open(f"{work}/q1.jsonl", "rb").read())

# A rank that stops (SIGSTOP) mid-job: the other stops after --timeout-s (longer than the 5 s
# heartbeat period) at the wave's barrier
# (a waiting rank's heartbeat pauses, so waiting ranks cannot keep each other's deadline alive).
out = f"{work}/qstall.jsonl"
proc = subprocess.Popen(["mpirun", "--oversubscribe", "-np", "2", bin_, *qargs, "--out", out,
                         "--timeout-s", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        env=env, start_new_session=True, text=True)
stopped, t0 = None, time.time()
while time.time() - t0 < 60 and proc.poll() is None and stopped is None:
    parts = out + ".parts"
    if os.path.isdir(parts) and any(f.startswith("wave-") for f in os.listdir(parts)):
        ranks = [int(x) for x in subprocess.run(["pgrep", "-f", "qstall.jsonl"], capture_output=True,
                                                text=True).stdout.split()]
        ranks = [r for r in ranks if open(f"/proc/{r}/comm").read().strip() == "asclepius"]
        if len(ranks) == 2:
            stopped = max(ranks)
            os.kill(stopped, signal.SIGSTOP)
    time.sleep(0.02)
try:
    _, err = proc.communicate(timeout=90)
    ended = True
except subprocess.TimeoutExpired:
    ended, err = False, ""
os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
if stopped:
    try:
        os.kill(stopped, signal.SIGKILL)
    except ProcessLookupError:
        pass
check("questions: a stopped rank makes the other stop at the wave's barrier after --timeout-s "
      "(no hang)", stopped is not None and ended and proc.returncode != 0)

# The merge's fields of a rejected file fed back in are not carried over.
run("synthesize", "questions", "--input", f"{work}/notes8.jsonl.rejected.jsonl", "--out",
    f"{work}/qre.jsonl", "--max-new-tokens", "8", "--keep-unfinished", "--seed", "3", *common)
p = run("synthesize", "questions", "--input", f"{work}/notes8.jsonl.rejected.jsonl", "--out",
        f"{work}/notes8.jsonl", *common, ok=False)
check("an --out whose rejected file would be the input is refused (the input is never removed)",
      p.returncode != 0 and os.path.exists(f"{work}/notes8.jsonl.rejected.jsonl"))
check("a rejected file fed back in: its reject_reason is not carried into kept rows",
      rows_of(f"{work}/qre.jsonl") and all("reject_reason" not in r and "_reject" not in r
                                           for r in rows_of(f"{work}/qre.jsonl")))

with open(f"{work}/tasks_in.jsonl", "w") as f:
    for i, n in enumerate(notes[:5]):
        t = ["Summarization", "Paraphrasing", "", "Cooking", "Question Answering"][i]
        f.write(json.dumps({"patient_id": n["patient_id"], "note": n["note"], "task": t}) + "\n")
p = run("synthesize", "questions", "--input", f"{work}/tasks_in.jsonl", "--out", f"{work}/qt.jsonl",
        "--max-new-tokens", "8", "--keep-unfinished", "--seed", "2", *common)
qt = {q["patient_id"]: q["task"] for q in rows_of(f"{work}/qt.jsonl") + rows_of(f"{work}/qt.jsonl.rejected.jsonl")}
check("questions: a given task is kept, an unknown one is listed by record and skipped",
      qt.get(notes[0]["patient_id"]) == "Summarization" and qt.get(notes[1]["patient_id"]) == "Paraphrasing"
      and notes[3]["patient_id"] not in qt and len(qt) == 4 and "task 'Cooking'" in p.stderr
      and "record 4" in p.stderr)

bad_prompt = f"{work}/q_prompt.txt"
open(bad_prompt, "w").write("Ask about {task} in {note}.")
p = run("synthesize", "questions", "--input", f"{work}/notes.jsonl", "--out", f"{work}/qb.jsonl",
        "--prompt", bad_prompt, *common, ok=False)
check("a prompt file missing a placeholder is refused at start, naming file and placeholder",
      p.returncode != 0 and bad_prompt in p.stderr and "{samples}" in p.stderr
      and not os.path.exists(f"{work}/qb.jsonl.parts"))

# --- answers --------------------------------------------------------------------------------
with open(f"{work}/a_in.jsonl", "w") as f:
    for q in q1[:10]:
        f.write(json.dumps(q, ensure_ascii=False) + "\n")
    f.write(json.dumps({"patient_id": "selfref", "note": "Seen by a clinical language model.",
                        "question": "What was seen?", "task": "Summarization"}) + "\n")
    f.write(json.dumps({"patient_id": "noq", "note": "A note.", "question": " "}) + "\n")
    f.write(json.dumps({"patient_id": "hugeq", "note": "A note.",
                        "question": "Why is this so long? " * 800}) + "\n")
aargs = ["synthesize", "answers", "--input", f"{work}/a_in.jsonl", "--max-new-tokens", "16",
         "--batch-size", "4", "--keep-unfinished", "--with-prompts", "--seed", "4", *common]
p = run(*aargs, "--out", f"{work}/a.jsonl")
answers, a_rej = rows_of(f"{work}/a.jsonl"), rows_of(f"{work}/a.jsonl.rejected.jsonl")
check("answers: every prompt equals upstream's answer prompt",
      all(a["synthesis"]["answer"]["prompt_text"] == ANSWERS.format(note=a["note"], question=a["question"])
          for a in answers + a_rej if a.get("reject_reason") != "prompt_too_long")
      and len(answers) >= 5)
check("answers: a question too long for the context (never cut) is a rejected row, not a crash",
      any(r["patient_id"] == "hugeq" and r["reject_reason"] == "prompt_too_long"
          and "more than the" in r["synthesis"]["answer"]["error"] for r in a_rej)
      and "rejected: " in p.stderr)
check("answers: upstream's filter rejects the self-referencing row; the empty question is listed",
      any(r["patient_id"] == "selfref" and r["reject_reason"] == "self_reference" for r in a_rej)
      and "an empty question" in p.stderr and "self_reference" in p.stderr)
run(*aargs, "--out", f"{work}/a_nf.jsonl", "--no-filters")
check("answers: --no-filters keeps it",
      any(r["patient_id"] == "selfref" for r in rows_of(f"{work}/a_nf.jsonl")))
a0 = answers[0]
check("answers: released layout (patient_id, note, question, answer, task) with each stage's "
      "record under 'synthesis' (no other field name contains 'answer')",
      all(k in a0 for k in ("patient_id", "note", "question", "answer", "task"))
      and set(a0["synthesis"]) == {"note", "question", "answer"}
      and [k for k in a0 if "answer" in k] == ["answer"] and a0["case_report"] == cases[a0["patient_id"]])
with open(f"{work}/deid.jsonl", "w") as f:
    f.write(json.dumps({"patient_id": "d1", "note": "Seen by Dr. [**Last Name (NamePattern1) 12**] "
                        "at [**Hospital1 18**].", "question": "Who saw the patient?"}) + "\n")
open(f"{work}/deid_a.jsonl.rejected.jsonl", "w").write('{"stale": true}\n')
run("synthesize", "answers", "--input", f"{work}/deid.jsonl", "--out", f"{work}/deid_a.jsonl",
    "--max-new-tokens", "4", "--keep-unfinished", "--with-prompts", "--convert-deid", *common)
d = (rows_of(f"{work}/deid_a.jsonl") + rows_of(f"{work}/deid_a.jsonl.rejected.jsonl"))[0]
check("a run with no rejected rows removes an earlier run's <out>.rejected.jsonl",
      len(rows_of(f"{work}/deid_a.jsonl")) == 1
      and not os.path.exists(f"{work}/deid_a.jsonl.rejected.jsonl"))
check("answers --convert-deid: MIMIC placeholders converted before prompting (Asclepius-R)",
      "[**" not in d["synthesis"]["answer"]["prompt_text"] and "[Name]" in d["note"]
      and d["synthesis"]["answer"]["prompt_text"] == ANSWERS.format(note=d["note"], question=d["question"]))
p = run("corpus", "build", "--stage", "instruct", "--input", f"{work}/a.jsonl", "--tokenizer",
        f"{work}/tok.model", "--out", f"{work}/c.h5", "--max-len", "1024", ok=False)
check("answers: corpus build --stage instruct takes the output", p.returncode == 0)

print(f"{fails} failed" if fails else "all passed")
sys.exit(1 if fails else 0)
