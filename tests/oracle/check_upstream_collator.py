"""Upstream's supervised data pipeline, run with transformers, against our rows.

Upstream's train.py (Alpaca-derived, both branches): sources = prompt.format(note, question),
targets = answer + tokenizer.eos_token; input_ids = tokenizer(source + target, max_length=L,
truncation=True).input_ids; source_len = tokenizer(source, ...).input_ids.ne(pad).sum();
labels = input_ids with labels[:source_len] = -100; the collator right-pads input_ids with pad and
labels with -100, attention_mask = input_ids.ne(pad). pad = bos (upstream sets it so).

  check_upstream_collator.py slow|fast TOKENIZER PROMPT_FILE MAX_LEN RECORDS.jsonl OURS.json
slow: LlamaTokenizer (SentencePiece, as upstream main); fast: AutoTokenizer over a directory (as
the llama3_mistral branch). OURS.json: {"group": G, "rows": [[{"ids","labels","attention"}...]...]}
for consecutive groups of G records. Exits 1 on any element that differs.
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402
from transformers import AutoTokenizer, LlamaTokenizer  # noqa: E402

mode, tok_path, prompt_file, max_len, records_path, ours_path = sys.argv[1:7]
max_len = int(max_len)
tok = LlamaTokenizer(vocab_file=tok_path) if mode == "slow" else AutoTokenizer.from_pretrained(tok_path)
tok.pad_token = tok.bos_token  # upstream
tok.model_max_length = max_len
prompt = open(prompt_file, encoding="utf-8").read()
strip = lambda s: s.strip("\n")  # noqa: E731  (upstream's own strip)
records = [json.loads(line) for line in open(records_path, encoding="utf-8")]


def tokenize(text):
    ids = tok(text, return_tensors="pt", max_length=max_len, truncation=True).input_ids[0]
    return ids, int(ids.ne(tok.pad_token_id).sum())


examples = []
for r in records:
    source = prompt.format(note=strip(r["note"]), question=strip(r["question"]))
    target = strip(r["answer"]) + tok.eos_token
    ids, _ = tokenize(source + target)
    _, source_len = tokenize(source)
    labels = ids.clone()
    labels[:source_len] = -100
    examples.append((ids, labels))

ours = json.load(open(ours_path))
g = ours["group"]
bad = checked = 0
for k, rows in enumerate(ours["rows"]):
    part = examples[k * g:(k + 1) * g]
    ids = torch.nn.utils.rnn.pad_sequence([e[0] for e in part], batch_first=True,
                                          padding_value=tok.pad_token_id)
    labels = torch.nn.utils.rnn.pad_sequence([e[1] for e in part], batch_first=True,
                                             padding_value=-100)
    attn = ids.ne(tok.pad_token_id).long()
    for name, ref in (("ids", ids), ("labels", labels), ("attention", attn)):
        got = torch.tensor([row[name] for row in rows])
        checked += ref.numel()
        if got.shape != ref.shape or not torch.equal(got, ref):
            bad += 1
            if bad <= 5:
                print(f"group {k} {name}: ours {tuple(got.shape)} upstream {tuple(ref.shape)}")
                if got.shape == ref.shape:
                    d = (got != ref).nonzero()[:5].tolist()
                    print("  first differences", d, [(int(got[i][j]), int(ref[i][j])) for i, j in d])
print(f"upstream collator ({mode}): {len(ours['rows'])} groups, {checked} elements, {bad} differ")
sys.exit(1 if bad else 0)
