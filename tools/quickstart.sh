#!/usr/bin/env bash
# Fresh machine to a trained model: set-up, then a tiny LLaMA trains on the built-in demo token
# stream (the loss falls from ~ln 256 = 5.5), then the run is exported as a Hugging Face model.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/tools/setup.sh"
run=${1:-runs/quickstart}
rm -rf "$run"
build/bin/asclepius train recipes/demo/tiny.yaml checkpoint.dir="$run" train.max_steps=60
echo "-- loss every 10 steps (metrics.jsonl):"
"$(cat .venv-path)/bin/python" - "$run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["step"] == 1 or r["step"] % 10 == 0:
        print(f"  step {r['step']:3d}  loss {r['loss']:.4f}  lr {r['lr']:.2e}")
print(f"  loss fell from {rows[0]['loss']:.3f} to {rows[-1]['loss']:.3f}")
PY
build/bin/asclepius export "$run" --out "$run/hf"
echo "Hugging Face model: $run/hf (AutoModelForCausalLM.from_pretrained loads it)"
