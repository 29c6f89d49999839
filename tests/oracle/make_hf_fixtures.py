"""Reference fixtures from Hugging Face transformers for the C++ parity tests.

For each config (grouped-query attention; tied embeddings) a tiny random LlamaForCausalLM is
created and saved by transformers, and its fp32 logits and loss on fixed inputs are stored in
expected.safetensors. Also: a sharded save (index + shards), a pickle-only save (must be refused),
and the learning-rate values of transformers' get_cosine_schedule_with_warmup / linear schedule.
Usage: make_hf_fixtures.py OUT_DIR
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, get_constant_schedule_with_warmup,
                          get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

CONFIGS = {
    "gqa": dict(num_key_value_heads=2, tie_word_embeddings=False),
    "tied": dict(num_key_value_heads=4, tie_word_embeddings=True),
}

for name, extra in CONFIGS.items():
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5,
                      rope_theta=5000.0, **extra)
    cfg._attn_implementation = "eager"  # independent of the SDPA kernel we call
    model = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():  # norms away from 1 so the weight multiply is exercised
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    ids = torch.randint(0, cfg.vocab_size, (3, 19))
    labels = ids.clone()
    labels[0, :5] = -100  # prompt-masked tokens are ignored
    with torch.no_grad():
        o = model(input_ids=ids, labels=labels)
    save_file({"input_ids": ids, "labels": labels, "logits": o.logits.float().contiguous(),
               "loss": o.loss.reshape(1).float()}, os.path.join(d, "expected.safetensors"))
    if name == "gqa":
        model.save_pretrained(os.path.join(out, "gqa_sharded"), safe_serialization=True,
                              max_shard_size="40KB")
        model.save_pretrained(os.path.join(out, "gqa_pickle"), safe_serialization=False)

# Learning-rate schedules as the HF Trainer runs them (warm-up = ceil(total × ratio)).
opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
sched = {}
for kind, fn in [("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup),
                 ("constant", None)]:
    for total, ratio in [(50, 0.03), (37, 0.1), (10, 0.0), (1000, 0.03)]:
        warm = math.ceil(total * ratio)
        if kind == "constant":
            s = get_constant_schedule_with_warmup(opt, warm)
        else:
            s = fn(opt, warm, total)
        sched[f"{kind}/{total}/{ratio}"] = {"warmup": warm, "lr": [s.lr_lambdas[0](k) for k in range(total)]}
with open(os.path.join(out, "schedules.json"), "w") as f:
    json.dump(sched, f)
print("fixtures written to", out)
