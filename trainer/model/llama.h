// llama.h — the LLaMA decoder family in libtorch, numerically following Hugging Face's
// modeling_llama: RMSNorm in fp32 then cast, rotary embeddings in the half-split (rotate_half)
// convention, SwiGLU MLP, grouped-query attention, causal attention through
// at::scaled_dot_product_attention, optional tied embeddings. Parameter names are exactly the
// Hugging Face checkpoint names (model.layers.0.self_attn.q_proj.weight, ...), so
// named_parameters() is the checkpoint's key set.
//
// Shapes: B batch, T sequence, D hidden, H heads, K kv heads, E head dim, V vocab.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "model/llama_config.h"

namespace asc {

// Several examples packed into one row: positions restart at 0 per example and attention never
// crosses from one example to another (block-diagonal causal). Both [B, T] int64.
struct Packing {
  torch::Tensor position_ids_BT;
  torch::Tensor segment_ids_BT;  // equal ids = same example
  // Optional bool [B, T]: false = no position attends to this token (upstream's
  // attention_mask = ids != pad with pad = BOS, data.upstream_compat). A row left with no
  // visible key (a BOS at the start) attends to itself.
  torch::Tensor key_visible_BT;
};

// Parameters created while a DeferParameterStorage is alive (on this thread) have their shape but
// no storage: the parallel engine gives each rank storage for what it owns only, so no rank ever
// holds the whole model. Reading one before that is an error ("data is not allocated").
// `device`: where the parameters will live.
class DeferParameterStorage {
 public:
  explicit DeferParameterStorage(c10::Device device = c10::kCPU);
  ~DeferParameterStorage();
  DeferParameterStorage(const DeferParameterStorage&) = delete;
  DeferParameterStorage& operator=(const DeferParameterStorage&) = delete;

 private:
  bool previous_;
  c10::Device previous_device_;
};

// y = x W^T (LLaMA's projections have no bias). weight: [out, in].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
};
TORCH_MODULE(Linear);

// Rows of weight [V, D]; as Hugging Face, the pad row (if any) gets no gradient.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, std::optional<int64_t> padding_idx);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;

 private:
  int64_t padding_idx_;
};
TORCH_MODULE(Embedding);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& c);
  // x_BTD, cos/sin [T, E] or [B, 1, T, E] (already in x's dtype), mask [B, 1, T, T] bool (true =
  // may attend) or undefined for plain causal attention -> BTD
  torch::Tensor forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_TE,
                        const torch::Tensor& sin_TE, const torch::Tensor& mask_B1TT = {});
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  explicit LlamaMLPImpl(const LlamaConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& c);
  torch::Tensor forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_TE,
                        const torch::Tensor& sin_TE, const torch::Tensor& mask_B1TT = {});
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// How decoder layers are run: a plain call unless a runner is installed. The parallel engine's
// runner gathers sharded parameters, recomputes activations in backward (checkpointing) and
// starts gradient reduction as each layer's backward ends. `layer_fn` computes the layer on its
// input and owns what it needs (it may be called again during backward).
using LayerFn = std::function<torch::Tensor(const torch::Tensor&)>;
using LayerRunner =
    std::function<torch::Tensor(int64_t layer, const torch::Tensor& x, LayerFn layer_fn)>;

class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c);
  void set_layer_runner(LayerRunner runner) { runner_ = std::move(runner); }
  // -> final normed hidden BTD; `packing` for packed rows (null: one sequence per row)
  torch::Tensor forward(const torch::Tensor& input_ids_BT, const Packing* packing = nullptr);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  LlamaConfig config_;
  LayerRunner runner_;
};
TORCH_MODULE(LlamaModel);

// Where a parameter's values come from, a range at a time: elements [begin, end) of parameter
// `name` (row-major) as fp32 into `out` (the seeded initialisation, a checkpoint, a Hugging Face
// directory).
using ParamSource =
    std::function<void(const std::string& name, int64_t begin, int64_t end, float* out)>;

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& c);
  // input_ids_BT (int64) -> logits_BTV in the parameters' dtype.
  torch::Tensor forward(const torch::Tensor& input_ids_BT, const Packing* packing = nullptr);
  // Hugging Face's initialisation (init_parameter_range below, over every parameter): the same
  // values for the same seed whatever else has happened. Without a seed, one is drawn from
  // torch's global generator (deterministic under torch::manual_seed).
  void init_weights_seeded(uint64_t seed, double std = 0.02);
  void init_weights(double std = 0.02);
  // Every parameter, whole, from `source` (converted to the parameter's dtype and device).
  void fill_parameters(const ParamSource& source);
  const LlamaConfig& config() const { return config_; }
  // causal_lm_loss_sum(forward(ids), labels) without the full logits: the LM head and its
  // cross-entropy `chunk_rows` positions at a time (kernels/layer_ops.h).
  torch::Tensor loss_sum(const torch::Tensor& input_ids_BT, const torch::Tensor& labels_BT,
                         const Packing* packing, int64_t chunk_rows);
  // The LM-head weight (the embedding's when tied).
  torch::Tensor head_weight() const;
  LlamaModel model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  LlamaConfig config_;
};
TORCH_MODULE(LlamaForCausalLM);

// Elements [begin, end) of parameter `name` (row-major, numel elements) as init_weights sets them:
// normal(0, std) for linear and embedding weights, ones for norms, a zero pad row in the
// embedding. The values are drawn in fixed chunks of 2^20 elements, each from its own generator
// seeded by (seed, name, chunk), so a rank can produce just the range it owns and get the same
// values as a process initialising the whole model.
void init_parameter_range(const LlamaConfig& c, uint64_t seed, const std::string& name,
                          int64_t numel, int64_t begin, int64_t end, float* out, double std = 0.02);

// The rotary inverse frequencies [E/2], fp32 on the CPU: theta^(-2i/E), then Llama 3.1's
// scaling when `scaling` is set, op for op as transformers' _compute_default_rope_parameters and
// _compute_llama3_parameters compute them (at model construction, on the CPU).
torch::Tensor rotary_inv_freq(int64_t head_dim, double theta,
                              const std::optional<RopeScaling>& scaling);

// Rotary tables for positions [0, T): cos/sin of shape [T, E], computed in fp32 as Hugging Face
// does (rotary_inv_freq moved to `device`, times the positions), then cast to `dtype`.
std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, int64_t head_dim, double theta,
                                                      const std::optional<RopeScaling>& scaling,
                                                      torch::Dtype dtype, torch::Device device);
// The model's tables: head_dim(), rope_theta and rope_scaling of `c`.
std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, const LlamaConfig& c,
                                                      torch::Dtype dtype, torch::Device device);

// Causal-LM loss pieces with the Hugging Face shift (position t predicts labels[t+1]);
// label -100 is ignored. Returns the *sum* of token losses (fp32 logits); callers divide by the
// number of target tokens in the whole global batch.
torch::Tensor causal_lm_loss_sum(const torch::Tensor& logits_BTV, const torch::Tensor& labels_BT);
// Number of target tokens (labels[:, 1:] != -100).
int64_t count_targets(const torch::Tensor& labels_BT);

}  // namespace asc
