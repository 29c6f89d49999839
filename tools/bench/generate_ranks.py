"""Lines/s of `asclepius generate --input/--output` at 1, 2 and 4 ranks on one machine, the
cores divided between the ranks (--threads = cores / ranks, at least 1), same model, same input,
same settings, measured in the same run. Outputs are checked to be byte-identical across rank
counts.

Usage: generate_ranks.py --bin build/bin/asclepius [--notes 12] [--ranks 1,2,4]
                         [--max-new-tokens 48] [--batch-size 4] [--threads-per-rank K] [--json out]
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    p.add_argument("--notes", type=int, default=12)
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads-per-rank", type=int, default=0,
                   help="fixed threads per rank (default: the cores divided by the ranks)")
    p.add_argument("--json")
    a = p.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1")
    cores = os.cpu_count()
    q = lambda *c: subprocess.run(c, check=True, capture_output=True, env=env)  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        q(a.bin, "synth-notes", "--count", str(a.notes), "--seed", "2", "--questions-per-note", "1",
          "--out", f"{d}/sn")
        q(a.bin, "tokenizer", "train", "--input", f"{d}/sn/train.csv", "--vocab-size", "2000", "--out",
          f"{d}/tok.model")
        q(a.bin, "init", f"{a.src}/recipes/demo/tiny.yaml", "model.preset=small",
          "model.vocab_size=2000", "--out", f"{d}/m")
        res, outs = [], {}
        for n in [int(x) for x in a.ranks.split(",")]:
            threads = a.threads_per_rank or max(1, cores // n)
            cmd = [a.bin, "generate", "--model", f"{d}/m", "--tokenizer", f"{d}/tok.model", "--input",
                   f"{d}/sn/train.csv", "--output", f"{d}/out{n}.jsonl", "--batch-size",
                   str(a.batch_size), "--max-new-tokens", str(a.max_new_tokens), "--ignore-eos",
                   "--threads", str(threads)]
            if n > 1:
                cmd = ["mpirun", "--oversubscribe", "-np", str(n)] + cmd
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            dt = time.perf_counter() - t0
            outs[n] = open(f"{d}/out{n}.jsonl").read()
            lines = outs[n].count("\n")
            res.append({"ranks": n, "threads_per_rank": threads, "seconds": dt,
                        "lines_per_s": lines / dt})
        base = res[0]["lines_per_s"]
        for r in res:
            r["speedup"] = r["lines_per_s"] / base
        out = {"bench": "generate_ranks", "model": "small (58.6M)", "lines": lines,
               "max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size,
               "identical_outputs": len(set(outs.values())) == 1, "results": res,
               "machine": f"{platform.machine()} {cores} cpus", "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(out, indent=2))
        if a.json:
            json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
