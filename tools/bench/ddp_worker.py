"""One rank of the peer for ddp_step.py: transformers' LlamaForCausalLM under PyTorch
DistributedDataParallel (gloo), torch.optim.AdamW, clip_grad_norm_, started by mpirun (ranks from
OpenMPI's environment). Prints one JSON line (rank 0) with the per-step times."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

from train_step import PRESETS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--port", default="29533")
    a = ap.parse_args()
    rank, world = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", a.port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(**PRESETS[a.preset], attn_implementation="sdpa")
    model = torch.nn.parallel.DistributedDataParallel(LlamaForCausalLM(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    local = a.global_batch // world
    times = []
    for step in range(a.steps):
        ids = torch.randint(0, cfg.vocab_size, (local, a.seq), generator=torch.Generator().manual_seed(step * 97 + rank))
        dist.barrier()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        print(json.dumps({"step_s": times}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
