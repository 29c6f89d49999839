#include "generate/generate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/activation.h>

#include "common/error.h"
#include "kernels/decode_cpu.h"
#include "kernels/layer_ops.h"

namespace asc {

namespace {
constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// The weights `params` ([N_i, D] each) as consecutive rows of one tensor [sum N_i, D], which is
// returned; the parameters become views of it (values, shapes and names unchanged), so no
// memory is added. Already so (an earlier decoder did it): the tensor is rebuilt over the same
// storage, nothing copied.
torch::Tensor stack_rows(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  const auto& first = params.front();
  const int64_t D = first.size(1);
  int64_t rows = 0;
  bool adjacent = true;
  for (const auto& p : params) {
    ASC_CHECK(p.dim() == 2 && p.size(1) == D && p.scalar_type() == first.scalar_type() &&
                  p.device() == first.device(),
              "stacking projection weights of different shapes, dtypes or devices: {} {} {} "
              "and {} {} {}",
              first.sizes(), c10::toString(first.scalar_type()), first.device().str(), p.sizes(),
              c10::toString(p.scalar_type()), p.device().str());
    adjacent = adjacent && p.is_contiguous() && p.storage().is_alias_of(first.storage()) &&
               p.storage_offset() == first.storage_offset() + rows * D;
    rows += p.size(0);
  }
  if (adjacent)
    return torch::empty({0}, first.options())
        .set_(first.storage(), first.storage_offset(), {rows, D}, {D, 1});
  auto all = torch::cat(params, 0);
  int64_t row = 0;
  for (auto p : params) {  // handles share the parameter itself: set_data rebinds it
    const int64_t n = p.size(0);
    p.set_data(all.narrow(0, row, n));
    row += n;
  }
  return all;
}
}  // namespace

CachedDecoder::CachedDecoder(LlamaForCausalLM model, int64_t batch, int64_t capacity)
    : model_(std::move(model)), capacity_(capacity) {
  const LlamaConfig& c = model_->config();
  const auto w = model_->model->embed_tokens->weight;
  const auto opts = w.options();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    k_.push_back(torch::zeros({batch, c.num_key_value_heads, capacity, c.head_dim()}, opts));
    v_.push_back(torch::zeros({batch, c.num_key_value_heads, capacity, c.head_dim()}, opts));
  }
  std::tie(cos_SE_, sin_SE_) = rotary_tables(capacity, c, w.scalar_type(), w.device());
  for (size_t i = 0; i < model_->model->layers->size(); ++i) {
    auto layer = model_->model->layers->ptr<LlamaDecoderLayerImpl>(i);
    const auto& a = layer->self_attn;
    qkv_.push_back(stack_rows({a->q_proj->weight, a->k_proj->weight, a->v_proj->weight}));
    gate_up_.push_back(stack_rows({layer->mlp->gate_proj->weight, layer->mlp->up_proj->weight}));
  }
}

void CachedDecoder::set_row(int64_t row, const CachedDecoder& src, int64_t src_row, int64_t from,
                            int64_t n) {
  ASC_CHECK(n <= capacity_, "KV cache overflow: {} tokens > capacity {}", n, capacity_);
  for (size_t i = 0; i < k_.size(); ++i) {
    k_[i][row].slice(1, 0, n).copy_(src.k_[i][src_row].slice(1, from, from + n));
    v_[i][row].slice(1, 0, n).copy_(src.v_[i][src_row].slice(1, from, from + n));
  }
}

void CachedDecoder::select_rows(const torch::Tensor& rows) {
  for (auto& t : k_) t = t.index_select(0, rows);
  for (auto& t : v_) t = t.index_select(0, rows);
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> CachedDecoder::embed(
    const torch::Tensor& ids_BT, const torch::Tensor& pos_BT, int64_t span) {
  const LlamaConfig& c = model_->config();
  const int64_t B = ids_BT.size(0), T = ids_BT.size(1), E = c.head_dim();
  ASC_CHECK(span <= capacity_, "KV cache overflow: {} tokens > capacity {}", span, capacity_);
  // Within the window, sliding-window attention is full causal attention; past it, not
  // implemented (the cache slots, left padding included, count as Hugging Face counts them).
  ASC_CHECK(!c.sliding_window || span <= *c.sliding_window,
            "{} cached tokens exceed sliding_window {}: sliding-window attention is not "
            "implemented",
            span, c.sliding_window.value_or(0));
  const auto pos = pos_BT.reshape({-1});
  return {model_->model->embed_tokens(ids_BT), cos_SE_.index_select(0, pos).view({B, 1, T, E}),
          sin_SE_.index_select(0, pos).view({B, 1, T, E})};
}

torch::Tensor CachedDecoder::step(const torch::Tensor& ids_BT, const torch::Tensor& pos_BT,
                                  const torch::Tensor& key_valid_BS,
                                  const std::vector<int64_t>* row_begin) {
  torch::NoGradGuard no_grad;
  const int64_t T = ids_BT.size(1), L0 = length_, L = L0 + T;
  auto [x, cos, sin] = embed(ids_BT, pos_BT, L);

  // Query t sits in slot L0 + t: it sees valid slots up to its own, and always its own slot (a
  // pad query would otherwise see nothing; its output is never used).
  const bool by_rows = row_begin && T == 1;
  torch::Tensor mask_B1TL;
  if (!by_rows) {
    const auto dev = x.device();
    auto slots = torch::arange(L, torch::TensorOptions().dtype(torch::kInt64).device(dev));
    auto qslots = slots.slice(0, L0, L).unsqueeze(1);  // [T, 1]
    auto causal = slots.unsqueeze(0).le(qslots);       // [T, L]
    auto own = slots.unsqueeze(0).eq(qslots);
    auto valid = key_valid_BS.slice(1, 0, L).to(dev).unsqueeze(1);  // [B, 1, L]
    mask_B1TL = valid.logical_and(causal).logical_or(own).unsqueeze(1);
  }

  const std::vector<int64_t> row_end(row_begin ? row_begin->size() : 0, L);
  auto last = run_layers(
      x,
      [&](size_t i, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
        k_[i].slice(2, L0, L).copy_(k);
        v_[i].slice(2, L0, L).copy_(v);
        if (by_rows) return attend_rows(q, i, *row_begin, row_end);
        return attend(q, k_[i].slice(2, 0, L), v_[i].slice(2, 0, L), mask_B1TL);
      },
      cos, sin);
  length_ = L;
  return last;
}

torch::Tensor CachedDecoder::prefill_packed(const std::vector<std::vector<int32_t>>& prompts) {
  torch::NoGradGuard no_grad;
  ASC_CHECK(length_ == 0 && !prompts.empty(), "prefill_packed: {} prompts into a cache holding {}",
            prompts.size(), length_);
  std::vector<int64_t> ids, pos, offset, last;
  int64_t longest = 0;
  for (const auto& p : prompts) {
    offset.push_back(int64_t(ids.size()));
    for (size_t t = 0; t < p.size(); ++t) ids.push_back(p[t]), pos.push_back(int64_t(t));
    last.push_back(int64_t(ids.size()) - 1);
    longest = std::max(longest, int64_t(p.size()));
  }
  const int64_t N = int64_t(ids.size());
  ASC_CHECK(N <= capacity_, "KV cache overflow: {} tokens > capacity {}", N, capacity_);
  const auto dev = model_->model->embed_tokens->weight.device();
  std::vector<int64_t> last_padded(last);  // one [3, N] tensor moved to the device at once
  last_padded.resize(size_t(N), 0);
  const auto host =
      torch::stack({torch::tensor(ids, torch::kInt64), torch::tensor(pos, torch::kInt64),
                    torch::tensor(last_padded, torch::kInt64)})
          .to(dev);
  // Attention spans one prompt at most: the sliding-window check is on the longest.
  auto [x, cos, sin] = embed(host[0].view({1, N}), host[1].view({1, N}), longest);
  auto logits = run_layers(
      x,
      [&](size_t i, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
        k_[i].slice(2, 0, N).copy_(k);
        v_[i].slice(2, 0, N).copy_(v);
        std::vector<torch::Tensor> ys;
        for (size_t j = 0; j < prompts.size(); ++j) {
          const int64_t o = offset[j], P = int64_t(prompts[j].size());
          ys.push_back(attend(q.narrow(2, o, P), k.narrow(2, o, P), v.narrow(2, o, P), {},
                              /*causal=*/true));
        }
        return ys.size() == 1 ? ys[0] : torch::cat(ys, 2);
      },
      cos, sin, host[2].narrow(0, 0, int64_t(last.size())));
  length_ = N;
  return logits.squeeze(0);
}

torch::Tensor CachedDecoder::step_at(const torch::Tensor& ids_B1, const torch::Tensor& pos_B1,
                                     const torch::Tensor& slot_B1,
                                     const std::vector<int64_t>& lens) {
  torch::NoGradGuard no_grad;
  const LlamaConfig& c = model_->config();
  const int64_t B = ids_B1.size(0), K = c.num_key_value_heads, E = c.head_dim();
  const int64_t span = std::max<int64_t>(1, *std::max_element(lens.begin(), lens.end()));
  auto [x, cos, sin] = embed(ids_B1, pos_B1, span);
  const auto index = slot_B1.view({B, 1, 1, 1}).expand({B, K, 1, E});
  const std::vector<int64_t> begin(size_t(B), 0);
  return run_layers(
      x,
      [&](size_t i, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
        k_[i].scatter_(2, index, k);
        v_[i].scatter_(2, index, v);
        // Row b over its slots [0, lens[b]) only (a row not decoding, lens 0, gets zeros or,
        // through the mask, slot 0; its output is never used).
        return attend_rows(q, i, begin, lens);
      },
      cos, sin);
}

torch::Tensor CachedDecoder::attend_rows(const torch::Tensor& q_BH1E, size_t layer,
                                         const std::vector<int64_t>& begin,
                                         const std::vector<int64_t>& end) {
  const int64_t E = q_BH1E.size(3), B = q_BH1E.size(0);
  ASC_CHECK(int64_t(begin.size()) == B && int64_t(end.size()) == B,
            "attend_rows: {} / {} ranges for {} rows", begin.size(), end.size(), B);
  if (kernels::decode_attention_applies(q_BH1E, k_[layer]))
    return kernels::decode_attention(q_BH1E, k_[layer], v_[layer], begin, end,
                                     1.0 / std::sqrt(double(E)));
  // Elsewhere (GPU, bf16): one libtorch call over the batch, masked outside each row's range.
  const int64_t span = std::max<int64_t>(1, *std::max_element(end.begin(), end.end()));
  if (!rows_mask_.defined() || rows_mask_.size(-1) != span || rows_begin_ != begin ||
      rows_end_ != end) {
    auto visible = torch::zeros({B, 1, 1, span}, torch::kBool);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t lo = begin[size_t(b)], hi = end[size_t(b)];
      if (hi > lo)
        visible[b].narrow(-1, lo, hi - lo).fill_(true);
      else
        visible[b].narrow(-1, 0, 1).fill_(true);  // never all masked; the output is not used
    }
    rows_mask_ = visible.to(q_BH1E.device());
    rows_begin_ = begin, rows_end_ = end;
  }
  return attend(q_BH1E, k_[layer].slice(2, 0, span), v_[layer].slice(2, 0, span), rows_mask_);
}

torch::Tensor CachedDecoder::attend(const torch::Tensor& q_BHTE, torch::Tensor k_BKLE,
                                    torch::Tensor v_BKLE, const torch::Tensor& mask,
                                    bool causal) const {
  const int64_t B = k_BKLE.size(0), K = k_BKLE.size(1), L = k_BKLE.size(2), E = k_BKLE.size(3);
  const int64_t H = q_BHTE.size(1);
  if (K != H) {
    k_BKLE = k_BKLE.unsqueeze(2).expand({B, K, H / K, L, E}).reshape({B, H, L, E});
    v_BKLE = v_BKLE.unsqueeze(2).expand({B, K, H / K, L, E}).reshape({B, H, L, E});
  }
  return at::scaled_dot_product_attention(
      q_BHTE, k_BKLE, v_BKLE, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt, 0.0,
      causal, 1.0 / std::sqrt(double(E)));
}

torch::Tensor CachedDecoder::run_layers(torch::Tensor x, const AttendFn& attend_fn,
                                        const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& out_positions) {
  const LlamaConfig& c = model_->config();
  const int64_t B = x.size(0), T = x.size(1);
  const int64_t H = c.num_attention_heads, K = c.num_key_value_heads, E = c.head_dim();
  const int64_t I = c.intermediate_size;
  auto& m = model_->model;
  // Each product through kernels::small_m_linear: a decoding step's few rows read each weight
  // once (prefill's many rows take libtorch's GEMM); q/k/v and gate/up are one product each.
  using kernels::small_m_linear;
  for (size_t i = 0; i < m->layers->size(); ++i) {
    auto layer = m->layers->ptr<LlamaDecoderLayerImpl>(i);
    auto& attn = layer->self_attn;
    auto qkv = small_m_linear(layer->input_layernorm(x), qkv_[i]);
    auto q = qkv.narrow(-1, 0, H * E).view({B, T, H, E}).transpose(1, 2);
    auto k = qkv.narrow(-1, H * E, K * E).view({B, T, K, E}).transpose(1, 2);
    auto v = qkv.narrow(-1, (H + K) * E, K * E).view({B, T, K, E}).transpose(1, 2);
    q = ops::apply_rotary(q, cos, sin);
    k = ops::apply_rotary(k, cos, sin);
    auto y = attend_fn(i, q, k, v);  // stores k and v in the cache, attends
    x = x + small_m_linear(y.transpose(1, 2).reshape({B, T, H * E}), attn->o_proj->weight);
    auto gate_up = small_m_linear(layer->post_attention_layernorm(x), gate_up_[i]);
    x = x + small_m_linear(ops::swiglu(gate_up.narrow(-1, 0, I), gate_up.narrow(-1, I, I)),
                           layer->mlp->down_proj->weight);
  }
  auto last =
      m->norm(out_positions.defined() ? x.index_select(1, out_positions) : x.select(1, T - 1));
  return small_m_linear(last, model_->head_weight()).to(torch::kFloat32);
}

torch::Tensor warp_logits(torch::Tensor logits, const GenerationOptions& o) {
  if (o.temperature != 1.0) logits = logits / o.temperature;
  const int64_t V = logits.size(-1);
  if (o.top_k > 0 && o.top_k < V) {
    auto kth = std::get<0>(logits.topk(o.top_k, -1)).select(-1, o.top_k - 1).unsqueeze(-1);
    logits = logits.masked_fill(logits.lt(kth), kMinusInf);
  }
  if (o.top_p < 1.0) {
    // Ascending sort; drop the low tail whose cumulative probability is <= 1 - top_p, always
    // keeping the most likely token.
    auto [sorted, idx] = logits.sort(-1, /*descending=*/false);
    auto cum = sorted.softmax(-1).cumsum(-1);
    auto remove = cum.le(1.0 - o.top_p);
    remove.select(-1, V - 1).fill_(false);
    logits = logits.masked_fill(remove.scatter(-1, idx, remove), kMinusInf);
  }
  return logits;
}

int64_t generation_context(const LlamaConfig& c) {
  return c.sliding_window ? std::min(c.max_position_embeddings, *c.sliding_window)
                          : c.max_position_embeddings;
}

namespace {

// Whether `id` ends a row.
bool is_eos(int64_t id, const GenerationOptions& o) {
  return id == o.eos_id ||
         std::find(o.more_eos_ids.begin(), o.more_eos_ids.end(), id) != o.more_eos_ids.end();
}

// One generator for the batch, or one per prompt (GenerationOptions::prompt_seeds).
std::vector<at::Generator> generators(const GenerationOptions& o, int64_t prompts) {
  std::vector<at::Generator> g;
  if (o.prompt_seeds.empty()) {
    g.push_back(at::make_generator<at::CPUGeneratorImpl>(o.seed));
    return g;
  }
  ASC_CHECK(int64_t(o.prompt_seeds.size()) == prompts, "{} prompt seeds for {} prompts",
            o.prompt_seeds.size(), prompts);
  for (uint64_t s : o.prompt_seeds) g.push_back(at::make_generator<at::CPUGeneratorImpl>(s));
  return g;
}

// multinomial over the rows of probs_NV: with one generator for all, or row n with its own.
torch::Tensor draw(const torch::Tensor& probs_NV, int64_t k, std::vector<at::Generator>& gens) {
  if (gens.size() == 1) return at::multinomial(probs_NV, k, false, gens[0]);
  std::vector<torch::Tensor> rows;
  for (int64_t n = 0; n < probs_NV.size(0); ++n)
    rows.push_back(at::multinomial(probs_NV[n], k, false, gens[size_t(n)]));
  return torch::stack(rows);
}

struct Batch {
  torch::Tensor ids_RP, pos_RP, valid_RS, lens_R1;  // on the model's device
  int64_t P = 0, S = 0;
  // Per row, the slot of its prompt's first token (P - its length): after the prompt, a row's
  // valid slots are [begin, length), new tokens included (finished rows' pads too, as
  // transformers' attention mask grows for every row); valid_RS serves the prompt pass only.
  std::vector<int64_t> begin;
};

// Left-pads the prompts, each repeated `copies` times (beams), into a cache of P + max_new: ids,
// positions and the valid mask built on the host and moved to `dev` once, with each row's prompt
// length (lens_R1, for the positions of new tokens).
Batch left_pad(const std::vector<std::vector<int32_t>>& prompts, int64_t copies,
               const GenerationOptions& o, const LlamaConfig& c, const c10::Device& dev) {
  Batch b;
  const int64_t context = generation_context(c);
  for (const auto& p : prompts) {
    ASC_CHECK(!p.empty(), "an empty prompt (at least BOS is needed)");
    b.P = std::max(b.P, int64_t(p.size()));
    ASC_CHECK(int64_t(p.size()) + o.max_new_tokens <= context,
              "prompt of {} tokens + max_new_tokens {} exceeds the model's context of {} tokens{}",
              p.size(), o.max_new_tokens, context,
              context < c.max_position_embeddings
                  ? " (its sliding_window: attention past the window is not implemented)"
                  : "");
    for (int32_t id : p)
      ASC_CHECK(id >= 0 && id < c.vocab_size, "token id {} outside the model's vocabulary ({})", id,
                c.vocab_size);
  }
  b.S = b.P + o.max_new_tokens;
  const int64_t R = int64_t(prompts.size()) * copies;
  b.ids_RP = torch::full({R, b.P}, o.pad_id, torch::kInt64);
  b.pos_RP = torch::ones({R, b.P}, torch::kInt64);
  b.valid_RS = torch::zeros({R, b.S}, torch::kBool);
  b.lens_R1 = torch::empty({R, 1}, torch::kInt64);
  auto ids = b.ids_RP.accessor<int64_t, 2>();
  auto pos = b.pos_RP.accessor<int64_t, 2>();
  auto valid = b.valid_RS.accessor<bool, 2>();
  auto lens = b.lens_R1.accessor<int64_t, 2>();
  for (int64_t r = 0; r < R; ++r) {
    const auto& p = prompts[r / copies];
    const int64_t off = b.P - int64_t(p.size());
    lens[r][0] = int64_t(p.size());
    b.begin.push_back(off);
    for (size_t j = 0; j < p.size(); ++j) {
      ids[r][off + j] = p[j];
      pos[r][off + j] = int64_t(j);
      valid[r][off + j] = true;
    }
  }
  for (auto* t : {&b.ids_RP, &b.pos_RP, &b.valid_RS, &b.lens_R1}) *t = t->to(dev);
  return b;
}

std::vector<Generated> generate_plain(LlamaForCausalLM& model,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      const GenerationOptions& o) {
  const int64_t R = int64_t(prompts.size());
  const auto dev = model->model->embed_tokens->weight.device();
  Batch b = left_pad(prompts, 1, o, model->config(), dev);
  CachedDecoder dec(model, R, b.S);
  auto logits = dec.step(b.ids_RP, b.pos_RP, b.valid_RS);
  auto gens = generators(o, R);
  std::vector<Generated> out(R);
  std::vector<bool> done(R, false);
  for (int64_t t = 0; t < o.max_new_tokens; ++t) {
    // The step's one read: the sampled ids (drawn on the host from the probabilities computed
    // on the device, so that each prompt keeps its own host generator) or the argmax ids.
    torch::Tensor next;
    if (o.do_sample) {
      auto probs = warp_logits(logits, o).softmax(-1).cpu();
      next = draw(probs, 1, gens).view({R});
    } else {
      next = logits.argmax(-1).cpu();
    }
    auto nx = next.accessor<int64_t, 1>();
    bool all_done = true;
    for (int64_t r = 0; r < R; ++r) {
      if (done[r]) {
        nx[r] = o.pad_id;
        continue;
      }
      if (is_eos(nx[r], o)) {
        done[r] = true;
        out[r].ended_with_eos = true;
      } else {
        out[r].ids.push_back(int32_t(nx[r]));
        all_done = false;
      }
    }
    if (all_done || t + 1 == o.max_new_tokens) break;
    // The rows' valid slots are [begin, length): the prompt's mask is not read again.
    logits = dec.step(next.view({R, 1}).to(dev), b.lens_R1 + t, b.valid_RS, &b.begin);
  }
  return out;
}

// Continuous batching: B slots decode together; a slot whose answer ended takes the next
// prompt at once. Each slot keeps its own length in the cache (CachedDecoder::step_at), so a
// refill neither pushes the others along nor needs compacting, and attention spans the longest
// row only. The prompts taken in one round are prefilled in one pass, packed back to back (no
// padding; causal attention within each prompt).
std::vector<Generated> generate_continuous(LlamaForCausalLM& model,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerationOptions& o) {
  const LlamaConfig& c = model->config();
  const int64_t N = int64_t(prompts.size()), V = c.vocab_size;
  const int64_t B = std::max<int64_t>(1, std::min<int64_t>(o.continuous_slots, N));
  int64_t longest = 0;
  for (const auto& p : prompts) {
    Batch check = left_pad({p}, 1, o, c, c10::kCPU);  // the same checks as a static batch
    longest = std::max(longest, check.P);
  }
  const int64_t S = longest + o.max_new_tokens;  // a row's capacity
  const auto dev = model->model->embed_tokens->weight.device();
  const auto on_dev = [&](torch::Dtype t) { return torch::TensorOptions().dtype(t).device(dev); };
  CachedDecoder dec(model, B, S);
  auto gens = generators(o, N);
  std::vector<Generated> out(static_cast<size_t>(N));
  const auto nb = static_cast<size_t>(B);
  // Per slot: its prompt (-1: idle), tokens in its cache, answer tokens so far.
  std::vector<int64_t> slot_prompt(nb, -1), slot_len(nb, 0), slot_new(nb, 0);
  torch::Tensor last = torch::zeros({B, V}, on_dev(torch::kFloat32));  // each slot's logits
  int64_t next_prompt = 0;
  auto fill = [&](const std::vector<int64_t>& rows) {
    std::vector<int64_t> took;
    std::vector<std::vector<int32_t>> ps;
    for (int64_t b : rows) {
      slot_prompt[size_t(b)] = -1;
      if (next_prompt >= N) continue;
      took.push_back(b);
      ps.push_back(prompts[size_t(next_prompt)]);
      slot_prompt[size_t(b)] = next_prompt++;
    }
    if (took.empty()) return;
    // The round's prompts in one pass, packed back to back (no padding to compute; causal
    // attention within each prompt), then each copied into its slot.
    int64_t total = 0;
    for (const auto& p : ps) total += int64_t(p.size());
    CachedDecoder packed(model, 1, total);
    const auto logits = packed.prefill_packed(ps);
    int64_t from = 0;
    for (size_t j = 0; j < took.size(); ++j) {
      const int64_t b = took[j], P = int64_t(ps[j].size());
      last[b].copy_(logits[int64_t(j)]);
      dec.set_row(b, packed, 0, from, P);
      from += P;
      slot_len[size_t(b)] = P;
      slot_new[size_t(b)] = 0;
    }
  };
  std::vector<int64_t> all(nb);
  for (int64_t b = 0; b < B; ++b) all[size_t(b)] = b;
  fill(all);
  for (;;) {
    // The round's one read: every slot's next id (argmax), or every slot's probabilities for
    // the host draws (a slot refilled below decodes from the next round, so its draw waits).
    torch::Tensor probs, argmax;
    if (o.do_sample)
      probs = warp_logits(last, o).softmax(-1).cpu();
    else
      argmax = last.argmax(-1).cpu();
    std::vector<int64_t> tok(nb, o.pad_id), pos(nb, 0), slot(nb, 0), finished;
    std::vector<uint8_t> feed(nb, 0);
    bool active = false;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = slot_prompt[size_t(b)];
      if (n < 0) continue;
      active = true;
      int64_t id;
      if (o.do_sample) {
        auto& g = gens.size() == 1 ? gens[0] : gens[size_t(n)];
        id = at::multinomial(probs[b].unsqueeze(0), 1, false, g).view({-1})[0].item<int64_t>();
      } else {
        id = argmax[b].item<int64_t>();
      }
      Generated& g = out[size_t(n)];
      ++slot_new[size_t(b)];
      bool done = false;
      if (is_eos(id, o)) {
        g.ended_with_eos = true;
        done = true;
      } else {
        g.ids.push_back(int32_t(id));
        done = slot_new[size_t(b)] == o.max_new_tokens;
      }
      if (done) {  // the slot takes the next prompt; it decodes from the next round
        finished.push_back(b);
        continue;
      }
      tok[size_t(b)] = id;
      pos[size_t(b)] = slot[size_t(b)] = slot_len[size_t(b)]++;  // position = tokens before it
      feed[size_t(b)] = 1;
    }
    if (!active) break;
    fill(finished);
    if (std::none_of(feed.begin(), feed.end(), [](uint8_t f) { return f != 0; })) continue;
    for (int64_t b = 0; b < B; ++b)  // a slot not fed writes a pad where no token of it lies
      if (!feed[size_t(b)]) slot[size_t(b)] = slot_prompt[size_t(b)] >= 0 ? slot_len[size_t(b)] : 0;
    // The fed slots' ids, positions, slots and flags go to the device together; a slot not fed
    // (refilled or idle) writes a pad at a slot it does not count, overwritten later.
    auto host =
        torch::stack({torch::tensor(tok, torch::kInt64), torch::tensor(pos, torch::kInt64),
                      torch::tensor(slot, torch::kInt64),
                      torch::tensor(std::vector<int64_t>(feed.begin(), feed.end()), torch::kInt64)},
                     1);
    const auto moved = host.to(dev);
    const auto slot_B1 = moved.slice(1, 2, 3), feed_B1 = moved.slice(1, 3, 4).to(torch::kBool);
    std::vector<int64_t> lens(nb, 0);
    for (size_t b = 0; b < nb; ++b)
      if (feed[b]) lens[b] = slot[b] + 1;
    auto logits = dec.step_at(moved.slice(1, 0, 1), moved.slice(1, 1, 2), slot_B1, lens);
    last = torch::where(feed_B1, logits, last);
  }
  return out;
}

// Finished hypotheses of one prompt: the best `capacity` by length-normalised score.
struct Hypotheses {
  struct Hyp {
    double score;
    std::vector<int32_t> ids;
    bool eos;
  };
  std::vector<Hyp> hyps;
  size_t capacity = 1;
  bool done = false;
  double worst() const {
    double w = std::numeric_limits<double>::infinity();
    for (const auto& h : hyps) w = std::min(w, h.score);
    return w;
  }
  void add(double score, std::vector<int32_t> ids, bool eos) {
    if (hyps.size() >= capacity && score <= worst()) return;
    hyps.push_back({score, std::move(ids), eos});
    if (hyps.size() > capacity) {
      auto it = std::min_element(hyps.begin(), hyps.end(),
                                 [](const Hyp& a, const Hyp& b) { return a.score < b.score; });
      hyps.erase(it);
    }
  }
};

std::vector<Generated> generate_beams(LlamaForCausalLM& model,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      const GenerationOptions& o) {
  const int64_t N = int64_t(prompts.size()), nb = o.num_beams, R = N * nb;
  const int64_t V = model->config().vocab_size;
  const auto dev = model->model->embed_tokens->weight.device();
  Batch b = left_pad(prompts, nb, o, model->config(), dev);
  CachedDecoder dec(model, R, b.S);
  auto logits = dec.step(b.ids_RP, b.pos_RP, b.valid_RS);
  auto gens = generators(o, N);

  // Running beams: summed log-probabilities (beam 0 only at the start, so the first step
  // picks distinct tokens) and their generated ids.
  std::vector<double> beam_score(R, -1e9);
  for (int64_t n = 0; n < N; ++n) beam_score[n * nb] = 0.0;
  std::vector<std::vector<int32_t>> seqs(R);
  std::vector<Hypotheses> hyp(N);
  for (auto& h : hyp) h.capacity = size_t(nb);
  auto lp = [&](int64_t len) { return std::pow(double(len), o.length_penalty); };

  for (int64_t t = 0; t < o.max_new_tokens; ++t) {
    // Scores on the device; the host reads the 2 x beams candidates of each prompt (their ids
    // and scores), or with sampling the probabilities its generators draw them from.
    auto logp = torch::log_softmax(logits, -1);
    if (o.do_sample) logp = warp_logits(logp, o);
    auto scores =
        torch::tensor(beam_score, torch::kFloat64).to(torch::kFloat32).view({R, 1}).to(dev);
    auto cand = (logp + scores).view({N, nb * V});
    torch::Tensor vals, idx;
    if (o.do_sample) {
      idx = draw(cand.softmax(-1).cpu(), 2 * nb, gens);
      vals = cand.gather(-1, idx.to(dev)).cpu();
      auto [sv, order] = vals.sort(-1, /*descending=*/true);
      vals = sv;
      idx = idx.gather(-1, order);
    } else {
      std::tie(vals, idx) = cand.topk(2 * nb, -1);
      vals = vals.cpu(), idx = idx.cpu();
    }
    auto va = vals.accessor<float, 2>();
    auto ia = idx.accessor<int64_t, 2>();
    std::vector<int64_t> src(R), tok(R);
    std::vector<double> next_score(R);
    for (int64_t n = 0; n < N; ++n) {
      int64_t filled = 0;
      if (hyp[n].done) {  // finished prompts carry pad tokens along
        for (int64_t j = 0; j < nb; ++j) {
          src[n * nb + j] = n * nb + j;
          tok[n * nb + j] = o.pad_id;
          next_score[n * nb + j] = 0.0;
        }
        continue;
      }
      for (int64_t c = 0; c < 2 * nb && filled < nb; ++c) {
        const int64_t beam = ia[n][c] / V, token = ia[n][c] % V, row = n * nb + beam;
        if (is_eos(token, o)) {
          if (c < nb) hyp[n].add(double(va[n][c]) / lp(t + 1), seqs[row], true);
          continue;
        }
        src[n * nb + filled] = row;
        tok[n * nb + filled] = token;
        next_score[n * nb + filled] = double(va[n][c]);
        ++filled;
      }
      ASC_CHECK(filled == nb, "beam search found fewer than {} continuations", nb);
      // Done when no running beam can beat the worst kept hypothesis any more.
      if (hyp[n].hyps.size() >= size_t(nb) && hyp[n].worst() >= double(va[n][0]) / lp(t + 1))
        hyp[n].done = true;
    }
    std::vector<std::vector<int32_t>> next_seqs(R);
    for (int64_t r = 0; r < R; ++r) {
      next_seqs[r] = seqs[src[r]];
      next_seqs[r].push_back(int32_t(tok[r]));
    }
    seqs = std::move(next_seqs);
    beam_score = next_score;
    bool all_done = true;
    for (const auto& h : hyp) all_done = all_done && h.done;
    if (all_done || t + 1 == o.max_new_tokens) break;
    // The chosen rows and their next ids go to the device together.
    auto moved =
        torch::stack({torch::tensor(src, torch::kInt64), torch::tensor(tok, torch::kInt64)})
            .to(dev);
    const auto rows = moved[0];
    dec.select_rows(rows);
    // Rows are reordered within their prompt, so `begin` still holds (the mask is not read).
    logits = dec.step(moved[1].view({R, 1}), b.lens_R1 + t, b.valid_RS, &b.begin);
  }
  std::vector<Generated> out(N);
  for (int64_t n = 0; n < N; ++n) {
    if (!hyp[n].done)  // out of tokens: the running beams compete too
      for (int64_t j = 0; j < nb; ++j)
        hyp[n].add(beam_score[n * nb + j] / lp(int64_t(seqs[n * nb + j].size())), seqs[n * nb + j],
                   false);
    const auto best =
        std::max_element(hyp[n].hyps.begin(), hyp[n].hyps.end(),
                         [](const auto& a, const auto& b) { return a.score < b.score; });
    out[n].ids = best->ids;
    out[n].ended_with_eos = best->eos;
  }
  return out;
}

}  // namespace

std::vector<Generated> generate(LlamaForCausalLM& model,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const GenerationOptions& o) {
  ASC_CHECK(o.max_new_tokens >= 1, "max_new_tokens must be at least 1 (got {})", o.max_new_tokens);
  ASC_CHECK(o.num_beams >= 1, "num_beams must be at least 1 (got {})", o.num_beams);
  ASC_CHECK(o.temperature > 0, "temperature must be positive (got {})", o.temperature);
  ASC_CHECK(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1] (got {})", o.top_p);
  ASC_CHECK(o.top_k >= 0, "top_k must be >= 0 (got {})", o.top_k);
  ASC_CHECK(!(o.do_sample && o.num_beams > 1 && o.top_k > 0 && o.top_k < 2 * o.num_beams),
            "beam sampling draws 2 x num_beams candidates: top_k {} must be at least {} (or 0)",
            o.top_k, 2 * o.num_beams);
  if (prompts.empty()) return {};
  torch::NoGradGuard no_grad;
  if (o.num_beams == 1 && o.continuous) return generate_continuous(model, prompts, o);
  return o.num_beams == 1 ? generate_plain(model, prompts, o) : generate_beams(model, prompts, o);
}

}  // namespace asc
