"""Checks a directory written by `asclepius export`: transformers loads it with
AutoModelForCausalLM, the stored dtype is as asked, generation_config carries bos/eos, a forward
pass runs, and every weight equals the source checkpoint's (fp32) after rounding to that dtype.
Usage: check_hf_dir.py EXPORT_DIR CHECKPOINT_DIR DTYPE
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt_state  # noqa: E402
from transformers import AutoModelForCausalLM, GenerationConfig

out, ckpt, dtype_name = sys.argv[1], sys.argv[2], sys.argv[3]
dtype = getattr(torch, dtype_name)
cfg = json.load(open(os.path.join(out, "config.json")))
assert cfg["architectures"] == ["LlamaForCausalLM"], cfg
assert cfg["torch_dtype"] == dtype_name, cfg["torch_dtype"]
gen = GenerationConfig.from_pretrained(out)
assert gen.bos_token_id == 1 and gen.eos_token_id == 2, gen
model = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
src = {n: torch.from_numpy(t) for n, t in ckpt_state.load(ckpt)["master"].items()}
state = model.state_dict()
for name, t in src.items():
    assert name in state, name
    assert torch.equal(state[name], t.to(dtype)), name
with torch.no_grad():
    logits = model(input_ids=torch.tensor([[1, 5, 9, 2]])).logits
assert torch.isfinite(logits.float()).all()
print(f"{out}: {len(src)} tensors equal the checkpoint in {dtype_name}; forward ok")
