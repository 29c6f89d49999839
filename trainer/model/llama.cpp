#include "model/llama.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>

#include "common/error.h"
#include "kernels/layer_ops.h"

namespace asc {

namespace {

thread_local bool defer_storage = false;
thread_local c10::Device defer_device = c10::kCPU;

// A parameter of shape `sizes`: filled with `value`, or (deferred) with no storage at all.
torch::Tensor new_parameter(at::IntArrayRef sizes, double value) {
  if (!defer_storage) return torch::full(sizes, value);
  torch::Tensor t = at::empty({0}, at::TensorOptions().device(defer_device));
  t.unsafeGetTensorImpl()->set_sizes_contiguous(sizes);
  return t;
}

}  // namespace

DeferParameterStorage::DeferParameterStorage(c10::Device device)
    : previous_(defer_storage), previous_device_(defer_device) {
  defer_storage = true;
  defer_device = device;
}
DeferParameterStorage::~DeferParameterStorage() {
  defer_storage = previous_;
  defer_device = previous_device_;
}

LinearImpl::LinearImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", new_parameter({out, in}, 0.0));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  return at::linear(x, weight);
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, std::optional<int64_t> padding_idx)
    : padding_idx_(padding_idx.value_or(-1)) {
  weight = register_parameter("weight", new_parameter({vocab, dim}, 0.0));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return at::embedding(weight, ids, padding_idx_);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", new_parameter({dim}, 1.0));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // HF: variance in fp32, normalise, cast back to the input dtype, then scale by the weight
  // (kernels/layer_ops.h: a fused kernel on CUDA, this arithmetic in libtorch elsewhere).
  return ops::rms_norm(x, weight, eps_);
}

torch::Tensor rotary_inv_freq(int64_t head_dim, double theta,
                              const std::optional<RopeScaling>& scaling) {
  // inv_freq[i] = theta^(-2i/E); HF computes arange(0, E, 2) in int64 then casts to float.
  auto exponents =
      torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / double(head_dim);
  auto inv_freq = 1.0 / torch::pow(theta, exponents);
  if (!scaling) return inv_freq;
  // _compute_llama3_parameters, op for op in fp32 with Python's double scalars. Python's
  // `scalar / tensor` is tensor.reciprocal() * scalar (two roundings), written so here: C++'s
  // `scalar / tensor` divides once and would differ in the last bit.
  const RopeScaling& s = *scaling;
  const double old_context_len = double(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / s.low_freq_factor;
  const double high_freq_wavelen = old_context_len / s.high_freq_factor;
  const auto wavelen = inv_freq.reciprocal() * (2 * M_PI);
  // wavelen < high_freq_wavelen: unchanged; wavelen > low_freq_wavelen: divided by factor.
  auto inv_freq_llama = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  // Otherwise: interpolated with a smooth factor.
  const auto smooth_factor = (wavelen.reciprocal() * old_context_len - s.low_freq_factor) /
                             (s.high_freq_factor - s.low_freq_factor);
  const auto smoothed_inv_freq =
      torch::rsub(smooth_factor, 1) * inv_freq_llama / s.factor + smooth_factor * inv_freq_llama;
  const auto is_medium_freq = (wavelen < high_freq_wavelen)
                                  .logical_not()
                                  .logical_and((wavelen > low_freq_wavelen).logical_not());
  return torch::where(is_medium_freq, smoothed_inv_freq, inv_freq_llama);
}

std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, int64_t head_dim, double theta,
                                                      const std::optional<RopeScaling>& scaling,
                                                      torch::Dtype dtype, torch::Device device) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // Transformers computes inv_freq once on the CPU (a buffer of the rotary module, moved with
  // the model), the angles on the model's device.
  auto inv_freq = rotary_inv_freq(head_dim, theta, scaling).to(device);
  auto pos = torch::arange(T, f32);
  auto freqs = torch::outer(pos, inv_freq);   // [T, E/2]
  auto emb = torch::cat({freqs, freqs}, -1);  // [T, E]
  // (llama3 scaling has attention_factor 1: cos and sin are not rescaled.)
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, const LlamaConfig& c,
                                                      torch::Dtype dtype, torch::Device device) {
  return rotary_tables(T, c.head_dim(), c.rope_theta, c.rope_scaling, dtype, device);
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim()) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, heads_ * head_dim_));
  k_proj = register_module("k_proj", Linear(c.hidden_size, kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", Linear(c.hidden_size, kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", Linear(heads_ * head_dim_, c.hidden_size));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_TE,
                                          const torch::Tensor& sin_TE,
                                          const torch::Tensor& mask_B1TT) {
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1);
  // The rotary embedding on the contiguous [B, T, heads, E] projections, then to [B, heads, T, E].
  auto q_BHTE =
      ops::rotary(q_proj(x_BTD).view({B, T, heads_, head_dim_}), cos_TE, sin_TE).transpose(1, 2);
  auto k_BKTE =
      ops::rotary(k_proj(x_BTD).view({B, T, kv_heads_, head_dim_}), cos_TE, sin_TE).transpose(1, 2);
  auto v_BKTE = v_proj(x_BTD).view({B, T, kv_heads_, head_dim_}).transpose(1, 2);
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
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  return down_proj(ops::swiglu(gate_proj(x), up_proj(x)));
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
  embed_tokens =
      register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, c.pad_token_id));
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
  auto [cos, sin] = rotary_tables(T, config_, x.scalar_type(), x.device());
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
    auto mask = same.logical_and(causal);
    if (packing->key_visible_BT.defined()) {
      mask = mask.logical_and(packing->key_visible_BT.to(x.device()).to(torch::kBool).unsqueeze(1));
      const auto eye = torch::eye(T, torch::TensorOptions().dtype(torch::kBool).device(x.device()));
      mask = mask.logical_or(mask.any(-1, /*keepdim=*/true).logical_not().logical_and(eye));
    }
    mask_B1TT = mask.unsqueeze(1);
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
    lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size));
}

torch::Tensor LlamaForCausalLMImpl::head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor LlamaForCausalLMImpl::loss_sum(const torch::Tensor& input_ids_BT,
                                             const torch::Tensor& labels_BT, const Packing* packing,
                                             int64_t chunk_rows) {
  const torch::Tensor h_BTD = model(input_ids_BT, packing);
  const int64_t T = h_BTD.size(1), D = h_BTD.size(2);
  // Position t predicts labels[t + 1] (the Hugging Face shift).
  const auto h_ND = h_BTD.slice(1, 0, T - 1).reshape({-1, D});
  const auto targets_N = labels_BT.slice(1, 1).reshape({-1}).to(h_ND.device());
  return ops::chunked_cross_entropy_sum(h_ND, head_weight(), targets_N, chunk_rows);
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids_BT,
                                            const Packing* packing) {
  return torch::linear(model(input_ids_BT, packing), head_weight());
}

void LlamaForCausalLMImpl::fill_parameters(const ParamSource& source) {
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    torch::Tensor t = p.value();
    torch::Tensor f = t.scalar_type() == at::kFloat && t.is_contiguous() && t.is_cpu()
                          ? t
                          : at::empty(t.sizes(), at::kFloat);
    source(p.key(), 0, f.numel(), f.data_ptr<float>());
    if (!f.is_same(t)) t.copy_(f);
  }
}

void LlamaForCausalLMImpl::init_weights_seeded(uint64_t seed, double std) {
  // fill_parameters asks for whole parameters: [0, numel).
  fill_parameters([&](const std::string& name, int64_t begin, int64_t end, float* out) {
    init_parameter_range(config_, seed, name, end - begin, begin, end, out, std);
  });
}

void LlamaForCausalLMImpl::init_weights(double std) {
  const uint64_t seed = uint64_t(at::randint(INT64_MAX, {1}, at::kLong).item<int64_t>());
  init_weights_seeded(seed, std);
}

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

void init_parameter_range(const LlamaConfig& c, uint64_t seed, const std::string& name,
                          int64_t numel, int64_t begin, int64_t end, float* out, double std) {
  ASC_CHECK(0 <= begin && begin <= end && end <= numel, "init {}: range [{}, {}) of {} elements",
            name, begin, end, numel);
  if (name.find("norm") != std::string::npos) {
    std::fill(out, out + (end - begin), 1.0f);
    return;
  }
  constexpr int64_t kChunk = int64_t(1) << 20;
  uint64_t name_hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : name) name_hash = (name_hash ^ ch) * 0x100000001b3ull;
  const int64_t first = begin / kChunk, last = (end + kChunk - 1) / kChunk;
  at::parallel_for(first, last, 1, [&](int64_t from, int64_t to) {
    for (int64_t k = from; k < to; ++k) {
      const int64_t c0 = k * kChunk, len = std::min(kChunk, numel - c0);
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(
          splitmix64(splitmix64(seed ^ name_hash) + uint64_t(k)));
      at::Tensor chunk = at::empty({len}, at::kFloat).normal_(0.0, std, gen);
      const int64_t lo = std::max(begin, c0), hi = std::min(end, c0 + len);
      std::copy_n(chunk.data_ptr<float>() + (lo - c0), hi - lo, out + (lo - begin));
    }
  });
  if (name == "model.embed_tokens.weight" && c.pad_token_id) {
    const int64_t row_begin = *c.pad_token_id * c.hidden_size, row_end = row_begin + c.hidden_size;
    for (int64_t i = std::max(begin, row_begin); i < std::min(end, row_end); ++i)
      out[i - begin] = 0.0f;
  }
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
