"""Fused AdamW step on one GPU: ours (bench_fused_adamw_gpu) against torch.optim.AdamW(fused=True)
on the same fp32 shard, and our GB/s against the device-to-device copy of the same bytes, measured
in the same run. CUDA events, median of ITERS steps after warm-up, each side.

Usage: fused_adamw_gpu.py --bench build-gpu/bin/bench_fused_adamw_gpu [--numel 100000000] [--iters 20] [--json out]
"""
import argparse
import json
import subprocess
import time

import torch


def torch_step_ms(n, iters, **variant):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.rand(n, device="cuda") * 2 - 1)
    p.grad = torch.rand(n, device="cuda") * 2 - 1
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, **variant)
    for _ in range(3):
        opt.step()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        opt.step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    del opt, p
    torch.cuda.empty_cache()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--numel", type=int, default=100_000_000)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    ours = json.loads(subprocess.run([a.bench, str(a.numel), str(a.iters)], check=True, capture_output=True,
                                     text=True).stdout.strip().splitlines()[-1])
    fused = torch_step_ms(a.numel, a.iters, fused=True)
    foreach = torch_step_ms(a.numel, a.iters, foreach=True)
    res = dict(ours, bench="fused_adamw_gpu", torch=torch.__version__, torch_fused_ms=fused,
               torch_foreach_ms=foreach, speedup_vs_torch_fused=fused / ours["ours_ms"],
               speedup_vs_torch_foreach=foreach / ours["ours_ms"],
               fraction_of_copy=ours["ours_GBps"] / ours["copy_GBps"], date=time.strftime("%Y-%m-%d"))
    print(json.dumps(res, indent=2))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
