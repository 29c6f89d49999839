#!/usr/bin/env bash
# Fresh machine to a trained model, the Asclepius stage-one path in miniature: set-up; synthetic
# discharge summaries; a SentencePiece tokenizer trained on them; the HDF5 pretraining corpus; a
# tiny LLaMA trained on it (the falling loss is printed); the result exported for transformers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
bin=build/bin/asclepius
run=runs/quickstart
data=$run/data
rm -rf "$run"
"$bin" synth-notes --count 2000 --seed 1 --out "$data"
"$bin" tokenizer train --input "$data/train.csv" --vocab-size 1000 --out "$data/tok.model" 2>/dev/null
"$bin" corpus build --input "$data/train.csv" --tokenizer "$data/tok.model" --out "$data/pretrain.h5"
"$bin" train recipes/demo/notes.yaml checkpoint.dir="$run/train"
echo "-- loss (metrics.jsonl):"
"$(cat .venv-path)/bin/python" - "$run/train/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["step"] == 1 or r["step"] % 20 == 0:
        print(f"  step {r['step']:3d}  loss {r['loss']:.4f}  lr {r['lr']:.2e}")
print(f"  loss fell from {rows[0]['loss']:.3f} to {rows[-1]['loss']:.3f} (ln 1000 = 6.908 is chance)")
PY
"$bin" export "$run/train" --out "$run/hf"
echo "Hugging Face model: $run/hf (AutoModelForCausalLM.from_pretrained loads it)"
