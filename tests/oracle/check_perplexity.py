"""`asclepius eval ppl` against transformers: the same model and corpus, the loss recomputed by
LlamaForCausalLM over the same sequences (pretrain: windows of SEQ tokens of the stream, the last
shorter one included; instruct: each example, targets where the loss mask is set).
Usage: check_perplexity.py HF_DIR CORPUS.h5 OURS.json SEQ
"""
import json
import math
import sys

import h5py
import torch
from transformers import LlamaForCausalLM

model_dir, corpus, ours_path, seq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
with h5py.File(corpus, "r") as f:
    tokens = f["tokens"][:].astype("int64")
    offsets = f["doc_offsets"][:]
    mask = f["loss_mask"][:] if "loss_mask" in f else None
seqs = []
if mask is None:
    for b in range(0, len(tokens) - 1, seq):
        ids = tokens[b:b + seq]
        seqs.append((ids, ids.copy()))
else:
    for b, e in zip(offsets[:-1], offsets[1:]):
        e = min(e, b + seq)
        ids, lab = tokens[b:e], tokens[b:e].copy()
        lab[mask[b:e] == 0] = -100
        seqs.append((ids, lab))
total, count = 0.0, 0
with torch.no_grad():
    for ids, lab in seqs:
        logits = model(torch.tensor(ids)[None]).logits[0, :-1].float()
        target = torch.tensor(lab)[1:]
        total += torch.nn.functional.cross_entropy(logits, target, ignore_index=-100,
                                                   reduction="sum").item()
        count += int((target != -100).sum())
ours = json.load(open(ours_path))
want = math.exp(total / count)
ok = ours["tokens"] == count and abs(ours["perplexity"] - want) <= 1e-4 * want
print(f"ours {ours['perplexity']:.6f} over {ours['tokens']} tokens; transformers {want:.6f} over {count}")
sys.exit(0 if ok else 1)
