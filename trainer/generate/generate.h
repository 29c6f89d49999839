// generate.h — decoding with a KV cache: greedy, sampling (temperature, top-k, top-p) and beam
// search over a batch of prompts of different lengths, following the semantics of Hugging
// Face's `generate` (left padding, positions counted from each prompt's first real token, pad
// appended to finished rows, the temperature → top-k → top-p order of logits warpers, beam scores
// normalised by generated length ** length_penalty). Inference only (no autograd).
//
// Device: everything runs where the model's weights are (CPU or CUDA): the KV cache, ids,
// positions, masks, logits and beam scores live there; the host reads only what it must decide
// on, once per step (the next ids, or the beam candidates' ids and scores). Sampling draws on the
// host, from the step's probabilities copied over once, with CPU generators (one per prompt with
// prompt_seeds): a seed per line stays reproducible whatever the device and the batch, and on a
// GPU the draws equal the CPU's wherever the probabilities agree (fp32 usually; bf16 not).
//
// Shapes: B rows (prompts × beams), T new tokens, S cache capacity, V vocab.
#pragma once

#include <cstdint>
#include <functional>
#include <tuple>
#include <optional>
#include <vector>

#include <ATen/Tensor.h>

#include "model/llama.h"

namespace asc {

// The model run incrementally: each call appends T tokens per row to the cache and returns the
// logits of the last one. Rows are left-padded: `key_valid_BS` says which cache slots hold real
// tokens; attention is causal in slot order and never sees an invalid slot.
class CachedDecoder {
 public:
  // The first decoder over a model makes its q/k/v weights views of one tensor per layer, and its
  // gate/up weights likewise (see qkv_ below).
  CachedDecoder(LlamaForCausalLM model, int64_t batch, int64_t capacity);
  // ids_BT int64, pos_BT int64 (rotary positions), key_valid_BS bool [B, S] -> fp32 [B, V].
  // `row_begin` (host) for a one-token step whose rows' valid slots are [row_begin[b], length)
  // (left padding): attention reads those slots only, and key_valid_BS is not read.
  torch::Tensor step(const torch::Tensor& ids_BT, const torch::Tensor& pos_BT,
                     const torch::Tensor& key_valid_BS,
                     const std::vector<int64_t>* row_begin = nullptr);
  // The first call on an empty one-row cache: the prompts back to back in row 0 (prompt j at
  // slots [offset_j, offset_j + P_j), offset_j = the lengths before it; positions from 0 in
  // each), every product over all their tokens at once, causal attention within each prompt
  // (no mask, no padding) -> each prompt's last-position logits, fp32 [N, V].
  torch::Tensor prefill_packed(const std::vector<std::vector<int32_t>>& prompts);
  // Keeps rows `rows` (int64 [B']) of the cache in that order (beam reordering).
  void select_rows(const torch::Tensor& rows);
  // Continuous batching, each row its own length: row `src_row` of `src`, slots [from, from + n),
  // copied into row `row` at slots [0, n).
  void set_row(int64_t row, const CachedDecoder& src, int64_t src_row, int64_t from, int64_t n);
  // One token per row, written at that row's own slot (slot_B1 int64, on the device); row b
  // attends over its slots [0, lens[b]) (lens on the host: slot + 1 for a decoding row, 0 for a
  // row whose output is not used). No shared length: a row refilled with a new prompt never
  // pushes the others along, and no row reads past its own length.
  torch::Tensor step_at(const torch::Tensor& ids_B1, const torch::Tensor& pos_B1,
                        const torch::Tensor& slot_B1, const std::vector<int64_t>& lens);
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

 private:
  LlamaForCausalLM model_;
  int64_t length_ = 0, capacity_ = 0;
  // The ids' embeddings and rotary tables at their positions ([B, 1, T, E]), after checking that
  // attention over `span` slots fits the cache and any sliding window.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> embed(const torch::Tensor& ids_BT,
                                                                const torch::Tensor& pos_BT,
                                                                int64_t span);
  // (layer, q [B, H, T, E], new k and v [B, K, T, E]) -> attention output [B, H, T, E], the new
  // keys and values stored in the cache on the way.
  using AttendFn = std::function<torch::Tensor(size_t, const torch::Tensor&, const torch::Tensor&,
                                               const torch::Tensor&)>;
  // The decoder layers over x [B, T, D]; returns the last position's logits (fp32 [B, V]), or
  // with `out_positions` (int64 [N]) those positions' logits ([B, N, V]).
  torch::Tensor run_layers(torch::Tensor x, const AttendFn& attend_fn, const torch::Tensor& cos,
                           const torch::Tensor& sin, const torch::Tensor& out_positions = {});
  // Scaled dot-product attention of q over cached keys/values (grouped heads expanded); `mask`
  // undefined: every key visible, or with `causal` query t sees keys [0, t].
  torch::Tensor attend(const torch::Tensor& q_BHTE, torch::Tensor k_BKLE, torch::Tensor v_BKLE,
                       const torch::Tensor& mask, bool causal = false) const;
  // One query per row over layer `layer`'s cache, row b over its slots [begin[b], end[b]):
  // kernels::decode_attention on the CPU in fp32, else libtorch's attention with a mask (built
  // once per step, kept for the step's other layers).
  torch::Tensor attend_rows(const torch::Tensor& q_BH1E, size_t layer,
                            const std::vector<int64_t>& begin, const std::vector<int64_t>& end);
  torch::Tensor rows_mask_;
  std::vector<int64_t> rows_begin_, rows_end_;
  std::vector<torch::Tensor> k_, v_;  // per layer [B, K, S, E]
  // Per layer, q/k/v's weights as one [(H + 2K) E, D] tensor and gate/up's as one [2I, D]: the
  // model's parameters are made views of these (values, names and shapes unchanged; no memory
  // added), so each is one product.
  std::vector<torch::Tensor> qkv_, gate_up_;
  torch::Tensor cos_SE_, sin_SE_;  // rotary tables for positions [0, S)
};

struct GenerationOptions {
  int64_t max_new_tokens = 400;
  bool do_sample = false;
  // Greedy / sampling (num_beams 1): a finished row's slot takes the next prompt at once instead
  // of waiting for the batch's longest answer (each slot keeps its own length in the cache;
  // the prompts taken in one round are prefilled in one packed pass, unpadded);
  // `continuous_slots` slots decode together. Off: static batches, as transformers' generate.
  bool continuous = false;
  int64_t continuous_slots = 8;
  double temperature = 1.0;
  int64_t top_k = 0;   // 0 = off
  double top_p = 1.0;  // 1 = off
  int64_t num_beams = 1;
  double length_penalty = 1.0;
  int64_t eos_id = 2;
  // Further ids that end a row as eos_id does (Llama 3's several end ids: the model's
  // end_token_ids()); none by default.
  std::vector<int64_t> more_eos_ids;
  int64_t pad_id = 1;  // appended to finished rows; Asclepius pads with <s>
  uint64_t seed = 0;   // sampling
  // Sampling with one generator per prompt, seeded with these (one per prompt): a prompt's
  // answer then does not depend on the other prompts of its batch, so answers do not depend on
  // how work is split across ranks. Empty: one generator for the batch, seeded with `seed`.
  std::vector<uint64_t> prompt_seeds;
};

// One answer per prompt: the generated ids without the EOS (eos_id or one of more_eos_ids), and
// whether EOS ended it.
struct Generated {
  std::vector<int32_t> ids;
  bool ended_with_eos = false;
};

// The most tokens (prompt + new) decoding runs: max_position_embeddings, or the sliding window
// when smaller (attention within a window is not implemented; up to the window it equals full
// causal attention, so decoding stays exact).
int64_t generation_context(const LlamaConfig& c);

// Prompts are token ids (BOS included). Every prompt + max_new_tokens must fit
// generation_context (callers truncate first; this checks).
std::vector<Generated> generate(LlamaForCausalLM& model,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const GenerationOptions& o);

// The sampling warpers on fp32 logits [B, V] (temperature, then top-k, then top-p; removed
// entries become -inf), as Hugging Face's TemperatureLogitsWarper, TopKLogitsWarper and
// TopPLogitsWarper with min_tokens_to_keep = 1.
torch::Tensor warp_logits(torch::Tensor logits_BV, const GenerationOptions& o);

}  // namespace asc
