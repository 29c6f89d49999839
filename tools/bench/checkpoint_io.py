"""Checkpoint save and load throughput against a raw sequential write and read of the same number
of bytes on the same disk (dd), in the same run.

A LLaMA of about 216 M parameters (hidden 1024, 12 layers, vocab 32000: a checkpoint of 2.6 GB of
fp32 master weights and AdamW moments) trains one step and saves (stopped as by SIGTERM); a second
run resumes from that checkpoint (load). Our save = shards written and fsynced, hashed, manifest, rename, `latest`;
load = the resumed run's reads of the state. dd writes the same byte count with conv=fsync and
reads it back. Two dd writes: from /dev/zero (the classic figure), and of random bytes staged in
/dev/shm (incompressible, like a checkpoint: on our VM's virtual disk zeros write measurably
faster than real data, so both are reported). The same save with checkpoint.async=true reports the training pause (the copy-out). Before every read the page cache is dropped when the machine allows it (root,
/proc/sys/vm/drop_caches writable); otherwise both reads come from a warm cache, as reported.

Usage: checkpoint_io.py --bin build/bin/asclepius [--dir /var/tmp/ckbench] [--ranks 1] [--rounds 3]
                        [--json out.json]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def train(a, run, resume, extra=()):
    cmd = [a.bin, "train", os.path.join(ROOT, "recipes/demo/tiny.yaml"), "model.preset=small",
           "model.hidden_size=1024", "model.num_hidden_layers=12", "model.intermediate_size=2816",
           "model.num_attention_heads=16", "model.num_key_value_heads=16", "data.seq_len=16",
           "data.demo_samples=64", "train.global_batch_size=2", "train.micro_batch_size=1",
           "train.max_steps=2", "checkpoint.every_steps=0",
           f"checkpoint.dir={run}", "logging.tensorboard=false", "logging.progress=false",
           f"checkpoint.resume={'auto' if resume else 'never'}", *extra]
    if a.ranks > 1:
        cmd = ["mpirun", "-np", str(a.ranks), "--oversubscribe", "--bind-to", "none"] + cmd + \
              ["parallel.mode=fsdp"]
    # The first run stops after step 1 as a preemption would (saving); the second resumes it.
    if not resume and not extra:
        cmd += ["--stop-after-step", "1"]
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if p.returncode != (0 if resume or extra else 143):
        raise SystemExit(p.stderr)
    return p.stderr


def dd(args):
    t0 = time.perf_counter()
    subprocess.run(["dd"] + args, check=True, capture_output=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--dir", default="/var/tmp/asclepius-ckbench")
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    rounds = []
    shm = "/dev/shm/asclepius-ckbench-random.bin"
    for _ in range(a.rounds):  # ours, then dd, alternating; medians reported
        shutil.rmtree(a.dir, ignore_errors=True)
        os.makedirs(a.dir)
        run = os.path.join(a.dir, "run")
        log = train(a, run, resume=False)
        save_s = float(re.search(r"saved \S+ in ([0-9.]+) s", log).group(1))
        step = os.path.join(run, open(os.path.join(run, "latest")).read().strip())
        nbytes = sum(os.path.getsize(os.path.join(step, f)) for f in os.listdir(step))
        cold = drop_caches()
        log = train(a, run, resume=True)  # loads step 1, trains step 2, saves again
        loads = [(int(b), float(s)) for b, s in
                 re.findall(r"read (\d+) bytes of checkpoint state in ([0-9.]+) s", log)]
        read_bytes = sum(b for b, _ in loads)
        load_s = max(s for _, s in loads)
        shutil.rmtree(run)
        blob = os.path.join(a.dir, "dd.bin")
        mib = (nbytes + (1 << 20) - 1) >> 20
        dd_write_s = dd(["if=/dev/zero", f"of={blob}", "bs=1M", f"count={mib}", "conv=fsync"])
        if not os.path.exists(shm):
            with open(shm, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))
        os.remove(blob)
        drop_caches()
        dd_random_s = dd([f"if={shm}", f"of={blob}", "bs=1M", "conv=fsync"])
        drop_caches()
        dd_read_s = dd([f"if={blob}", "of=/dev/null", "bs=1M"])
        dd_bytes = mib << 20
        # The same save made asynchronously (checkpoint.async): the pause is the copy-out.
        shutil.rmtree(os.path.join(a.dir, "arun"), ignore_errors=True)
        alog = train(a, os.path.join(a.dir, "arun"), resume=False,
                     extra=("checkpoint.async=true", "checkpoint.every_steps=1"))
        pause_s = float(re.search(r"training paused ([0-9.]+) s", alog).group(1))
        shutil.rmtree(os.path.join(a.dir, "arun"))
        rounds.append({"save_s": save_s, "async_pause_s": pause_s,
                       "save_GBps": nbytes / save_s / 1e9, "dd_write_GBps": dd_bytes / dd_write_s / 1e9,
                       "dd_random_write_GBps": dd_bytes / dd_random_s / 1e9,
                       "load_GBps": read_bytes / load_s / 1e9, "dd_read_GBps": dd_bytes / dd_read_s / 1e9})
    os.remove(shm)
    med = lambda k: statistics.median(r[k] for r in rounds)
    out = {"checkpoint_bytes": nbytes, "load_bytes": read_bytes, "ranks": a.ranks,
           "page_cache_dropped_before_reads": cold, "rounds": rounds,
           **{k: med(k) for k in ("save_s", "async_pause_s", "save_GBps", "dd_write_GBps",
                                  "dd_random_write_GBps", "load_GBps", "dd_read_GBps")}}
    out["save_vs_dd"] = out["save_GBps"] / out["dd_write_GBps"]
    out["save_vs_dd_random"] = out["save_GBps"] / out["dd_random_write_GBps"]
    out["load_vs_dd"] = out["load_GBps"] / out["dd_read_GBps"]
    print(f"checkpoint {nbytes / 1e9:.2f} GB on {a.ranks} rank(s); page cache dropped before reads: {cold}; "
          f"median of {a.rounds} rounds")
    print(f"save  {out['save_GBps']:.2f} GB/s   dd write (conv=fsync) {out['dd_write_GBps']:.2f} GB/s   ratio {out['save_vs_dd']:.2f}")
    print(f"      dd write of random bytes {out['dd_random_write_GBps']:.2f} GB/s   ratio {out['save_vs_dd_random']:.2f}")
    print(f"load  {out['load_GBps']:.2f} GB/s   dd read                {out['dd_read_GBps']:.2f} GB/s   ratio {out['load_vs_dd']:.2f}")
    print(f"async save: training paused {out['async_pause_s']:.2f} s (copy-out) instead of {out['save_s']:.2f} s")
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)
    shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
