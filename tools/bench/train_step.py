"""Training-step throughput: asclepius (C++/libtorch) vs Hugging Face transformers'
LlamaForCausalLM + torch.optim.AdamW in PyTorch eager, same model, batch, sequence, thread count
and optimizer settings, measured in the same run (alternating rounds), reported as ratios.

Four measurements per round:
  asclepius           as shipped (train.cache_host_memory: true, see trainer/common/host_memory.h)
  asclepius_nocache   train.cache_host_memory=false (glibc defaults), the ablation
  hf_eager            transformers + torch.optim.AdamW as people run it (glibc defaults)
  hf_eager_tuned      the same with the host-memory settings we apply, through glibc's
                      MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1GiB MALLOC_TOP_PAD_=64MiB

Usage: train_step.py --bin build/bin/asclepius [--preset small] [--seq 512] [--batch 4]
                     [--threads N] [--steps 6] [--rounds 2] [--json out.json]
Tokens/s counts every input token of the global batch per optimizer step (fwd + bwd + AdamW).
The first `--warmup` steps of each measurement are dropped; the median of the rest is used.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {  # must match trainer/model/llama_config.cpp
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                  intermediate_size=1376, vocab_size=32000, rms_norm_eps=1e-5, rope_theta=1e4,
                  max_position_embeddings=2048),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=176, vocab_size=256, rms_norm_eps=1e-5, rope_theta=1e4,
                 max_position_embeddings=512),
}


TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
             "MALLOC_TOP_PAD_": str(64 << 20)}


def ours(args, steps, cache=True):
    with tempfile.TemporaryDirectory() as run:
        cmd = [args.bin, "train", args.recipe, f"model.preset={args.preset}", f"data.seq_len={args.seq}",
               f"data.demo_samples={args.batch * (steps + 1)}", f"train.global_batch_size={args.batch}",
               f"train.micro_batch_size={args.batch}", f"train.max_steps={steps}",
               f"train.threads={args.threads}", "train.lr=1e-4", "train.warmup_ratio=0",
               f"checkpoint.dir={run}", "logging.progress=false", "logging.tensorboard=false",
               f"train.cache_host_memory={'true' if cache else 'false'}"]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return [r["tokens_per_s"] for r in rows[args.warmup:]]


def hf(args, steps, tuned=False):
    """Runs hf_worker in a fresh interpreter (glibc reads MALLOC_* only at start-up)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if tuned:
        env.update(TUNED_ENV)
    cmd = [sys.executable, __file__, "--hf-worker", "--bin", "-", "--preset", args.preset,
           "--seq", str(args.seq), "--batch", str(args.batch), "--threads", str(args.threads),
           "--steps", str(steps), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def hf_worker(args, steps):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(**PRESETS[args.preset], tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
    rates = []
    for k in range(steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rates.append(ids.numel() / (time.perf_counter() - t0))
    return rates[args.warmup:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--recipe", default=os.path.join(os.path.dirname(__file__), "../../recipes/demo/tiny.yaml"))
    p.add_argument("--preset", default="small")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.hf_worker:
        print(json.dumps(hf_worker(args, args.steps)))
        return
    runs = {"asclepius": [], "asclepius_nocache": [], "hf_eager": [], "hf_eager_tuned": []}
    for _ in range(args.rounds):  # alternate so drift (thermal, other load) hits every side
        runs["asclepius"] += ours(args, args.steps)
        runs["hf_eager"] += hf(args, args.steps)
        runs["asclepius_nocache"] += ours(args, args.steps, cache=False)
        runs["hf_eager_tuned"] += hf(args, args.steps, tuned=True)
    res = {"bench": "train_step", "preset": args.preset, "seq_len": args.seq, "batch": args.batch,
           "threads": args.threads, "steps_measured_each": len(runs["asclepius"]),
           "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.processor() or '?'}",
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    for k, v in runs.items():
        res[f"{k}_tokens_per_s"] = statistics.median(v)
    a = res["asclepius_tokens_per_s"]
    res["ratio_vs_hf_eager"] = a / res["hf_eager_tokens_per_s"]
    res["ratio_vs_hf_eager_tuned"] = a / res["hf_eager_tuned_tokens_per_s"]
    res["ratio_nocache_vs_hf_eager"] = res["asclepius_nocache_tokens_per_s"] / res["hf_eager_tokens_per_s"]
    print(json.dumps(res, indent=2))
    if args.json:
        json.dump(res, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
