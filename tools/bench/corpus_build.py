"""Corpus-build throughput: `asclepius corpus build --stage pretrain` vs the same corpus built with
Python's csv module + a Python tokenizer + h5py (chunked, Fletcher32), measured in the same run on
the same synthetic notes. Tokens/s = tokens written / wall time of the whole build (reading,
tokenising, writing; loading the tokenizer and process start included on both sides).

The tokenizer: by default a SentencePiece model trained on the notes, the peer `sentencepiece`
(batch encode on the same number of threads). With --hf-tokenizer DIR (e.g. the Llama 3.2
tokenizer.json unpacked by tools/setup.sh under <venv>/share/asclepius-fixtures/llama3.2) both
sides use that tokenizer.json, the peer Hugging Face `tokenizers` (Rust, batch encoding on all
threads: RAYON_NUM_THREADS = --threads).

Usage: corpus_build.py --bin build/bin/asclepius [--notes 20000] [--threads N] [--rounds 3]
                       [--hf-tokenizer DIR] [--json out]
"""
import argparse
import csv
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import sentencepiece as spm


def encode_sentencepiece(model, notes, threads):
    sp = spm.SentencePieceProcessor(model_file=model)
    return sp.encode(notes, num_threads=threads), sp.bos_id(), sp.eos_id()


def encode_hf(tokenizer_dir, notes, threads):
    from tokenizers import Tokenizer  # the Rust library behind PreTrainedTokenizerFast
    cfg = json.load(open(os.path.join(tokenizer_dir, "tokenizer_config.json")))
    tk = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    enc = getattr(tk, "encode_batch_fast", tk.encode_batch)  # no offsets: the fastest path
    ids = [e.ids for e in enc(notes, add_special_tokens=False)]
    return ids, tk.token_to_id(cfg["bos_token"]), tk.token_to_id(cfg["eos_token"])


def python_build(csv_path, model, out, threads, seed=0, hf=False):
    t0 = time.perf_counter()
    csv.field_size_limit(sys.maxsize)
    seen, notes = set(), []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            n = row["note"]
            if n not in seen:
                seen.add(n)
                notes.append(n.strip("\r\n"))
    random.Random(seed).shuffle(notes)
    ids, bos, eos = (encode_hf if hf else encode_sentencepiece)(model, notes, threads)
    lengths = np.array([len(x) + 2 for x in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.empty(offsets[-1], dtype=np.int32)
    for i, x in enumerate(ids):
        b = offsets[i]
        tokens[b] = bos
        tokens[b + 1:b + 1 + len(x)] = x
        tokens[b + 1 + len(x)] = eos
    with h5py.File(out, "w") as f:
        chunk = (min(len(tokens), 1 << 16),)
        f.create_dataset("tokens", data=tokens, chunks=chunk, fletcher32=True)
        f.create_dataset("doc_offsets", data=offsets, chunks=(min(len(offsets), 1 << 16),), fletcher32=True)
        f.attrs["num_tokens"] = len(tokens)
    return len(tokens), time.perf_counter() - t0


def ours_build(bin_, csv_path, model, out, threads):
    t0 = time.perf_counter()
    subprocess.run([bin_, "corpus", "build", "--input", csv_path, "--tokenizer", model, "--out", out,
                    "--threads", str(threads)], check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    with h5py.File(out, "r") as f:
        return int(f.attrs["num_tokens"]), dt


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--notes", type=int, default=20000)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hf-tokenizer", help="a directory with tokenizer.json + tokenizer_config.json")
    p.add_argument("--json")
    a = p.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([a.bin, "synth-notes", "--count", str(a.notes), "--seed", "1", "--out", d],
                       check=True, stdout=subprocess.DEVNULL)
        model = os.path.join(d, "tok.model")
        if a.hf_tokenizer:
            model = a.hf_tokenizer
        else:
            subprocess.run([a.bin, "tokenizer", "train", "--input", os.path.join(d, "train.csv"),
                            "--vocab-size", str(a.vocab), "--out", model], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        src = os.path.join(d, "train.csv")
        ours, peer = [], []
        for _ in range(a.rounds):
            n1, t1 = ours_build(a.bin, src, model, os.path.join(d, "ours.h5"), a.threads)
            n2, t2 = python_build(src, model, os.path.join(d, "py.h5"), a.threads, hf=bool(a.hf_tokenizer))
            assert n1 == n2, (n1, n2)  # the same corpus size (same notes, same tokenizer)
            ours.append(n1 / t1)
            peer.append(n2 / t2)
        res = {"bench": "corpus_build_pretrain", "tokenizer": "hf tokenizer.json" if a.hf_tokenizer else
               "sentencepiece", "notes": a.notes, "csv_bytes": os.path.getsize(src),
               "tokens": n1, "threads": a.threads, "rounds": a.rounds,
               "asclepius_tokens_per_s": statistics.median(ours),
               ("python_hf_tokenizers_h5py_tokens_per_s" if a.hf_tokenizer else
                "python_sentencepiece_h5py_tokens_per_s"): statistics.median(peer),
               "machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d")}
        res["ratio"] = res["asclepius_tokens_per_s"] / statistics.median(peer)
        print(json.dumps(res, indent=2))
        if a.json:
            json.dump(res, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
