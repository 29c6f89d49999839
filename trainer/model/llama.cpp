#include "model/llama.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/init.h>

#include "common/error.h"

namespace asc {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // HF: variance in fp32, normalise, cast back to the input dtype, then scale by the weight.
  auto x32 = x.to(torch::kFloat32);
  auto var = x32.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (x32 * torch::rsqrt(var + eps_)).to(x.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, int64_t head_dim, double theta,
                                                      torch::Dtype dtype, torch::Device device) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // inv_freq[i] = theta^(-2i/E); HF computes arange(0, E, 2) in int64 then casts to float.
  auto exponents =
      torch::arange(0, head_dim, 2, torch::TensorOptions().dtype(torch::kInt64).device(device))
          .to(torch::kFloat32) /
      double(head_dim);
  auto inv_freq = 1.0 / torch::pow(theta, exponents);
  auto pos = torch::arange(T, f32);
  auto freqs = torch::outer(pos, inv_freq);   // [T, E/2]
  auto emb = torch::cat({freqs, freqs}, -1);  // [T, E]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
  auto halves = x.chunk(2, -1);
  return x * cos + torch::cat({-halves[1], halves[0]}, -1) * sin;
}

namespace {
torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}
}  // namespace

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim()) {
  q_proj = register_module("q_proj", linear(c.hidden_size, heads_ * head_dim_));
  k_proj = register_module("k_proj", linear(c.hidden_size, kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", linear(c.hidden_size, kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", linear(heads_ * head_dim_, c.hidden_size));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_TE,
                                          const torch::Tensor& sin_TE,
                                          const torch::Tensor& mask_B1TT) {
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1);
  auto q_BHTE = q_proj(x_BTD).view({B, T, heads_, head_dim_}).transpose(1, 2);
  auto k_BKTE = k_proj(x_BTD).view({B, T, kv_heads_, head_dim_}).transpose(1, 2);
  auto v_BKTE = v_proj(x_BTD).view({B, T, kv_heads_, head_dim_}).transpose(1, 2);
  q_BHTE = apply_rotary(q_BHTE, cos_TE, sin_TE);
  k_BKTE = apply_rotary(k_BKTE, cos_TE, sin_TE);
  if (kv_heads_ != heads_) {  // grouped-query: repeat each kv head heads/kv_heads times
    const int64_t rep = heads_ / kv_heads_;
    k_BKTE = k_BKTE.unsqueeze(2)
                 .expand({B, kv_heads_, rep, T, head_dim_})
                 .reshape({B, heads_, T, head_dim_});
    v_BKTE = v_BKTE.unsqueeze(2)
                 .expand({B, kv_heads_, rep, T, head_dim_})
                 .reshape({B, heads_, T, head_dim_});
  }
  auto y_BHTE = at::scaled_dot_product_attention(
      q_BHTE, k_BKTE, v_BKTE,
      /*attn_mask=*/mask_B1TT.defined() ? std::optional<at::Tensor>(mask_B1TT) : std::nullopt,
      /*dropout_p=*/0.0, /*is_causal=*/!mask_B1TT.defined(),
      /*scale=*/1.0 / std::sqrt(double(head_dim_)));
  return o_proj(y_BHTE.transpose(1, 2).reshape({B, T, heads_ * head_dim_}));
}

LlamaMLPImpl::LlamaMLPImpl(const LlamaConfig& c) {
  gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& c) {
  self_attn = register_module("self_attn", LlamaAttention(c));
  mlp = register_module("mlp", LlamaMLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x_BTD,
                                             const torch::Tensor& cos_TE,
                                             const torch::Tensor& sin_TE,
                                             const torch::Tensor& mask_B1TT) {
  auto h = x_BTD + self_attn(input_layernorm(x_BTD), cos_TE, sin_TE, mask_B1TT);
  return h + mlp(post_attention_layernorm(h));
}

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) : config_(c) {
  auto emb = torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size);
  if (c.pad_token_id) emb.padding_idx(*c.pad_token_id);  // as HF: no gradient for the pad row
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(emb));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& input_ids_BT, const Packing* packing) {
  ASC_CHECK(!config_.sliding_window || input_ids_BT.size(1) <= *config_.sliding_window,
            "sequence length {} exceeds sliding_window {}: sliding-window attention is not "
            "implemented",
            input_ids_BT.size(1), config_.sliding_window.value_or(0));
  const int64_t B = input_ids_BT.size(0), T = input_ids_BT.size(1);
  auto x = embed_tokens(input_ids_BT);
  auto [cos, sin] =
      rotary_tables(T, config_.head_dim(), config_.rope_theta, x.scalar_type(), x.device());
  torch::Tensor mask_B1TT;
  if (packing) {
    // Per-token positions (restarting per example) pick rows of the tables: [B, 1, T, E].
    const auto pos = packing->position_ids_BT.to(x.device()).reshape({-1});
    cos = cos.index_select(0, pos).view({B, 1, T, -1});
    sin = sin.index_select(0, pos).view({B, 1, T, -1});
    // Causal within an example, nothing across examples.
    const auto seg = packing->segment_ids_BT.to(x.device());
    auto same = seg.unsqueeze(2).eq(seg.unsqueeze(1));  // [B, T, T]
    auto causal =
        torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).tril();
    mask_B1TT = same.logical_and(causal).unsqueeze(1);
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    auto layer = layers->ptr<LlamaDecoderLayerImpl>(i);
    if (!runner_) {
      x = layer->forward(x, cos, sin, mask_B1TT);
      continue;
    }
    // Captured by value: the runner may call it again during backward.
    x = runner_(int64_t(i), x, [layer, cos, sin, mask_B1TT](const torch::Tensor& h) {
      return layer->forward(h, cos, sin, mask_B1TT);
    });
  }
  return norm(x);
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& c) : config_(c) {
  c.validate("model");
  model = register_module("model", LlamaModel(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", linear(c.hidden_size, c.vocab_size));
}

torch::Tensor LlamaForCausalLMImpl::head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids_BT,
                                            const Packing* packing) {
  return torch::linear(model(input_ids_BT, packing), head_weight());
}

void LlamaForCausalLMImpl::init_weights(double std) {
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    if (p.key().find("norm") != std::string::npos)
      p.value().fill_(1.0);
    else
      p.value().normal_(0.0, std);
  }
  if (config_.pad_token_id) model->embed_tokens->weight[*config_.pad_token_id].zero_();
}

torch::Tensor causal_lm_loss_sum(const torch::Tensor& logits_BTV, const torch::Tensor& labels_BT) {
  const int64_t V = logits_BTV.size(-1);
  auto logits = logits_BTV.slice(1, 0, logits_BTV.size(1) - 1).to(torch::kFloat32).reshape({-1, V});
  auto targets = labels_BT.slice(1, 1).reshape({-1});
  return torch::nn::functional::cross_entropy(
      logits, targets,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
}

int64_t count_targets(const torch::Tensor& labels_BT) {
  return labels_BT.slice(1, 1).ne(-100).sum().item<int64_t>();
}

}  // namespace asc
