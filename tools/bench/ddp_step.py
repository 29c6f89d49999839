"""Two-rank data-parallel training step on CPU: asclepius (mpirun, parallel.mode ddp and fsdp)
against PyTorch DistributedDataParallel (gloo) training transformers' LlamaForCausalLM with the same
config, global batch, sequence and threads per rank, in the same run; plus fsdp's overhead against
our ddp. Median step time after `--warmup` steps, then the median over `--rounds` alternating rounds; the peer is run with glibc defaults (as people
run it) and with the host-memory settings we apply at start-up (MALLOC_* variables).

Usage: ddp_step.py --bin build/bin/asclepius [--preset small] [--seq 256] [--global-batch 8]
                   [--steps 8] [--warmup 2] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MPI = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none"]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
TUNED = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_TOP_PAD_": str(64 << 20)}


def ours(a, mode):
    with tempfile.TemporaryDirectory() as run:
        cmd = MPI + [a.bin, "train", os.path.join(ROOT, "recipes/demo/tiny.yaml"), f"model.preset={a.preset}",
                     f"data.seq_len={a.seq}", f"data.demo_samples={a.global_batch * (a.steps + 1)}",
                     f"train.global_batch_size={a.global_batch}", f"train.micro_batch_size={a.global_batch // 2}",
                     f"train.max_steps={a.steps}", "train.threads=1", "train.lr=1e-4", "train.warmup_ratio=0",
                     f"parallel.mode={mode}", "parallel.activation_checkpointing=false",
                     f"checkpoint.dir={run}", "checkpoint.every_steps=0",
                     "logging.progress=false", "logging.tensorboard=false"]
        subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
        rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return statistics.median(r["step_s"] for r in rows[a.warmup:])


def peer(a, tuned):
    env = dict(ENV, PYTHONPATH=HERE, **(TUNED if tuned else {}))
    cmd = MPI + [sys.executable, os.path.join(HERE, "ddp_worker.py"), "--preset", a.preset, "--seq", str(a.seq),
                 "--global-batch", str(a.global_batch), "--steps", str(a.steps)]
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    times = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])["step_s"]
    return statistics.median(times[a.warmup:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    sides = {"ours_ddp_s": lambda: ours(a, "ddp"), "ours_fsdp_s": lambda: ours(a, "fsdp"),
             "torch_ddp_gloo_s": lambda: peer(a, False), "torch_ddp_gloo_tuned_s": lambda: peer(a, True)}
    samples = {k: [] for k in sides}
    for _ in range(a.rounds):  # sides alternate within each round
        for k, f in sides.items():
            samples[k].append(f())
    res = {k: statistics.median(v) for k, v in samples.items()}
    res["samples"] = samples
    res.update(speedup_ddp=res["torch_ddp_gloo_s"] / res["ours_ddp_s"],
               speedup_fsdp=res["torch_ddp_gloo_s"] / res["ours_fsdp_s"],
               speedup_ddp_vs_tuned=res["torch_ddp_gloo_tuned_s"] / res["ours_ddp_s"],
               speedup_fsdp_vs_tuned=res["torch_ddp_gloo_tuned_s"] / res["ours_fsdp_s"],
               fsdp_overhead=res["ours_fsdp_s"] / res["ours_ddp_s"] - 1, preset=a.preset, seq=a.seq,
               global_batch=a.global_batch, ranks=2, threads_per_rank=1, date=time.strftime("%Y-%m-%d"))
    print(json.dumps(res, indent=2))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
