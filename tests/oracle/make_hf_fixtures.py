"""Reference fixtures from Hugging Face transformers for the C++ parity tests.

For each config (grouped-query attention; tied embeddings; Llama 3.1's rotary scaling; Mistral
v0.3) a tiny random model is created and saved by transformers, and its fp32 logits and loss on
fixed inputs are stored in expected.safetensors. Also: a sharded save (index + shards), a pickle-only save (must be refused),
and the learning-rate values of transformers' get_cosine_schedule_with_warmup / linear schedule.
Usage: make_hf_fixtures.py OUT_DIR
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                          get_linear_schedule_with_warmup)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

# Llama 3.1's rotary scaling on head_dim 16 with rope_theta 500000: the wavelengths 2*pi/inv_freq
# are 6.3, 32, 167, 865, 4467, ... With original_max_position_embeddings 256, high_freq_factor 4
# and low_freq_factor 0.25 the thresholds are 64 and 1024: two frequencies kept, two
# interpolated, four divided by the factor (checked below). Sequences of 64 tokens.
LLAMA3_SCALING = dict(rope_type="llama3", factor=8.0, low_freq_factor=0.25, high_freq_factor=4.0,
                      original_max_position_embeddings=256)
BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5,
            rope_theta=5000.0)
CONFIGS = {  # name: (model class, config, input length)
    "gqa": (LlamaForCausalLM, LlamaConfig(**BASE, num_key_value_heads=2,
                                          tie_word_embeddings=False), 19),
    "tied": (LlamaForCausalLM, LlamaConfig(**BASE, num_key_value_heads=4,
                                           tie_word_embeddings=True), 19),
    # Llama 3.1 style: rope_scaling llama3, grouped-query attention, untied head, eos list.
    "llama31": (LlamaForCausalLM,
                LlamaConfig(**{**BASE, "rope_theta": 500000.0, "max_position_embeddings": 1024},
                            num_key_value_heads=2, tie_word_embeddings=False,
                            rope_scaling=LLAMA3_SCALING, bos_token_id=1,
                            eos_token_id=[2, 5, 7]), 64),
    # Mistral v0.3: MistralForCausalLM without a sliding window, grouped-query, tied head.
    "mistral": (MistralForCausalLM,
                MistralConfig(**{**BASE, "rope_theta": 1e6}, num_key_value_heads=2,
                              tie_word_embeddings=True, sliding_window=None), 40),
}


def llama3_regimes(cfg):
    """Number of frequencies kept, interpolated and divided by the factor (in transformers)."""
    s = cfg.rope_scaling
    inv_freq, _ = ROPE_INIT_FUNCTIONS["default"](cfg, "cpu")
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    wavelen = 2 * math.pi / inv_freq
    high = s["original_max_position_embeddings"] / s["high_freq_factor"]
    low = s["original_max_position_embeddings"] / s["low_freq_factor"]
    kept = int((wavelen < high).sum())
    divided = int((wavelen > low).sum())
    assert torch.equal(scaled[wavelen < high], inv_freq[wavelen < high])
    assert torch.allclose(scaled[wavelen > low], inv_freq[wavelen > low] / s["factor"])
    print(f"llama3 rope: wavelengths {[round(w, 1) for w in wavelen.tolist()]}, thresholds "
          f"{high} / {low}: {kept} kept, {len(wavelen) - kept - divided} interpolated, "
          f"{divided} divided by {s['factor']}")
    return kept, len(wavelen) - kept - divided, divided


for name, (cls, cfg, seq_len) in CONFIGS.items():
    if getattr(cfg, "rope_scaling", None) is not None:
        assert all(n >= 2 for n in llama3_regimes(cfg)), "every rope regime must be exercised"
    cfg._attn_implementation = "eager"  # independent of the SDPA kernel we call
    model = cls(cfg).float().eval()
    with torch.no_grad():  # norms away from 1 so the weight multiply is exercised
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    ids = torch.randint(0, cfg.vocab_size, (3, seq_len))
    labels = ids.clone()
    labels[0, :5] = -100  # prompt-masked tokens are ignored
    with torch.no_grad():
        o = model(input_ids=ids, labels=labels)
    # inv_freq: transformers' rotary frequencies, which ours must equal bit for bit.
    save_file({"input_ids": ids, "labels": labels, "logits": o.logits.float().contiguous(),
               "loss": o.loss.reshape(1).float(),
               "inv_freq": model.model.rotary_emb.inv_freq.float().contiguous()},
              os.path.join(d, "expected.safetensors"))
    if name == "gqa":
        # Upstream's collator (pad = BOS, attention_mask = ids != pad): BOS at position 0 and as
        # right padding, another BOS inside row 1; logits where the mask is 1 and the loss.
        bos = cfg.bos_token_id
        cids = torch.randint(3, cfg.vocab_size, (3, 17))
        cids[:, 0] = bos
        cids[1, 6] = bos
        cids[0, 12:] = bos
        cids[2, 15:] = bos
        cmask = cids.ne(bos).long()
        clabels = cids.clone()
        clabels[:, :4] = -100
        clabels[cmask == 0] = -100
        with torch.no_grad():
            co = model(input_ids=cids, attention_mask=cmask, labels=clabels)
        save_file({"input_ids": cids, "attention_mask": cmask, "labels": clabels,
                   "logits": co.logits.float().contiguous(), "loss": co.loss.reshape(1).float()},
                  os.path.join(d, "upstream_compat.safetensors"))
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
