"""A small LLaMA made by transformers for decoding oracles (check_generate.py,
check_judge_run.py): 2 layers, grouped-query attention, an 800-piece tokenizer trained on
synthetic notes; weights drawn wide (N(0, 0.35)) so greedy decoding has no near-ties, and the EOS
row of the head scaled so that some answers end at EOS and others at the length limit."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def make_peaked_llama(seed, max_position_embeddings, out_dir):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=800, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=max_position_embeddings, rms_norm_eps=1e-5,
                      rope_theta=10000.0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" not in n:
                p.normal_(0.0, 0.35)
        model.lm_head.weight[2] *= 1.6
    model.save_pretrained(out_dir, safe_serialization=True)
    return model
