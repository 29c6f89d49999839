"""Compares our token ids with Hugging Face's slow LlamaTokenizer (SentencePiece) on the same
tokenizer.model. Input JSON: [{"text": ..., "ids": [...]}, ...] written by the C++ test.
Usage: check_tokenizer.py tokenizer.model ours.json
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
from transformers import LlamaTokenizer  # noqa: E402

tok = LlamaTokenizer(vocab_file=sys.argv[1])  # slow tokenizer, as Asclepius used
cases = json.load(open(sys.argv[2]))
bad = 0
for c in cases:
    ref = tok.encode(c["text"])  # [bos] + pieces
    if ref != c["ids"]:
        bad += 1
        if bad <= 5:
            print("MISMATCH", repr(c["text"][:80]), "\n  hf  ", ref[:30], "\n  ours", c["ids"][:30])
print(f"{len(cases)} texts, {bad} mismatches; bos={tok.bos_token_id} eos={tok.eos_token_id} unk={tok.unk_token_id}")
sys.exit(1 if bad else 0)
