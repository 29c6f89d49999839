"""Reads a training checkpoint's state in Python, independently of our C++ reader.

Format 2 (one shard per rank): each shard-*.safetensors holds 1-D tensors named
KIND:NAME:BEGIN:END (elements [BEGIN, END) of parameter NAME flattened) and a `shapes` metadata
entry; the slices of all shards are put back together and checked to cover every element once.
Format 1 (earlier): model.safetensors + optimizer.safetensors (NAME.exp_avg, NAME.exp_avg_sq).
load(step_dir) -> {"master": {name: array}, "exp_avg": {...}, "exp_avg_sq": {...}[, "param"]}
"""
import glob
import json
import os

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def load(step_dir):
    shards = sorted(glob.glob(os.path.join(step_dir, "shard-*-of-*.safetensors")))
    if not shards:
        w = load_file(os.path.join(step_dir, "model.safetensors"))
        o = load_file(os.path.join(step_dir, "optimizer.safetensors"))
        return {"master": w,
                "exp_avg": {n: o[n + ".exp_avg"] for n in w},
                "exp_avg_sq": {n: o[n + ".exp_avg_sq"] for n in w}}
    parts, shapes = {}, {}
    for path in shards:
        with safe_open(path, framework="pt") as f:
            shapes.update(json.loads(f.metadata()["shapes"]))
            for key in f.keys():
                kind, name, b, e = key.split(":")
                t = f.get_tensor(key).float().numpy() if kind == "param" else f.get_tensor(key).numpy()
                parts.setdefault(kind, {}).setdefault(name, []).append((int(b), int(e), t))
    out = {}
    for kind, by_name in parts.items():
        out[kind] = {}
        for name, pieces in by_name.items():
            pieces.sort(key=lambda p: p[0])
            at = 0
            for b, e, t in pieces:
                assert b == at and t.size == e - b, f"{kind} {name}: slice [{b},{e}) after {at}"
                at = e
            full = np.concatenate([t for _, _, t in pieces])
            assert full.size == int(np.prod(shapes[name])), f"{kind} {name}: {full.size} elements"
            out[kind][name] = full.reshape(shapes[name])
    return out
