"""Compares training runs against a reference run: per-step losses (metrics.jsonl), and the final
checkpoint's master weights and AdamW moments (read by tests/oracle/ckpt_state.py),
each within a relative tolerance (||a - b|| / ||b|| per tensor). Exit 1 on any difference.

Usage: compare_runs.py --rtol 1e-5 REF_RUN RUN [RUN ...]
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
import ckpt_state  # noqa: E402


def losses(run):
    return [json.loads(line)["loss"] for line in open(os.path.join(run, "metrics.jsonl"))]


def final_step(run):
    name = open(os.path.join(run, "latest")).read().strip()
    d = os.path.join(run, name)
    s = ckpt_state.load(d)
    moments = {f"{n}.{k}": t for k in ("exp_avg", "exp_avg_sq") for n, t in s[k].items()}
    return s["master"], moments


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("ref")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    ref_l = losses(a.ref)
    ref_w, ref_o = final_step(a.ref)
    bad = 0
    for run in a.runs:
        l = losses(run)
        if len(l) != len(ref_l):
            print(f"FAIL {run}: {len(l)} steps, reference {len(ref_l)}")
            bad += 1
            continue
        worst_loss = max(abs(x - y) / abs(y) for x, y in zip(l, ref_l))
        w, o = final_step(run)
        worst_w = worst_o = 0.0
        for name, ref in ref_w.items():
            worst_w = max(worst_w, float(np.linalg.norm(w[name] - ref) / (np.linalg.norm(ref) + 1e-30)))
        for name, ref in ref_o.items():
            worst_o = max(worst_o, float(np.linalg.norm(o[name] - ref) / (np.linalg.norm(ref) + 1e-30)))
        ok = max(worst_loss, worst_w, worst_o) <= a.rtol and set(w) == set(ref_w) and set(o) == set(ref_o)
        print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(run)}: losses {worst_loss:.2e}, weights {worst_w:.2e}, "
              f"moments {worst_o:.2e} (max relative difference; tolerance {a.rtol:g})")
        bad += not ok
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
