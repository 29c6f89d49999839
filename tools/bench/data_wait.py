"""Fraction of training-step time spent waiting for data: trains the tiny demo recipe on an HDF5
corpus of synthetic notes (the prefetch thread reads the next global batch during each step) and
sums metrics.jsonl's data_wait_s over step_s, excluding step 1 (nothing to overlap with yet).

Usage: data_wait.py --bin build/bin/asclepius [--notes 20000] [--steps 60] [--json out]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--notes", type=int, default=20000)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--json")
    a = p.parse_args()
    root = os.path.join(os.path.dirname(__file__), "../..")
    with tempfile.TemporaryDirectory() as d:
        run = lambda *c: subprocess.run([a.bin, *c], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run("synth-notes", "--count", str(a.notes), "--seed", "1", "--out", d)
        run("tokenizer", "train", "--input", f"{d}/train.csv", "--vocab-size", "4000", "--out", f"{d}/tok.model")
        run("corpus", "build", "--input", f"{d}/train.csv", "--tokenizer", f"{d}/tok.model", "--out", f"{d}/c.h5")
        run("train", f"{root}/recipes/demo/notes.yaml", f"data.corpus={d}/c.h5", f"data.tokenizer={d}/tok.model",
            "model.vocab_size=4000", f"train.max_steps={a.steps}", f"checkpoint.dir={d}/run", "logging.progress=false")
        rows = [json.loads(l) for l in open(f"{d}/run/metrics.jsonl")][1:]
    wait = sum(r["data_wait_s"] for r in rows)
    step = sum(r["step_s"] for r in rows)
    res = {"bench": "data_wait", "steps": len(rows), "data_wait_s": wait, "step_s": step,
           "fraction": wait / step, "max_wait_s": max(r["data_wait_s"] for r in rows),
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res, indent=2))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
