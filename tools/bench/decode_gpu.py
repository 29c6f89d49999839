"""GPU decoding (issue 18 item 5, issue 20): `asclepius generate --device cuda` on a small random
model against `--device cpu` and against transformers' `generate` on the same GPU.

1. Greedy ids: ours on the GPU in fp32 against ours on the CPU in fp32 (expected equal, answer
   for answer) and in bf16 (reported: answers identical, and the mean share of each answer
   before its first differing id); also transformers' fp32 greedy ids on the GPU against ours
   (reported).
2. Speed: ours with --dtype bf16 against transformers' generate with the model in bf16, same
   GPU, same prompts (Asclepius prompts over synthetic notes, ids from our tokenizer), same
   batch size (transformers' static batches hold the prompts sorted by length, as ours do), the
   same number of new tokens (neither stops at EOS: --ignore-eos, min_new_tokens). Tokens/s =
   generated tokens / time inside generate (ours: --stats-json, after its one-token CUDA
   warm-up; transformers: after one warm-up batch, synchronised). Median over --rounds.

--device cpu runs the same on the CPU (a smoke test of the script where no GPU is).

Usage: decode_gpu.py --bin build/bin/asclepius [--device cuda] [--preset small] [--prompts 32]
                     [--new 64] [--batch 8] [--rounds 2] [--threads 8] [--json out.json]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from decode import PRESETS


def first_difference_share(a, b):
    """The share of answer a before its first id that differs from b (1 when equal)."""
    n = max(len(a), len(b), 1)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i / n
    return min(len(a), len(b)) / n


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def hf_generate(model, prompts, new, dev, batch):
    """transformers' greedy generate in static batches (pad 1, EOS 2): (answers, tokens, s)."""
    answers, toks, secs = [], 0, 0.0
    for i in range(0, len(prompts), batch):
        ps = prompts[i:i + batch]
        L = max(len(p) for p in ps)
        ids = torch.tensor([[1] * (L - len(p)) + p for p in ps], device=dev)
        mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in ps], device=dev)
        sync(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                 max_new_tokens=new, min_new_tokens=new, pad_token_id=1,
                                 eos_token_id=2)
        sync(dev)
        secs += time.perf_counter() - t0
        toks += (out.shape[1] - L) * len(ps)
        answers += out[:, L:].tolist()
    return answers, toks, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    run = lambda *x: subprocess.run([a.bin, *x], check=True, capture_output=True, text=True)
    res = {"device": a.device, "preset": a.preset, "prompts": a.prompts, "new_tokens": a.new,
           "batch": a.batch, "rounds": a.rounds, "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d")}
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(dev)
    with tempfile.TemporaryDirectory() as d:
        run("synth-notes", "--count", str(a.prompts), "--seed", "5", "--out", f"{d}/notes")
        run("tokenizer", "train", "--input", f"{d}/notes/train.csv", "--vocab-size", "1000",
            "--out", f"{d}/tok.model")
        torch.manual_seed(0)
        cfg = LlamaConfig(max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
                          eos_token_id=2, **PRESETS[a.preset])
        model = LlamaForCausalLM(cfg).float().eval()
        model.save_pretrained(f"{d}/hf", safe_serialization=True)

        def ours(device, dtype, tag):
            out, stats = f"{d}/ours-{tag}.jsonl", f"{d}/stats-{tag}.json"
            run("generate", "--model", f"{d}/hf", "--tokenizer", f"{d}/tok.model", "--input",
                f"{d}/notes/train.csv", "--output", out, "--with-ids", "--ignore-eos",
                "--max-new-tokens", str(a.new), "--batch-size", str(a.batch), "--threads",
                str(a.threads), "--device", device, "--dtype", dtype, "--stats-json", stats)
            rows = [json.loads(l) for l in open(out)]
            return json.load(open(stats)), [r["asclepius_ids"] for r in rows], \
                [r["prompt_ids"] for r in rows]

        # 1. Greedy ids.
        _, cpu32, prompts = ours("cpu", "fp32", "cpu-fp32")
        _, dev32, _ = ours(a.device, "fp32", f"{a.device}-fp32")
        _, dev16, _ = ours(a.device, "bf16", f"{a.device}-bf16")
        n = len(cpu32)
        fp32_equal = sum(x == y for x, y in zip(cpu32, dev32))
        bf16_equal = sum(x == y for x, y in zip(cpu32, dev16))
        bf16_share = statistics.mean(first_difference_share(x, y) for x, y in zip(dev16, cpu32))
        model.to(dev)
        hf32, _, _ = hf_generate(model, prompts, a.new, dev, a.batch)
        hf_equal = sum(x == y for x, y in zip(hf32, dev32))
        res["greedy"] = {"answers": n, "fp32_equal_to_cpu": fp32_equal,
                         "bf16_equal_to_cpu_fp32": bf16_equal,
                         "bf16_mean_share_before_first_difference": bf16_share,
                         "transformers_fp32_equal_to_ours_fp32": hf_equal}
        print(f"greedy ids, {a.device} vs cpu: fp32 {fp32_equal}/{n} answers equal; bf16 "
              f"{bf16_equal}/{n} equal to cpu fp32 (on average {bf16_share:.0%} of an answer "
              f"before the first difference); transformers fp32 on {a.device}: {hf_equal}/{n} "
              f"equal to ours", flush=True)

        # 2. Speed in bf16, the same prompts in batches of the same size.
        model.to(dtype=torch.bfloat16)
        by_length = sorted(prompts, key=len)
        hf_generate(model, by_length[:a.batch], 4, dev, a.batch)  # warm-up
        o_rates, h_rates = [], []
        for r in range(a.rounds):
            s, _, _ = ours(a.device, "bf16", f"speed-{r}")
            o_rates.append(s["tokens"] / s["seconds"])
            _, h_toks, h_secs = hf_generate(model, by_length, a.new, dev, a.batch)
            assert s["tokens"] == h_toks, (s["tokens"], h_toks)
            h_rates.append(h_toks / h_secs)
        o, h = statistics.median(o_rates), statistics.median(h_rates)
        res["bf16_speed"] = {"ours_tokens_per_s": o, "transformers_tokens_per_s": h,
                             "ratio": o / h, "prompt_tokens_mean": statistics.mean(map(len, prompts))}
        print(f"bf16 on {a.device}, batch {a.batch}: asclepius {o:8.1f} tok/s   transformers "
              f"{h:8.1f} tok/s   ratio {o / h:.2f}x  ({n} prompts of ~"
              f"{res['bf16_speed']['prompt_tokens_mean']:.0f} tokens, {a.new} new, {a.preset})",
              flush=True)
    print(json.dumps(res, indent=2))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)
    return 0 if fp32_equal == n else 1


if __name__ == "__main__":
    sys.exit(main())
