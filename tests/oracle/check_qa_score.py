"""Independent check of `asclepius eval qa` on random clinical-ish answers.
EM / F1: the official SQuAD evaluation functions (normalize_answer, compute_exact, compute_f1 as
in the v2.0 script: v1.1's, plus F1 = [both empty] when either side has no tokens), written here
from their definition. ROUGE-L: Google's rouge_score, RougeScorer(['rougeL'], use_stemmer=False).
Checked within 1e-9: the overall and per-task means, and every row on its own (a second file in
which each row is its own task). Non-ASCII text whose case Python would change is checked in a
third file: ROUGE-L against rouge_score, EM/F1 against the same functions with the ASCII-only
lower-casing documented in data/qa_score.h. Then bad lines (exit 1, line numbers, JSON still
written) and the prediction-field rules.
Usage: check_qa_score.py ASCLEPIUS_BIN
"""
import collections
import json
import os
import random
import re
import string
import subprocess
import sys
import tempfile

from rouge_score import rouge_scorer

BIN = sys.argv[1]
TOL = 1e-9
WORDS = ("patient was admitted with chest pain dyspnea fever cough troponin elevated ecg showed "
         "st elevation aspirin 81 mg daily metoprolol discharged home follow up cardiology in 2 "
         "weeks hba1c 7.2 insulin glargine ct abdomen negative bp 140/90 hr 88 copd chf mi "
         "pneumonia").split()
ARTICLES = ["a", "an", "the", "A", "An", "The", "THE"]
PUNCT = list(".,;:!?()[]{}'\"-/%+*_#@&=<>|~`^$\\")
# Non-ASCII that Python's lower() leaves alone: lower-case letters, symbols, punctuation, spaces.
STABLE = ["é", "ü", "ñ", "ç", "µg", "°C", "±", "→", "–", "—", "“", "”", "‘", "’", "…", "≥", "≤",
          "×", "½", "²", "café", "naïve", "São", "痛み", "💊", "\u00a0", "\u2009", "\u3000", "\u0301"]
# Non-ASCII that Python's lower() changes (and the two that lower-case into [a-z]).
CASED = ["É", "Ä", "Ñ", "Σ", "ΟΔΥΝΗ", "БОЛЬ", "\u0130", "\u212a", "Ångström", "\u212aelvin"]
CASED += [c.lower() for c in CASED]  # so that Python's lower() makes matches ours does not
SEPS = [" ", " ", " ", "  ", ", ", "\n", "\t", "-", "/", "; "]
TASKS = ["Named Entity Recognition", "Abbreviation Expansion", "Relation Extraction",
         "Temporal Information Extraction", "Coreference Resolution", "Paraphrasing",
         "Summarization", "Question Answering", None]


# ---- references --------------------------------------------------------------------------------
def normalize_answer(s, lower=str.lower):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def ascii_lower(s):
    return s.translate({c: c + 32 for c in range(ord("A"), ord("Z") + 1)})


def ascii_upper(s):
    return s.translate({c: c - 32 for c in range(ord("a"), ord("z") + 1)})


def compute_exact(gold, pred, lower=str.lower):
    return int(normalize_answer(gold, lower) == normalize_answer(pred, lower))


def compute_f1(gold, pred, lower=str.lower):
    gold_toks = normalize_answer(gold, lower).split()
    pred_toks = normalize_answer(pred, lower).split()
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(gold, pred):
    return SCORER.score(gold, pred)["rougeL"].fmeasure


# ---- random rows -------------------------------------------------------------------------------
def token(rng, extra):
    r = rng.random()
    if r < 0.12:
        return rng.choice(ARTICLES)
    if r < 0.22:
        return rng.choice(extra)
    w = rng.choice(WORDS)
    if rng.random() < 0.2:
        w = w.upper() if rng.random() < 0.5 else w.capitalize()
    if rng.random() < 0.15:  # punctuation or a symbol glued to the word (or an article)
        w = w + rng.choice(PUNCT) if rng.random() < 0.5 else rng.choice(PUNCT + extra) + w
    return w


def text(rng, toks):
    out = ""
    for i, t in enumerate(toks):
        out += (rng.choice(SEPS) if i else "") + t
    return out


def row(rng, extra, upper):
    ref = [token(rng, extra) for _ in range(rng.randrange(0, 16))]
    r = rng.random()
    if r < 0.08:
        pred = []
    elif r < 0.2:
        pred = list(ref)
    elif r < 0.35:
        pred = [token(rng, extra) for _ in range(rng.randrange(0, 16))]
    else:  # a noisy copy: case changes, drops, insertions, swaps
        pred = [upper(t) if rng.random() < 0.1 else t for t in ref if rng.random() > 0.25]
        for _ in range(rng.randrange(0, 4)):
            pred.insert(rng.randrange(0, len(pred) + 1), token(rng, extra))
        if len(pred) > 2 and rng.random() < 0.3:
            i, j = rng.sample(range(len(pred)), 2)
            pred[i], pred[j] = pred[j], pred[i]
    return text(rng, ref), text(rng, pred), rng.choice(TASKS)


# ---- running the CLI ---------------------------------------------------------------------------
def write_jsonl(path, rows, model="asclepius", task_of=None):
    with open(path, "w", encoding="utf-8") as f:
        for i, (ref, pred, task) in enumerate(rows):
            obj = {"note": "Discharge summary %d." % i, "question": "What happened?",
                   "answer": ref, model + "_answer": pred}
            task = task_of(i) if task_of else task
            if task is not None:
                obj["task"] = task
            f.write(json.dumps(obj, ensure_ascii=(i % 3 == 0)) + "\n")


def run(answers, out_json, *extra):
    args = [BIN, "eval", "qa", "--answers", answers, "--json", out_json, *extra]
    p = subprocess.run(args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


FAILS = []


def expect(cond, what):
    if not cond:
        FAILS.append(what)


def compare_group(name, ours, rows, lower):
    em = [compute_exact(g, p, lower) for g, p, _ in rows]
    f1 = [compute_f1(g, p, lower) for g, p, _ in rows]
    rl = [rouge_l(g, p) for g, p, _ in rows]
    n = len(rows)
    expect(ours["n"] == n, "%s: n %s != %d" % (name, ours["n"], n))
    for key, ref in (("em", sum(em) / n), ("f1", sum(f1) / n), ("rouge_l", sum(rl) / n)):
        expect(abs(ours[key] - ref) <= TOL,
               "%s: %s %.17g != reference %.17g%s" % (name, key, ours[key], ref,
                                                     " (%r)" % (rows,) if n == 1 else ""))


def check_scores(tmp, tag, rows, lower):
    """Grouped by task, then every row as its own task."""
    for per_row in (False, True):
        path = os.path.join(tmp, "%s%s.jsonl" % (tag, "_rows" if per_row else ""))
        out = path + ".scores.json"
        write_jsonl(path, rows, task_of=(lambda i: "row%04d" % i) if per_row else None)
        rc, stdout, stderr = run(path, out)
        expect(rc == 0, "%s: exit %d: %s" % (path, rc, stderr))
        if rc != 0:
            continue
        got = json.load(open(out))
        expect(got["prediction_field"] == "asclepius_answer", "prediction field")
        expect(got["bad_lines"] == [], "%s: bad lines %s" % (path, got["bad_lines"]))
        compare_group(tag + " overall", got["overall"], rows, lower)
        groups = collections.defaultdict(list)
        for i, r in enumerate(rows):
            task = ("row%04d" % i) if per_row else (r[2] if r[2] is not None else "(none)")
            groups[task].append(r)
        expect(sorted(got["per_task"]) == sorted(groups), "%s: task names differ" % path)
        for task, members in groups.items():
            if task in got["per_task"]:
                compare_group("%s task %s" % (tag, task), got["per_task"][task], members, lower)
        if not per_row:
            expect("overall" in stdout and "ROUGE-L" in stdout, "table printed: " + stdout)


def check_bad_lines(tmp):
    path = os.path.join(tmp, "bad.jsonl")
    good = json.dumps({"answer": "chest pain", "m_answer": "The chest pain.", "task": "QA"})
    lines = [good, "", "{not json", "[1, 2]", json.dumps({"m_answer": "x"}),
             json.dumps({"answer": "x", "m_answer": None}), good]
    open(path, "w").write("\n".join(lines) + "\n")
    out = path + ".scores.json"
    rc, stdout, stderr = run(path, out)
    expect(rc == 1, "bad lines: exit %d, want 1" % rc)
    expect("line 3, 4, 5, 6" in stderr, "bad lines named on stderr: " + stderr)
    got = json.load(open(out))
    expect([b["line"] for b in got["bad_lines"]] == [3, 4, 5, 6], "bad_lines %s" % got["bad_lines"])
    expect(got["overall"]["n"] == 2 and got["overall"]["em"] == 1.0, "good lines scored")
    expect("overall" in stdout, "table printed before the error")


def check_fields(tmp):
    path = os.path.join(tmp, "two.jsonl")
    open(path, "w").write(json.dumps({"answer": "fever", "a_answer": "fever",
                                      "b_answer": "cough"}) + "\n")
    rc, _, stderr = run(path, path + ".json")
    expect(rc == 1 and "a_answer, b_answer" in stderr, "ambiguous field: %d %s" % (rc, stderr))
    rc, _, _ = run(path, path + ".json", "--model-name", "b")
    got = json.load(open(path + ".json"))
    expect(rc == 0 and got["prediction_field"] == "b_answer" and got["overall"]["em"] == 0.0,
           "--model-name b")
    rc, _, stderr = run(path, path + ".json", "--model-name", "c")
    expect(rc == 1 and "c_answer" in stderr, "absent --model-name field: %s" % stderr)


def main():
    for s in STABLE:
        assert s.lower() == ascii_lower(s), s
    rng = random.Random(20240611)
    plain = [row(rng, STABLE, ascii_upper) for _ in range(400)]
    cased = [row(rng, STABLE + CASED, str.upper) for _ in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        check_scores(tmp, "plain", plain, str.lower)
        check_scores(tmp, "cased", cased, ascii_lower)
        check_bad_lines(tmp)
        check_fields(tmp)
    # The cased file must actually exercise the caveat (else its check proves nothing).
    expect(any(compute_f1(g, p) != compute_f1(g, p, ascii_lower) for g, p, _ in cased),
           "no cased row where Python's lower() changes F1")
    for f in FAILS[:20]:
        print("FAIL:", f)
    if FAILS:
        print("%d failures" % len(FAILS))
        return 1
    print("eval qa matches SQuAD EM/F1 and rouge_score ROUGE-L on %d rows" % (len(plain) + len(cased)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
