"""Fused AdamW step on the CPU: ours (bench_fused_adamw) against torch.optim.AdamW in its
foreach and fused variants on the same 100M-element fp32 shard, plus our GB/s against a copy of
the same bytes, in the same run. Best of STEPS timed steps after one warm-up, each side.

Usage: fused_adamw.py --bench build/bin/bench_fused_adamw [--numel 100000000] [--steps 5] [--json out]
"""
import argparse
import json
import os
import subprocess
import time

import torch


def torch_step_s(n, steps, **variant):
    p = torch.nn.Parameter(torch.randn(n))
    p.grad = torch.randn(n)
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, **variant)
    best = 1e30
    for s in range(steps + 1):
        t0 = time.perf_counter()
        opt.step()
        dt = time.perf_counter() - t0
        if s > 0:
            best = min(best, dt)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--numel", type=int, default=100_000_000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    ours = json.loads(subprocess.run([a.bench, str(a.numel), str(a.steps)], check=True, capture_output=True,
                                     text=True).stdout.strip().splitlines()[-1])
    foreach = torch_step_s(a.numel, a.steps, foreach=True)
    fused = torch_step_s(a.numel, a.steps, fused=True)
    res = dict(ours, bench="fused_adamw_cpu", torch=torch.__version__, torch_threads=torch.get_num_threads(),
               torch_foreach_step_s=foreach, torch_fused_step_s=fused,
               speedup_vs_foreach=foreach / ours["ours_step_s"], speedup_vs_fused=fused / ours["ours_step_s"],
               fraction_of_copy=ours["ours_GBps"] / ours["copy_GBps"],
               fraction_of_inplace=ours["ours_GBps"] / ours["inplace_GBps"], date=time.strftime("%Y-%m-%d"),
               machine=f"{os.cpu_count()} cpus")
    print(json.dumps(res, indent=2))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
