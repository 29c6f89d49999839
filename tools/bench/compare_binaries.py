"""Step time of two builds of asclepius on the same workload, measured in the same run with the
sides alternating: the check that a change meant not to alter speed (the trainer's redesign,
issue 17) did not. Reports median seconds per step of each side and the ratio new / old.

Usage: compare_binaries.py --old OLD_BIN --new NEW_BIN [--rounds 3] [--json out.json]
Workloads (the PERFORMANCE.md step benchmarks' shapes): one process, preset small, sequence 512,
batch 4, fp32, 2 threads (and the same in bf16 with 2 micro-batches, where the one-process path
accumulates gradients in fp32); and 2 ranks under mpirun in fsdp, sequence 256, batch 8, 1 thread
each.
The first 2 steps of each launch are dropped; the median of the rest is used.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile

RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "recipes", "demo",
                      "tiny.yaml")
WORKLOADS = {
    "one process (small, seq 512, batch 4, 2 threads)": (1, [
        "model.preset=small", "data.seq_len=512", "data.demo_samples=64",
        "train.global_batch_size=4", "train.micro_batch_size=4", "train.max_steps=8",
        "train.threads=2"]),
    "one process bf16 (small, seq 512, batch 4 in 2 micro-batches, 2 threads)": (1, [
        "model.preset=small", "data.seq_len=512", "data.demo_samples=64",
        "train.global_batch_size=4", "train.micro_batch_size=2", "train.max_steps=8",
        "train.threads=2", "train.dtype=bf16"]),
    "2 ranks fsdp (small, seq 256, batch 8, 1 thread each)": (2, [
        "model.preset=small", "data.seq_len=256", "data.demo_samples=128",
        "train.global_batch_size=8", "train.micro_batch_size=4", "train.max_steps=10",
        "train.threads=1", "parallel.mode=fsdp", "parallel.activation_checkpointing=false"]),
}


def step_times(binary, ranks, overrides):
    with tempfile.TemporaryDirectory() as run:
        cmd = [binary, "train", RECIPE, *overrides, "train.lr=1e-4", "train.warmup_ratio=0",
               f"checkpoint.dir={run}", "checkpoint.at_end=false", "logging.progress=false",
               "logging.tensorboard=false"]
        if ranks > 1:
            cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none"] + cmd
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMP_NUM_THREADS="2" if ranks == 1 else "1")
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return [r["step_s"] for r in rows[2:]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--only", help="run only the workloads whose name contains this")
    a = ap.parse_args()
    out = {"machine": platform.processor() or platform.machine(), "workloads": {}}
    for name, (ranks, overrides) in WORKLOADS.items():
        if a.only and a.only not in name:
            continue
        med = {"old": [], "new": []}
        for r in range(a.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for side in order:
                t = step_times(a.old if side == "old" else a.new, ranks, overrides)
                med[side].append(statistics.median(t))
        old, new = statistics.median(med["old"]), statistics.median(med["new"])
        out["workloads"][name] = {"old_s": med["old"], "new_s": med["new"], "ratio": new / old}
        print(f"{name}: old {' / '.join(f'{x:.3f}' for x in med['old'])} s, "
              f"new {' / '.join(f'{x:.3f}' for x in med['new'])} s; "
              f"median new/old {new / old:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
