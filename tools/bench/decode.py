"""Decoding speed: `asclepius generate` against transformers' `generate` on the same exported
model, the same prompts (Asclepius prompts over synthetic notes, ids from our tokenizer), the same
number of new tokens and the same CPU threads, in the same run. Greedy, KV cache, fp32; batch 1
(one prompt at a time) and batch 8 (left-padded). Tokens/s = generated tokens / time inside
generate (prefill included, model loading and tokenisation excluded) for both. Neither side stops
at EOS (--ignore-eos; min_new_tokens for transformers), so both generate exactly the same count.
Rounds alternate between the two; the median is reported.

Usage: decode.py --bin build/bin/asclepius [--preset small] [--prompts 16] [--new 64]
                 [--threads 2] [--rounds 3] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {  # as trainer/model/llama_config.cpp
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8, intermediate_size=1376, vocab_size=32000),
    "tiny-gqa": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=176, vocab_size=1000),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = lambda *x: subprocess.run([a.bin, *x], check=True, capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as d:
        run("synth-notes", "--count", str(a.prompts), "--seed", "5", "--out", f"{d}/notes")
        run("tokenizer", "train", "--input", f"{d}/notes/train.csv", "--vocab-size", "1000",
            "--out", f"{d}/tok.model")
        torch.manual_seed(0)
        cfg = LlamaConfig(max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
                          eos_token_id=2, **PRESETS[a.preset])
        model = LlamaForCausalLM(cfg).float().eval()
        model.save_pretrained(f"{d}/hf", safe_serialization=True)

        def ours(batch, tag):
            out, stats = f"{d}/ours-{tag}.jsonl", f"{d}/stats-{tag}.json"
            run("generate", "--model", f"{d}/hf", "--tokenizer", f"{d}/tok.model", "--input",
                f"{d}/notes/train.csv", "--output", out, "--with-ids", "--ignore-eos",
                "--max-new-tokens", str(a.new), "--batch-size", str(batch), "--threads",
                str(a.threads), "--stats-json", stats)
            s = json.load(open(stats))
            rows = [json.loads(l) for l in open(out)]
            return s["tokens"] / s["seconds"], [r["prompt_ids"] for r in rows], s["tokens"]

        def hf(prompts, batch):
            toks, secs = 0, 0.0
            for i in range(0, len(prompts), batch):
                ps = prompts[i:i + batch]
                L = max(len(p) for p in ps)
                ids = torch.tensor([[1] * (L - len(p)) + p for p in ps])
                mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in ps])
                t0 = time.perf_counter()
                with torch.no_grad():
                    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                         num_beams=1, max_new_tokens=a.new,
                                         min_new_tokens=a.new, pad_token_id=1, eos_token_id=2)
                secs += time.perf_counter() - t0
                toks += (out.shape[1] - L) * len(ps)
            return toks / secs, toks

        results = {}
        for batch in (1, 8):
            o_rates, h_rates = [], []
            for r in range(a.rounds):
                rate, prompts, o_toks = ours(batch, f"b{batch}-{r}")
                o_rates.append(rate)
                hrate, h_toks = hf(prompts, batch)
                h_rates.append(hrate)
                assert o_toks == h_toks, (o_toks, h_toks)
            o, h = statistics.median(o_rates), statistics.median(h_rates)
            results[f"batch{batch}"] = {"ours_tokens_per_s": o, "transformers_tokens_per_s": h,
                                        "ratio": o / h, "prompts": len(prompts),
                                        "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts),
                                        "new_tokens": a.new, "rounds": a.rounds}
            print(f"batch {batch}: asclepius {o:8.1f} tok/s   transformers {h:8.1f} tok/s   "
                  f"ratio {o / h:.2f}x  ({len(prompts)} prompts of ~"
                  f"{results[f'batch{batch}']['prompt_tokens_mean']:.0f} tokens, {a.new} new, "
                  f"{a.threads} threads, {a.preset})", flush=True)
    out = {"preset": a.preset, "threads": a.threads, "torch": torch.__version__, **results}
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
