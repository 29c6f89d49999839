"""Independent check of a corpus.h5 with h5py and transformers' slow LlamaTokenizer.
pretrain: every document is [bos] + encode(note stripped of leading/trailing newlines) + [eos],
          and the documents are exactly the distinct notes of the source CSV.
instruct: every example is encode(prompt + answer) + [eos] with the loss mask 0 on the first
          len(encode(prompt)) tokens and 1 after (answer and EOS), the Asclepius prompt exact.
Usage: check_corpus.py corpus.h5 tokenizer.model source.csv
"""
import csv
import sys
import warnings

import h5py
import numpy as np

warnings.filterwarnings("ignore")
from transformers import LlamaTokenizer  # noqa: E402

PROMPT = """You are an intelligent clinical languge model.
Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.
Write a response that appropriately completes the instruction.
The response should provide the accurate answer to the instruction, while being concise.

[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End]
"""

path, model, source = sys.argv[1:4]
tok = LlamaTokenizer(vocab_file=model)
f = h5py.File(path, "r")
tokens, offsets = f["tokens"], f["doc_offsets"][:]
assert tokens.dtype == np.int32 and offsets.dtype == np.int64
assert tokens.fletcher32, "tokens must carry the Fletcher32 filter"
assert f.attrs["schema_version"] == 1
stage = f.attrs["stage"].decode() if isinstance(f.attrs["stage"], bytes) else f.attrs["stage"]
assert f.attrs["num_tokens"] == len(tokens) and f.attrs["num_docs"] == len(offsets) - 1
assert (f.attrs["bos_id"], f.attrs["eos_id"], f.attrs["pad_id"]) == (1, 2, 1)
all_tokens = tokens[:]
docs = [all_tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
rows = list(csv.DictReader(open(source, newline="")))
strip = lambda s: s.strip("\r\n")

if stage == "pretrain":
    notes = sorted({strip(r["note"]) for r in rows})
    want = sorted(tok.encode(n) + [2] for n in notes)
    assert sorted(docs) == want, "pretrain documents differ from [bos] + encode(note) + [eos]"
    print(f"{path}: {len(docs)} pretrain documents equal the reference tokenisation")
else:
    mask = f["loss_mask"][:]
    from collections import Counter
    want = Counter()
    for r in rows:
        prompt = PROMPT.format(note=strip(r["note"]), question=strip(r["question"]))
        full = tok.encode(prompt + strip(r["answer"])) + [2]
        boundary = len(tok.encode(prompt))
        want[(tuple(full), tuple([0] * boundary + [1] * (len(full) - boundary)))] += 1
    got = Counter()
    for i, d in enumerate(docs):
        got[(tuple(d), tuple(mask[offsets[i]:offsets[i + 1]].tolist()))] += 1
    assert got == want, "examples/masks differ from encode(prompt + answer) + [eos] with the mask on answer + EOS"
    n = sum(got.values())
    print(f"{path}: {n} instruct examples and masks equal the reference")
