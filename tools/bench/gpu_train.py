"""Training throughput on one GPU: asclepius against the stack Asclepius used, same run.

Ours: `asclepius train` on a llama2-7b-shaped model (all 32 layers, or --layers N), bf16 compute
with fp32 master weights, fsdp at world size 1 under mpirun (NCCL), activation checkpointing, the
chunked LM-head loss, fused kernels; tokens/s and MFU from metrics.jsonl (median of the steps
after --warmup), the GPU peak from the caching allocator, and `asclepius plan`'s prediction of it.
Peer: transformers' LlamaForCausalLM of the same shape, fp32 parameters under bf16 autocast (as
the HF Trainer's bf16 mode), gradient checkpointing, torch.optim.AdamW(fused=True), the same
batch and sequence; tokens/s and torch.cuda.max_memory_allocated().

Usage: gpu_train.py --bin build-gpu/bin/asclepius [--layers 32] [--seq 2048] [--batch 1]
                    [--accum 1] [--steps 8] [--warmup 3] [--json out.json] [--profile DIR]
(--batch: sequences per micro-batch; --accum: micro-batches per optimizer step, both sides.)
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def overrides(a, run_dir):
    return ["model.preset=llama2-7b", f"model.num_hidden_layers={a.layers}",
            f"data.seq_len={a.seq}", "data.corpus=demo", f"data.demo_samples={a.batch * a.accum * (a.steps + 2)}",
            f"train.global_batch_size={a.batch * a.accum}", f"train.micro_batch_size={a.batch}",
            f"train.max_steps={a.steps}", "train.dtype=bf16", "train.device=cuda",
            f"train.loss_chunk_rows={min(a.seq, 2048)}", "train.lr=2e-5", "train.warmup_ratio=0",
            "parallel.mode=fsdp", "parallel.activation_checkpointing=true",
            "checkpoint.every_steps=0", "checkpoint.at_end=false",  # no 94 GB save at 7B
            f"checkpoint.dir={run_dir}", "logging.tensorboard=false",
            "logging.progress=false"]


def ours(a):
    run_dir = tempfile.mkdtemp(prefix="asc-gpu-train-")
    recipe = os.path.join(ROOT, "recipes/demo/tiny.yaml")
    plan = subprocess.run([a.bin, "plan", recipe, *overrides(a, run_dir), "--world-size", "1"],
                          capture_output=True, text=True, env=ENV)
    predicted = None
    m = re.search(r"peak as configured\s+([0-9.]+) GiB", plan.stdout)
    if m:
        predicted = float(m.group(1)) * 2**30
    t0 = time.time()
    # --profile: one more step, the last, under the profiler (left out of the figures)
    steps = a.steps + (1 if a.profile else 0)
    prof = [f"train.max_steps={steps}", f"logging.profile_start_step={steps}"] if a.profile else []
    p = subprocess.run(["mpirun", "-np", "1", a.bin, "train", recipe, *overrides(a, run_dir),
                        *prof, "checkpoint.resume=never"], capture_output=True, text=True, env=ENV)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    rows = [json.loads(l) for l in open(metrics)] if os.path.exists(metrics) else []
    trace = os.path.join(run_dir, "profile", "trace-rank0.json")
    if a.profile and os.path.exists(trace):
        shutil.move(trace, os.path.join(a.profile, "ours_trace.json"))
    shutil.rmtree(run_dir, ignore_errors=True)
    if len(rows) < steps:  # a failure after the last step still leaves every step's figures
        raise SystemExit(f"asclepius train failed (exit {p.returncode}, {len(rows)} of {steps} "
                         f"steps):\n{p.stderr[-3000:]}")
    steady = rows[a.warmup:a.steps] or rows
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
            "mfu": statistics.median(r.get("mfu", -1) for r in steady),
            "peak_bytes": max(r.get("device_peak_bytes", -1) for r in rows),
            "plan_peak_bytes": predicted, "wall_s": time.time() - t0, "returncode": p.returncode,
            "plan": plan.stdout}


def peer(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                      num_hidden_layers=a.layers, num_attention_heads=32, num_key_value_heads=32,
                      max_position_embeddings=4096, rms_norm_eps=1e-5, attn_implementation="sdpa")
    torch.manual_seed(0)
    torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda"):  # initialised on the GPU: a 7B model made on the host takes minutes
        model = LlamaForCausalLM(cfg)
    model.gradient_checkpointing_enable()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    ids = torch.randint(0, 256, (a.batch, a.seq), device="cuda")
    times = []

    def step():
        for _ in range(a.accum):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss / a.accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    if a.profile:  # one more step under torch.profiler, left out of the figures
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            step()
            torch.cuda.synchronize()
        prof.export_chrome_trace(os.path.join(a.profile, "peer_trace.json"))
    steady = times[a.warmup:] or times
    return {"tokens_per_s": a.batch * a.accum * a.seq / statistics.median(steady),
            "peak_bytes": torch.cuda.max_memory_allocated()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per step")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--profile", metavar="DIR",
                    help="profile one extra step of each side: DIR/{ours,peer}_trace.json and "
                         "their summaries (tools/bench/trace_summary.py) in the JSON")
    ap.add_argument("--json")
    a = ap.parse_args()
    out = {"layers": a.layers, "seq": a.seq, "batch": a.batch, "accum": a.accum, "ours": ours(a)}
    if not a.skip_peer:
        try:
            out["peer"] = peer(a)
            out["speedup"] = out["ours"]["tokens_per_s"] / out["peer"]["tokens_per_s"]
        except Exception as e:  # e.g. out of memory: reported, not hidden
            out["peer"] = {"error": repr(e)[:500]}
    if a.profile:
        import trace_summary
        out["profile"] = {}
        for side in ("ours", "peer"):
            t = os.path.join(a.profile, f"{side}_trace.json")
            if os.path.exists(t):
                out["profile"][side] = trace_summary.summarize(t, top=8)
                trace_summary.print_summary(out["profile"][side], label=f"{side}: ")
    o = out["ours"]
    if o["plan_peak_bytes"] and o["peak_bytes"] > 0:
        out["plan_error"] = o["plan_peak_bytes"] / o["peak_bytes"] - 1
    print(json.dumps({k: v for k, v in out.items() if k != "ours"} |
                     {"ours": {k: v for k, v in o.items() if k != "plan"}}, indent=1))
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
