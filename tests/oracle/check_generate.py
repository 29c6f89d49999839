"""Our `asclepius generate` against Hugging Face transformers' `generate` on the same model.

A tiny random LlamaForCausalLM (grouped-query attention) is saved by transformers; questions
about synthetic notes are answered by our binary (--with-ids) and by transformers from the same
prompt ids. Checked, in fp32:
  - the prompt ids equal the slow LlamaTokenizer's ids of the exact Asclepius prompt text;
  - greedy decoding gives the same token ids, one prompt at a time and left-padded in batches
    of 4 (rows of different lengths), stopping at EOS or max_new_tokens;
  - beam search (3 beams) gives the same ids as transformers' beam search;
  - on a Llama 3.1-style model (rotary scaling rope_type llama3, config.json eos_token_id a
    list), greedy decoding gives transformers' ids, stopping at any of the listed end ids.
Usage: check_generate.py ASCLEPIUS_BIN WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

from peaked_llama import make_peaked_llama

bin_, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)  # a fresh directory: synth-notes does not replace notes
os.makedirs(work)
run = lambda *a: subprocess.run([bin_, *a], check=True, capture_output=True, text=True)

run("synth-notes", "--count", "6", "--seed", "4", "--questions-per-note", "2", "--out",
    f"{work}/notes")
run("tokenizer", "train", "--input", f"{work}/notes/train.csv", "--vocab-size", "800", "--out",
    f"{work}/tok.model")
tok = LlamaTokenizer(vocab_file=f"{work}/tok.model")

model = make_peaked_llama(7, 2048, f"{work}/hf")

PROMPT = ("You are an intelligent clinical languge model.\n"
          "Below is a snippet of patient's discharge summary and a following instruction from "
          "healthcare professional.\nWrite a response that appropriately completes the "
          "instruction.\nThe response should provide the accurate answer to the instruction, "
          "while being concise.\n\n[Discharge Summary Begin]\n{note}\n[Discharge Summary End]\n\n"
          "[Instruction Begin]\n{question}\n[Instruction End]\n")

MAX_NEW = 24


def ours(extra, tag, model_dir=None):
    out = f"{work}/answers-{tag}.jsonl"
    run("generate", "--model", model_dir or f"{work}/hf", "--tokenizer", f"{work}/tok.model", "--input",
        f"{work}/notes/train.csv", "--output", out, "--with-ids", "--max-new-tokens",
        str(MAX_NEW), *extra)
    return [json.loads(l) for l in open(out)]


def hf_rows(prompts, m, eos, **kw):
    """Left-padded batch generate; per row (ids up to, not including, the first end id; that
    end id or None)."""
    L = max(len(p) for p in prompts)
    ids = torch.tensor([[1] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW,
                         eos_token_id=eos, pad_token_id=1, **kw)
    res = []
    for row in out[:, L:].tolist():
        end = next((i for i, t in enumerate(row) if t in eos), None)
        res.append((row, None) if end is None else (row[:end], row[end]))
    return res


def hf_generate(prompts, **kw):
    return [ids for ids, _ in hf_rows(prompts, model, [2], **kw)]


failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    failures += 0 if ok else 1


single = ours(["--batch-size", "1"], "b1")
batched = ours(["--batch-size", "4"], "b4")
import csv
n_records = len(list(csv.DictReader(open(f"{work}/notes/train.csv"))))
check(f"{n_records} answers", n_records >= 8 and len(single) == n_records == len(batched),
      f"{len(single)} {len(batched)}")
for r in single:
    want = tok.encode(PROMPT.format(note=r["note"].strip("\r\n"), question=r["question"].strip("\r\n")))
    if r["prompt_ids"] != want:
        check("prompt ids equal the slow tokenizer's", False, r["question"])
        break
else:
    check("prompt ids equal the slow tokenizer's", True)
lens = sorted({len(r["prompt_ids"]) for r in single})
check("prompts of different lengths (left padding exercised)", len(lens) > 3, str(lens))

greedy_kw = dict(do_sample=False, num_beams=1)
ref1 = [hf_generate([r["prompt_ids"]], **greedy_kw)[0] for r in single]
got1 = [r["asclepius_ids"] for r in single]
check("greedy, one prompt at a time", got1 == ref1,
      next((f"row {i}: ours {a} hf {b}" for i, (a, b) in enumerate(zip(got1, ref1)) if a != b), ""))
eos = [r["asclepius_ended_with_eos"] for r in single]
check("some answers end at EOS, some at max_new_tokens", any(eos) and not all(eos), str(eos))
check("EOS flag agrees with the length", all(e == (len(a) < MAX_NEW) for e, a in zip(eos, got1)))

prompts = [r["prompt_ids"] for r in batched]
ref4 = []
for i in range(0, len(prompts), 4):
    ref4 += hf_generate(prompts[i:i + 4], **greedy_kw)
got4 = [r["asclepius_ids"] for r in batched]
check("greedy, left-padded batches of 4 (transformers batched too)", got4 == ref4,
      next((f"row {i}: ours {a} hf {b}" for i, (a, b) in enumerate(zip(got4, ref4)) if a != b), ""))
check("batched equals one at a time", got4 == got1)

beam = ours(["--batch-size", "2", "--num-beams", "3"], "beam3")
refb = [hf_generate([r["prompt_ids"]], do_sample=False, num_beams=3)[0] for r in beam]
gotb = [r["asclepius_ids"] for r in beam]
check("beam search (3 beams) equals transformers'", gotb == refb,
      next((f"row {i}: ours {a} hf {b}" for i, (a, b) in enumerate(zip(gotb, refb)) if a != b), ""))

# Sampling: top-k 1 and a tiny top-p keep only the best token, so they must equal greedy; a
# seed gives the same answers again; other seeds differ somewhere.
topk1 = ours(["--do-sample", "--top-k", "1", "--temperature", "0.7"], "topk1")
check("sampling with top-k 1 equals greedy", [r["asclepius_ids"] for r in topk1] == got1)
topp = ours(["--do-sample", "--top-p", "1e-6"], "topp")
check("sampling with top-p 1e-6 equals greedy", [r["asclepius_ids"] for r in topp] == got1)
s1 = ours(["--do-sample", "--seed", "1"], "s1")
s1b = ours(["--do-sample", "--seed", "1"], "s1b")
s2 = ours(["--do-sample", "--seed", "2", "--top-k", "50", "--top-p", "0.9"], "s2")
ids = lambda rs: [r["asclepius_ids"] for r in rs]
check("sampling is reproducible for a seed", ids(s1) == ids(s1b))
check("sampling differs from greedy and between seeds", ids(s1) != got1 and ids(s1) != ids(s2))

# Continuous batching: a finished row takes the next prompt at once (answers of different
# lengths here); the same ids as transformers' greedy one at a time, and the same samples as
# static batches (one generator per line).
cont = ours(["--batch-size", "3", "--continuous-batching"], "cont3")
check("continuous batching (3 slots): greedy ids equal transformers' one at a time",
      ids(cont) == ref1,
      next((f"row {i}: ours {a} hf {b}" for i, (a, b) in enumerate(zip(ids(cont), ref1)) if a != b), ""))
cs = ours(["--batch-size", "3", "--continuous-batching", "--do-sample", "--seed", "5"], "cont_s")
ss = ours(["--batch-size", "3", "--do-sample", "--seed", "5"], "static_s")
check("continuous batching: sampling equals static batches (a seed per line)", ids(cs) == ids(ss))

# Llama 3.1 style: rotary scaling (rope_type llama3; head_dim 16 and rope_theta 500000 give
# wavelengths 6.3, 32, 167, 862, ...: with these factors two frequencies are kept, two
# interpolated, four divided) and end ids [2, 5] in config.json, on prompts of hundreds of tokens.
torch.manual_seed(8)
EOS31 = [2, 5]
cfg31 = LlamaConfig(vocab_size=800, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                    rms_norm_eps=1e-5, rope_theta=500000.0,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=0.25,
                                      high_freq_factor=4.0, original_max_position_embeddings=256),
                    bos_token_id=1, eos_token_id=EOS31)
model31 = LlamaForCausalLM(cfg31).float().eval()
with torch.no_grad():
    for n, p in model31.named_parameters():
        if "norm" not in n:
            p.normal_(0.0, 0.35)
    model31.lm_head.weight[2] *= 1.5
    model31.lm_head.weight[5] *= 1.5
model31.save_pretrained(f"{work}/hf31", safe_serialization=True)
greedy31 = ours(["--batch-size", "1"], "llama31", f"{work}/hf31")
batched31 = ours(["--batch-size", "4"], "llama31-b4", f"{work}/hf31")
ref31 = [hf_rows([r["prompt_ids"]], model31, EOS31, **greedy_kw)[0] for r in greedy31]
got31 = [r["asclepius_ids"] for r in greedy31]
check("llama3 rotary scaling: greedy equals transformers'", got31 == [i for i, _ in ref31],
      next((f"row {i}: ours {a} hf {b}" for i, (a, (b, _)) in enumerate(zip(got31, ref31))
            if a != b), ""))
ends = [e for _, e in ref31]
check("answers end at each listed end id and at max_new_tokens",
      2 in ends and 5 in ends and None in ends, str(ends))
check("EOS flag agrees with transformers' stop",
      [r["asclepius_ended_with_eos"] for r in greedy31] == [e is not None for e in ends])
prompts31 = [r["prompt_ids"] for r in batched31]
ref31b = []
for i in range(0, len(prompts31), 4):
    ref31b += [ids for ids, _ in hf_rows(prompts31[i:i + 4], model31, EOS31, **greedy_kw)]
check("llama3 rotary scaling: greedy in left-padded batches of 4 equals transformers'",
      [r["asclepius_ids"] for r in batched31] == ref31b)

sys.exit(1 if failures else 0)
