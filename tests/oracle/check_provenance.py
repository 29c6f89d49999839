"""Independent check of `asclepius provenance` (docs/provenance.md).

Builds a pretrain and an instruct corpus from synthetic notes, trains a tiny pretraining run at 2
ranks (mpirun), stops it, resumes it at 1 rank, then a stage-two (instruct) run from one of its
middle checkpoints through model.init_from. The expected answers are recomputed here from the
definitions alone, reading the HDF5 corpora with h5py and the runs' recipe.yaml and
trainer_state.json: std::mt19937_64 and splitmix64 reimplemented, each epoch's Fisher-Yates
order, a step's global batch, pretraining windows of seq_len tokens spanning notes. Checked:
  - the corpora: note ids = the CSV's patient_id in the build's shuffled order, content hashes =
    XXH64 of the stripped note (XXH64 reimplemented, checked on the tokenizer file's checksum);
  - what the trainer actually read (test hook ASCLEPIUS_TRACE_SAMPLES, every rank, both world
    sizes) = the recomputed plan;
  - `provenance --note/--step/--checkpoint/--exclude --json` = the recomputation, across the
    resume and through the init_from chain;
  - `corpus build --exclude`; bad input: unknown note, step beyond the run, a directory that is
    not a checkpoint, a corpus without note ids.
Usage: check_provenance.py ASCLEPIUS_BIN SOURCE_DIR WORK_DIR
"""
import csv
import glob
import json
import os
import random
import shutil
import subprocess
import sys

import h5py
import numpy as np
import yaml

BIN, SRC, WORK = sys.argv[1:4]
M = (1 << 64) - 1
fails = 0


def check(name, ok, detail=""):
    global fails
    if not ok:
        fails += 1
        print(f"FAIL: {name} {detail}")
    else:
        print(f"ok: {name}")


# ---- the primitives, from their definitions ------------------------------------------------
class MT19937_64:
    def __init__(self, seed):
        self.mt = [seed & M] + [0] * 311
        for i in range(1, 312):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & M
        self.idx = 312

    def __call__(self):
        if self.idx >= 312:
            for i in range(312):
                x = (self.mt[i] & 0xFFFFFFFF80000000) | (self.mt[(i + 1) % 312] & 0x7FFFFFFF)
                xa = (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
                self.mt[i] = self.mt[(i + 156) % 312] ^ xa
            self.idx = 0
        y = self.mt[self.idx]
        self.idx += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        return (y ^ (y >> 43)) & M


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)


def epoch_order(n, seed, epoch):
    order = list(range(n))
    rng = MT19937_64(splitmix(seed) ^ splitmix(epoch + 17))
    for i in range(n - 1, 0, -1):
        j = rng() % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


P1, P2, P3, P4, P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                      9650029242287828579, 2870177450012600261)


def xxh64(b, seed=0):
    rotl = lambda x, r: ((x << r) | (x >> (64 - r))) & M
    rnd = lambda acc, v: (rotl((acc + v * P2) & M, 31) * P1) & M
    word = lambda i, k=8: int.from_bytes(b[i:i + k], "little")
    n, i = len(b), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            v = [rnd(v[k], word(i + 8 * k)) for k in range(4)]
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for x in v:
            h = ((h ^ rnd(0, x)) * P1 + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, word(i)), 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h = (rotl(h ^ ((word(i, 4) * P1) & M), 23) * P2 + P3) & M
        i += 4
    while i < n:
        h = (rotl(h ^ ((b[i] * P5) & M), 11) * P1) & M
        i += 1
    h = ((h ^ (h >> 33)) * P2) & M
    h = ((h ^ (h >> 29)) * P3) & M
    return h ^ (h >> 32)


# ---- running the binary (to build and train; never for an expected answer) -----------------
def run(*args, env=None, ok=(0,)):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    if p.returncode not in ok:
        sys.exit(f"{' '.join(map(str, args))}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def prov(run_dir, *args):
    return json.loads(run(BIN, "provenance", run_dir, *args, "--json").stdout)


def expect_error(name, pattern, *args):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    lines = p.stderr.strip().splitlines()
    check(name, p.returncode == 1 and len(lines) == 1 and pattern in p.stderr,
          f"(rc {p.returncode}): {p.stderr.strip()}")


MPI = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none"]
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
w = lambda *p: os.path.join(WORK, *p)
tiny = os.path.join(SRC, "recipes/demo/tiny.yaml")
run(BIN, "synth-notes", "--count", 30, "--seed", 5, "--questions-per-note", 2, "--out", w("sn"))
notes_csv = w("sn", "train.csv")
run(BIN, "tokenizer", "train", "--input", notes_csv, "--vocab-size", 600, "--out", w("tok.model"))
run(BIN, "corpus", "build", "--input", notes_csv, "--tokenizer", w("tok.model"), "--seed", 3,
    "--out", w("pre.h5"))
run(BIN, "corpus", "build", "--input", notes_csv, "--tokenizer", w("tok.model"), "--stage",
    "instruct", "--max-len", 1024, "--out", w("ins.h5"))
rows = list(csv.DictReader(open(notes_csv, newline="")))
strip = lambda s: s.strip("\r\n")

# ---- the corpora ---------------------------------------------------------------------------
with h5py.File(w("pre.h5"), "r") as f:
    tok_sum = f.attrs["tokenizer_xxh64"]
    tok_sum = tok_sum.decode() if isinstance(tok_sum, bytes) else tok_sum
check("XXH64 reimplemented (tokenizer checksum)",
      f"{xxh64(open(w('tok.model'), 'rb').read()):016x}" == tok_sum)


def load_corpus(path):
    with h5py.File(path, "r") as f:
        c = {k: int(f.attrs[k]) for k in ("num_docs", "num_tokens")}
        c["stage"] = f.attrs["stage"]
        c["stage"] = c["stage"].decode() if isinstance(c["stage"], bytes) else c["stage"]
        c["offsets"] = f["doc_offsets"][:]
        dec = lambda a: [x.decode() if isinstance(x, bytes) else x for x in a]
        c["ids"] = dec(f["note_ids"][:])
        c["xxh64"] = [f"{int(x):016x}" for x in f["note_xxh64"][:]]
        c["alias"] = dict(zip(dec(f["alias_ids"][:]), f["alias_doc"][:].tolist()))
    return c


pre, ins = load_corpus(w("pre.h5")), load_corpus(w("ins.h5"))
first = {}
for r in rows:  # distinct notes, first occurrence, shuffled as the build does
    first.setdefault(strip(r["note"]), r)
docs = list(first.values())
rng = MT19937_64(3)
for i in range(len(docs) - 1, 0, -1):
    j = rng() % (i + 1)
    docs[i], docs[j] = docs[j], docs[i]
check("pretrain note ids: patient_id, in the build's shuffled order",
      pre["ids"] == [r["patient_id"] for r in docs])
check("pretrain content hashes: XXH64 of the stripped note",
      pre["xxh64"] == [f"{xxh64(strip(r['note']).encode()):016x}" for r in docs])
check("instruct note ids: one per example, in input order",
      ins["ids"] == [r["patient_id"] for r in rows])
check("instruct content hashes", ins["xxh64"] == [f"{xxh64(strip(r['note']).encode()):016x}"
                                                  for r in rows])

# ---- training: 2 ranks, stopped, resumed at 1 rank; then stage two from a middle checkpoint --
common = [f"data.tokenizer={w('tok.model')}", "logging.progress=false",
          "logging.tensorboard=false", "checkpoint.every_steps=2"]
arch = ["model.vocab_size=600", "model.max_position_embeddings=1024"]
pre_args = [*arch, f"data.corpus={w('pre.h5')}", "data.seq_len=64", "train.global_batch_size=16",
            "train.micro_batch_size=2", "train.max_steps=16", f"checkpoint.dir={w('A')}"]
run(*MPI, BIN, "train", tiny, *common, *pre_args, "parallel.mode=fsdp", "--stop-after-step", 5,
    env=dict(MPI_ENV, ASCLEPIUS_TRACE_SAMPLES=w("traceA1")), ok=(143,))
run(BIN, "train", tiny, *common, *pre_args, "checkpoint.resume=auto",
    env={"ASCLEPIUS_TRACE_SAMPLES": w("traceA2")})
ins_args = ["model.preset=", f"model.init_from={w('A', 'step-0000006')}", "train.stage=instruct",
            f"data.corpus={w('ins.h5')}", "data.seq_len=1024", "train.global_batch_size=4",
            "train.micro_batch_size=2", "train.max_steps=5", f"checkpoint.dir={w('B')}"]
run(BIN, "train", tiny, *common, *ins_args, env={"ASCLEPIUS_TRACE_SAMPLES": w("traceB")})


# ---- the recomputation -------------------------------------------------------------------
def link(run_dir, via=None):
    rec = yaml.safe_load(open(os.path.join(run_dir, "recipe.yaml")))
    ckpts = sorted((json.load(open(os.path.join(d, "trainer_state.json")))["step"],
                    os.path.realpath(d)) for d in glob.glob(os.path.join(run_dir, "step-*"))
                   if os.path.exists(os.path.join(d, "manifest.pb")))
    state = json.load(open(os.path.join(via or ckpts[-1][1], "trainer_state.json")))
    corpus = load_corpus(state["provenance"]["corpus"]["path"])
    L = {"run": os.path.realpath(run_dir), "corpus": corpus, "ckpts": ckpts,
         "seq": rec["data"]["seq_len"], "G": rec["train"]["global_batch_size"],
         "seed": rec["train"]["seed"], "init": state["provenance"]["init_from"]}
    n = corpus["num_tokens"] // L["seq"] if corpus["stage"] == "pretrain" else corpus["num_docs"]
    L["n"], L["spe"] = n, n // L["G"]
    L["last"] = ckpts[-1][0]
    return L


def step_samples(L, step):
    e, k = divmod(step - 1, L["spe"])
    return epoch_order(L["n"], L["seed"], e)[k * L["G"]:(k + 1) * L["G"]]


def sample_docs(L, s):
    c = L["corpus"]
    if c["stage"] != "pretrain":
        return {s}
    lo, hi = s * L["seq"], (s + 1) * L["seq"]
    off = c["offsets"]
    return {d for d in range(len(off) - 1) if off[d] < hi and off[d + 1] > lo}


def step_docs(L, step):
    return set().union(*(sample_docs(L, s) for s in step_samples(L, step)))


A, B = link(w("A")), link(w("B"))
Ainit = link(w("A"), via=B["init"]["path"])
check("stage two records its init_from checkpoint",
      B["init"]["path"] == os.path.realpath(w("A", "step-0000006")) and B["init"]["step"] == 6)
check("the pretraining run crosses an epoch", A["last"] > A["spe"], f"{A['last']} {A['spe']}")
chain = [B, A]  # the stage-two run, then the run whose checkpoint it started from
for L in chain:
    L["docs_of_step"] = {s: step_docs(L, s) for s in range(1, L["last"] + 1)}


# What the trainer read, from every rank's trace: the global batch in rank order.
def traced(prefix, world):
    per_rank = []
    for r in range(world):
        lines = [ln.split(":") for ln in open(f"{prefix}.rank{r}")]
        per_rank.append({int(a): [int(x) for x in b.split()] for a, b in lines})
    steps = set.intersection(*(set(p) for p in per_rank))
    return {s: sum((p[s] for p in per_rank), []) for s in steps}


for prefix, world, L in ((w("traceA1"), 2, A), (w("traceA2"), 1, A), (w("traceB"), 1, B)):
    t = traced(prefix, world)
    check(f"what the trainer read at {world} rank(s) ({os.path.basename(prefix)}) = the plan",
          t and all(t[s] == step_samples(L, s) for s in t), f"{sorted(t)[:3]}")


def ids_of(L, docs):
    return {L["corpus"]["ids"][d] for d in docs}


# --step
for L, steps in ((A, [1, 5, 6, A["spe"] + 1, A["last"]]), (B, [1, 3, B["last"]])):
    for s in steps:
        got = prov(L["run"], "--step", s)
        want = sorted(step_docs(L, s))
        check(f"--step {s} of {os.path.basename(L['run'])}",
              got["samples"] == step_samples(L, s) and [n["doc"] for n in got["notes"]] == want
              and [n["id"] for n in got["notes"]] == [L["corpus"]["ids"][d] for d in want]
              and [n["xxh64"] for n in got["notes"]] == [L["corpus"]["xxh64"][d] for d in want])


# --note: per run of the chain, the steps; per checkpoint, seen directly or inherited.
def docs_for(L, note):
    c = L["corpus"]
    d = {i for i, x in enumerate(c["ids"]) if x == note}
    return d | ({c["alias"][note]} if note in c["alias"] else set())


def expected_note(note):
    out, inherited = [], False
    for i in range(len(chain) - 1, -1, -1):
        L = chain[i]
        docs = docs_for(L, note)
        steps = [s for s in range(1, L["last"] + 1) if L["docs_of_step"][s] & docs]
        seen = [(st, bool(steps) and steps[0] <= st or inherited) for st, _ in L["ckpts"]]
        out.insert(0, (sorted(docs), steps, seen))
        if i > 0:
            inherited = inherited or bool(steps) and steps[0] <= chain[i - 1]["init"]["step"]
    return out


random.seed(7)
candidates = sorted(set(pre["ids"]) | set(ins["ids"]))
for note in random.sample(candidates, 6):
    got = prov(B["run"], "--note", note)
    want = expected_note(note)
    ok = len(got["runs"]) == 2 and all(
        [m["doc"] for m in g["matches"]] == d and g["steps"] == s
        and [(c["step"], c["seen"]) for c in g["checkpoints"]] == seen
        for g, (d, s, seen) in zip(got["runs"], want))
    check(f"--note {note} (stage two and its init_from chain)", ok, json.dumps(want)[:300])

# --checkpoint: every checkpoint of both runs.
for L, i in ((B, 0), (A, 1)):
    for step, d in L["ckpts"]:
        got = prov(B["run"], "--checkpoint", d)
        want, up_to = [], step
        for Lk in chain[i:]:
            seen = set().union(*(Lk["docs_of_step"][s] for s in range(1, up_to + 1)))
            want.append(sorted(seen))
            up_to = Lk["init"]["step"] if Lk["init"] else 0
        check(f"--checkpoint {os.path.basename(L['run'])}/step {step}",
              [[n["doc"] for n in src["notes"]] for src in got["sources"]] == want)

# --exclude: every existing checkpoint that saw any of the ids.
excl = random.sample(candidates, 3)
open(w("excl.txt"), "w").write("# removal request\n" + "\n".join(excl) + "\n\n")
got = prov(B["run"], "--exclude", w("excl.txt"))
want = {}
for note in excl:
    for L, (docs, steps, seen) in zip(chain, expected_note(note)):
        for (st, s), (_, d) in zip(seen, L["ckpts"]):
            if s:
                want.setdefault(d, set()).add(note)
check("--exclude names every checkpoint that saw an excluded note",
      {c["dir"]: set(c["notes"]) for c in got["checkpoints"]} == want and got["unknown"] == [])
run(BIN, "corpus", "build", "--input", notes_csv, "--tokenizer", w("tok.model"), "--seed", 3,
    "--exclude", w("excl.txt"), "--out", w("pre_excl.h5"))
pe = load_corpus(w("pre_excl.h5"))
check("corpus build --exclude leaves those notes out",
      not set(excl) & (set(pe["ids"]) | set(pe["alias"]))
      and set(pe["ids"]) | set(pe["alias"]) == (set(pre["ids"]) | set(pre["alias"])) - set(excl))

# Records without an id column get FILE:RECORD (the 1-based record number of that input).
with open(w("noid.jsonl"), "w") as f:
    for r in rows[:12]:
        f.write(json.dumps({"note": r["note"], "question": r["question"],
                            "answer": r["answer"]}) + "\n")
run(BIN, "corpus", "build", "--input", w("noid.jsonl"), "--tokenizer", w("tok.model"), "--stage",
    "instruct", "--max-len", 1024, "--out", w("noid.h5"))
check("records without an id: FILE:RECORD",
      load_corpus(w("noid.h5"))["ids"] == [f"noid.jsonl:{k}" for k in range(1, 13)])

# ---- bad input -----------------------------------------------------------------------------
expect_error("unknown note", "is in no corpus of run", "provenance", B["run"], "--note", "nope")
expect_error("step beyond the run", f"has steps 1..{A['last']}", "provenance", A["run"],
             "--step", A["last"] + 1)
expect_error("not a checkpoint", "not a checkpoint", "provenance", A["run"], "--checkpoint",
             w("sn"))
open(w("bad_excl.txt"), "w").write(excl[0] + "\nno-such-id\n")
expect_error("unknown --exclude id", "match no record", "corpus", "build", "--input", notes_csv,
             "--tokenizer", w("tok.model"), "--exclude", w("bad_excl.txt"), "--out", w("x.h5"))
# A corpus from before note ids: the same file without them, and a run that trained on it.
shutil.copy(w("pre.h5"), w("old.h5"))
with h5py.File(w("old.h5"), "a") as f:
    for k in ("note_ids", "note_xxh64", "alias_ids", "alias_doc"):
        del f[k]
    for k in ("note_id_rule", "fingerprint", "excluded"):
        del f.attrs[k]
run(BIN, "train", tiny, *common, *arch, f"data.corpus={w('old.h5')}", "data.seq_len=48",
    "train.global_batch_size=8", "train.micro_batch_size=2", "train.max_steps=2",
    f"checkpoint.dir={w('C')}")
expect_error("corpus without note ids", "holds no note ids", "provenance", w("C"), "--step", 1)

# A run recorded before checkpoints carried "provenance": read from its recipe.yaml, unverified.
shutil.copytree(w("A"), w("A_old"))
for ts in glob.glob(w("A_old", "step-*", "trainer_state.json")):
    j = json.load(open(ts))
    del j["provenance"]
    json.dump(j, open(ts, "w"))
got = prov(w("A_old"), "--step", 7)
check("a run without a record: from its recipe.yaml, marked unverified",
      not got["verified"] and [n["doc"] for n in got["notes"]] == sorted(step_docs(A, 7)))
# The corpus rebuilt in place (here: with --exclude) is not the one the run trained on.
shutil.copy(w("pre_excl.h5"), w("pre.h5"))
expect_error("a corpus changed since the run", "has changed since the run trained on it",
             "provenance", B["run"], "--note", excl[0])

print(f"{'FAILED' if fails else 'passed'}: {fails} failures")
sys.exit(1 if fails else 0)
