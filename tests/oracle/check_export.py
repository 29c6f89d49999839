"""Loads a directory written by `asclepius export` / save_hf_dir with transformers'
AutoModelForCausalLM and checks its logits against ours (ours.safetensors: input_ids, logits).
Usage: check_export.py MODEL_DIR OURS.safetensors [atol]
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

model_dir, ours_path = sys.argv[1], sys.argv[2]
atol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
ours = load_file(ours_path)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                             attn_implementation="eager").eval()
with torch.no_grad():
    logits = model(input_ids=ours["input_ids"]).logits.float()
diff = (logits - ours["logits"]).abs().max().item()
print(f"{model_dir}: {type(model).__name__} max |logits - ours| = {diff:.3e} (atol {atol})")
sys.exit(0 if diff <= atol else 1)
