"""Decoding speed: `asclepius generate` against transformers' `generate` on the same exported
model, the same prompts (Asclepius prompts over synthetic notes, ids from our tokenizer), the same
number of new tokens and the same CPU threads, in the same run. Greedy, KV cache, fp32; batch 1
(one prompt at a time) and batch 8 (left-padded). Tokens/s = generated tokens / time inside
generate (prefill included, model loading and tokenisation excluded) for both. Neither side stops
at EOS (--ignore-eos; min_new_tokens for transformers), so both generate exactly the same count.
Rounds alternate between the two; the median is reported.

With --mixed: notes cut to very different lengths and answers that end at EOS after very
different numbers of tokens (the EOS row of the LM head is scaled by --eos-scale so that a random
model emits it now and then); ours decodes with --continuous-batching through 8 slots,
transformers' generate in static batches of 8 in input order; both greedy, the same answers
(checked id for id), tokens = generated ids up to and including EOS.

Usage: decode.py --bin build/bin/asclepius [--preset small] [--prompts 16] [--new 64]
                 [--threads 2] [--rounds 3] [--mixed [--eos-scale 3.0]] [--json out.json]
                 [--keep DIR]   (the model, tokenizer and notes stay in DIR, e.g. for --profile)
"""
import argparse
import contextlib
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


def hf_greedy(model, ps, new, min_new=0):
    """transformers' greedy generate over left-padded prompts (pad 1, EOS 2): (ids, P, seconds)."""
    L = max(len(p) for p in ps)
    ids = torch.tensor([[1] * (L - len(p)) + p for p in ps])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in ps])
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                             max_new_tokens=new, min_new_tokens=min_new, pad_token_id=1,
                             eos_token_id=2)
    return out, L, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mixed", action="store_true")
    ap.add_argument("--eos-scale", type=float, default=3.0)
    ap.add_argument("--json")
    ap.add_argument("--keep", help="work in this directory and keep it (model, tokenizer, notes)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = lambda *x: subprocess.run([a.bin, *x], check=True, capture_output=True, text=True)
    if a.keep:
        if os.path.exists(a.keep) and os.listdir(a.keep):
            sys.exit(f"--keep {a.keep}: not empty (give a new or empty directory)")
        os.makedirs(a.keep, exist_ok=True)
    with (contextlib.nullcontext(a.keep) if a.keep else tempfile.TemporaryDirectory()) as d:
        run("synth-notes", "--count", str(a.prompts), "--seed", "5", "--out", f"{d}/notes")
        run("tokenizer", "train", "--input", f"{d}/notes/train.csv", "--vocab-size", "1000",
            "--out", f"{d}/tok.model")
        torch.manual_seed(0)
        cfg = LlamaConfig(max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
                          eos_token_id=2, **PRESETS[a.preset])
        model = LlamaForCausalLM(cfg).float().eval()
        if a.mixed:
            with torch.no_grad():
                model.lm_head.weight[2] *= a.eos_scale
            import csv
            import random
            rows = list(csv.DictReader(open(f"{d}/notes/train.csv", newline="")))
            rng = random.Random(3)
            for r in rows:  # notes from a sentence to the whole note
                r["note"] = r["note"][:rng.choice([80, 300, 1000, 3000, 100000])]
            with open(f"{d}/notes/train.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
                w.writeheader()
                w.writerows(rows)
        model.save_pretrained(f"{d}/hf", safe_serialization=True)
        if a.mixed:
            return mixed(a, d, model, run)

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
                out, L, dt = hf_greedy(model, ps, a.new, min_new=a.new)
                secs += dt
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


def mixed(a, d, model, run):
    def ours(tag, continuous=True):
        out, stats = f"{d}/ours-{tag}.jsonl", f"{d}/stats-{tag}.json"
        run("generate", "--model", f"{d}/hf", "--tokenizer", f"{d}/tok.model", "--input",
            f"{d}/notes/train.csv", "--output", out, "--with-ids",
            *(["--continuous-batching"] if continuous else []),
            "--max-new-tokens", str(a.new), "--batch-size", "8", "--threads", str(a.threads),
            "--stats-json", stats)
        s = json.load(open(stats))
        return s, [json.loads(l) for l in open(out)]

    def hf(prompts):
        answers, toks, secs = [], 0, 0.0
        for i in range(0, len(prompts), 8):
            out, L, dt = hf_greedy(model, prompts[i:i + 8], a.new)
            secs += dt
            for row in out[:, L:].tolist():
                ans = row[:row.index(2)] if 2 in row else row
                toks += len(ans) + (1 if 2 in row else 0)
                answers.append(ans)
        return answers, toks, secs

    o_rates, h_rates, st_rates = [], [], []
    for r in range(a.rounds):
        st, st_rows = ours(f"static-{r}", continuous=False)
        st_rates.append(st["tokens"] / st["seconds"])
        s, rows = ours(f"mixed-{r}")
        assert [x["asclepius_ids"] for x in st_rows] == [x["asclepius_ids"] for x in rows]
        prompts = [x["prompt_ids"] for x in rows]
        answers, h_toks, h_secs = hf(prompts)
        assert [x["asclepius_ids"] for x in rows] == answers, "greedy answers differ"
        assert s["tokens"] == h_toks, (s["tokens"], h_toks)
        o_rates.append(s["tokens"] / s["seconds"])
        h_rates.append(h_toks / h_secs)
    lens = sorted(len(x) for x in answers)
    plens = sorted(len(p) for p in prompts)
    o, h = statistics.median(o_rates), statistics.median(h_rates)
    res = {"mode": "mixed", "preset": a.preset, "threads": a.threads, "torch": torch.__version__,
           "prompts": len(prompts), "prompt_tokens": [plens[0], plens[len(plens) // 2], plens[-1]],
           "answer_tokens": [lens[0], lens[len(lens) // 2], lens[-1]], "max_new_tokens": a.new,
           "ours_tokens_per_s": o, "transformers_tokens_per_s": h, "ratio": o / h,
           "ours_static_batches_tokens_per_s": statistics.median(st_rates),
           "continuous_over_static": o / statistics.median(st_rates),
           "rounds": a.rounds, "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res, indent=2))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
