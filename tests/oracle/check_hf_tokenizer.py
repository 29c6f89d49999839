"""Compares our ids and decoded text with Hugging Face's on the same tokenizer files.

  check_hf_tokenizer.py fast DIR ours.json   AutoTokenizer.from_pretrained(DIR): for a
      tokenizer.json this is PreTrainedTokenizerFast (the Rust `tokenizers` library), BOS and
      EOS from DIR/tokenizer_config.json, as upstream's llama3_mistral branch loads Llama 3.
  check_hf_tokenizer.py mistral MODEL ours.json   the slow LlamaTokenizer over a SentencePiece
      model, with every control piece ([INST], [/INST], [control_8], ...) registered as an added
      special token, as Mistral-7B-v0.3's tokenizer_config.json lists them.
ours.json: [{"text": ..., "ids": [...], "decoded": ...}, ...] written by the C++ test. "decoded"
is compared with decode(ids, skip_special_tokens=True), for SentencePiece with the library's own
decode of the non-control ids (the slow tokenizer's decode mangles whitespace-only text).
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
from transformers import AutoTokenizer, LlamaTokenizer  # noqa: E402

mode, path, ours = sys.argv[1:4]
if mode == "fast":
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.is_fast, "expected the Rust tokenizer"
else:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=path)
    controls = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                if sp.is_control(i) and i not in (sp.bos_id(), sp.eos_id())]
    tok = LlamaTokenizer(vocab_file=path, legacy=True)
    tok.add_special_tokens({"additional_special_tokens": controls})
    # The pieces keep their ids: registering a piece the model already has adds no new id.
    assert all(tok.convert_tokens_to_ids(c) == sp.piece_to_id(c) for c in controls)
cases = json.load(open(ours))
bad = 0
for c in cases:
    ref = tok.encode(c["text"])
    if mode == "fast":
        dec = tok.decode(c["ids"], skip_special_tokens=True)
    else:  # the slow tokenizer's decode drops or keeps "▁" around spaces-only text: use sp's own
        dec = sp.decode([i for i in c["ids"] if not sp.is_control(i)])
    if ref != c["ids"] or ("decoded" in c and dec != c["decoded"]):
        bad += 1
        if bad <= 5:
            print("MISMATCH", repr(c["text"][:80]), "\n  hf  ", ref[:40], repr(dec[:60]),
                  "\n  ours", c["ids"][:40], repr(c.get("decoded", "")[:60]))
print(f"{mode}: {len(cases)} texts, {bad} mismatches; bos={tok.bos_token_id} "
      f"eos={tok.eos_token_id} vocab={len(tok)}")
sys.exit(1 if bad else 0)
