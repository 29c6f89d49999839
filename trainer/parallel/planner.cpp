#include "parallel/planner.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"
#include "common/host_memory.h"
#include "config/recipe.h"

namespace asc {
namespace {

// The engine's units: 0 = embedding + final norm + head; 1+i = decoder layer i.
std::vector<int64_t> unit_sizes(const LlamaConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim();
  const int64_t q = H * c.num_attention_heads * hd, kv = H * c.num_key_value_heads * hd;
  const int64_t layer = q + 2 * kv + c.num_attention_heads * hd * H + 3 * H * I + 2 * H;
  std::vector<int64_t> u{c.vocab_size * H + H + (c.tie_word_embeddings ? 0 : c.vocab_size * H)};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) u.push_back(layer);
  return u;
}

double gib(int64_t b) {
  return double(b) / double(1ull << 30);
}

}  // namespace

int64_t MemoryPlan::peak() const {
  return model_state() + gathered_peak + logits + std::max(activations_ckpt, int64_t(0));
}

MemoryPlanInput plan_input(const Recipe& r, const LlamaConfig& model, int64_t world_size) {
  MemoryPlanInput in;
  in.model = model;
  in.mode = r.parallel.mode;
  in.world_size = world_size;
  in.compute_bytes = r.train.dtype == DType::kBf16 ? 2 : 4;
  in.micro_batch = r.train.micro_batch_size;
  in.seq_len = r.data.seq_len;
  in.activation_checkpointing = r.parallel.activation_checkpointing.value_or(false);
  in.loss_chunk_rows = r.train.loss_chunk_rows;
  in.on_device = r.train.device == DeviceKind::kCuda;
  return in;
}

void check_plan_fits_host(const Recipe& r, const MemoryPlanInput& in, int64_t ranks_on_node) {
  if (in.on_device || !r.train.check_memory) return;
  const long long host = usable_memory_bytes();
  if (host <= 0) return;
  const int64_t ranks = std::max<int64_t>(1, ranks_on_node);
  const MemoryPlan p = plan_memory(in);
  if (p.peak() <= host / ranks) return;
  ASC_FAIL_HINT(
      "see `asclepius plan` for the breakdown; shorten data.seq_len or train.micro_batch_size, "
      "turn on parallel.activation_checkpointing or train.loss_chunk_rows, use more nodes, or "
      "set train.check_memory: false if the estimate is wrong for you",
      "{}: this run needs about {:.1f} GiB per rank (model state {:.1f}, activations {:.1f}, "
      "logits {:.1f}) but the node has {:.1f} GiB for each of its {} rank(s)",
      r.source, gib(p.peak()), gib(p.model_state()), gib(p.activations_ckpt), gib(p.logits),
      gib(host) / double(ranks), ranks);
}

void check_plan_fits_device(const Recipe& r, const MemoryPlanInput& in, int64_t device_bytes) {
  if (!in.on_device || !r.train.check_memory || device_bytes <= 0) return;
  const MemoryPlan p = plan_memory(in);
  if (p.peak() <= device_bytes) return;
  ASC_FAIL_HINT(
      "see `asclepius plan --gpu-memory-gb` for the breakdown; use more GPUs (fsdp shards the "
      "model state), turn on parallel.activation_checkpointing or train.loss_chunk_rows, shorten "
      "data.seq_len or train.micro_batch_size, or set train.check_memory: false if the estimate is "
      "wrong for you",
      "{}: this run needs about {:.1f} GiB per GPU (model state {:.1f}, activations {:.1f}, "
      "logits {:.1f}) but the GPU has {:.1f} GiB",
      r.source, gib(p.peak()), gib(p.model_state()), gib(p.activations_ckpt), gib(p.logits),
      gib(device_bytes));
}

MemoryPlan plan_memory(const MemoryPlanInput& in) {
  MemoryPlan p;
  const LlamaConfig& c = in.model;
  const int64_t W = in.world_size, es = in.compute_bytes;
  const bool sharded = in.mode == ParallelMode::kZero2 || in.mode == ParallelMode::kFsdp;
  const bool bf16 = es == 2;
  int64_t flat = 0, padded_sum = 0, numel_sum = 0, largest = 0;
  for (int64_t n : unit_sizes(c)) {
    const int64_t padded = sharded ? (n + W - 1) / W * W : n;
    flat += sharded ? padded / W : n;
    padded_sum += padded, numel_sum += n;
    largest = std::max(largest, padded);
  }
  p.num_parameters = numel_sum;
  p.master = flat * 4;
  p.optimizer = 2 * flat * 4;
  p.grads = flat * 4;                               // the fp32 gradient accumulator (owned)
  p.params = bf16 ? flat * es : 0;                  // fp32: the parameters are the master weights
  if (!sharded && bf16) p.grads += numel_sum * es;  // none, ddp: the bf16 gradients autograd fills
  if (in.mode == ParallelMode::kZero2) p.params += padded_sum * es, p.grads += padded_sum * es;
  if (in.mode == ParallelMode::kFsdp) {
    const auto units = unit_sizes(c);
    const int64_t root = (units[0] + W - 1) / W * W;
    const int64_t layer = units.size() > 1 ? (units[1] + W - 1) / W * W : 0;
    p.largest_gather = largest * es;
    // Root parameters and gradients, the computing and the prefetched layer, one layer's
    // gradients (+ their fp32 copy for the reduction in bf16).
    p.gathered_peak = (2 * root + 3 * layer) * es + (bf16 ? (root + layer) * 4 : 0);
  }
  // The MPI backend reduce-scatters through an all-reduce of an fp32 copy of the unit.
  if (sharded && W > 1) p.gathered_peak += largest * 4;
  // Activations (estimates): per layer the tensors autograd saves — the layer input, two norm
  // outputs, q/k/v, the attention output, the residual, gate, up, silu(gate) and their product —
  // plus the attention probabilities of the math kernel (B·heads·T² elements; none on a device,
  // where libtorch's flash / memory-efficient kernels run).
  const int64_t B = in.micro_batch, T = in.seq_len, H = c.hidden_size, I = c.intermediate_size;
  const int64_t qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim();
  const int64_t probs = in.on_device ? 0 : B * c.num_attention_heads * T * T * es;
  const int64_t per_layer = B * T * (5 * H + qkv + 4 * I) * es + probs;
  p.activations_full = c.num_hidden_layers * per_layer;
  p.activations_ckpt = c.num_hidden_layers * B * T * H * es + per_layer;
  if (!in.activation_checkpointing) p.activations_ckpt = p.activations_full;
  const int64_t logit_rows = in.loss_chunk_rows > 0 ? std::min(B * T, in.loss_chunk_rows) : B * T;
  p.logits = logit_rows * c.vocab_size * (es + 4 + 4);
  const int64_t init_chunk = int64_t(4) << 20;  // one 2^20-element fp32 chunk
  if (!in.on_device) {
    p.host_at_load = init_chunk + p.model_state();
    p.host_at_save = p.model_state() + p.master + p.optimizer;
  } else {
    const int64_t share = sharded ? largest / W : largest;
    p.host_at_load = std::max(init_chunk, share * 4);
    p.host_at_save = p.master + p.optimizer;
  }
  return p;
}

std::string format_plan(const MemoryPlanInput& in, const MemoryPlan& p, double gpu_memory_gb) {
  std::string s = fmt::format(
      "model: {:.3f} B parameters, {} layers; parallel.mode {} on {} rank{}; compute {}; "
      "micro-batch "
      "{} x {} tokens; activation checkpointing {}\n\n",
      double(p.num_parameters) / 1e9, in.model.num_hidden_layers, name(in.mode), in.world_size,
      in.world_size == 1 ? "" : "s", in.compute_bytes == 2 ? "bf16" : "fp32", in.micro_batch,
      in.seq_len, in.activation_checkpointing ? "on" : "off");
  auto row = [&](const char* what, int64_t b, const char* note = "") {
    s += fmt::format("  {:<42} {:>10.3f} GiB  {}\n", what, gib(b), note);
  };
  s += "per rank, persistent:\n";
  row("parameters (compute dtype)", p.params);
  row("gradients", p.grads);
  row("master weights (fp32)", p.master);
  row("AdamW moments (fp32)", p.optimizer);
  row("model state", p.model_state());
  s += "per rank, transient:\n";
  row("largest all-gather buffer", p.largest_gather);
  row("gathered units + reduction buffers", p.gathered_peak);
  row("activations as configured", p.activations_ckpt, "estimate, one micro-batch");
  row("activations without checkpointing", p.activations_full, "estimate, one micro-batch");
  row("logits + their gradient (fp32)", p.logits);
  row("peak as configured", p.peak());
  s += "per rank, host:\n";
  if (in.on_device) {
    row("at load (one owned range staged at a time)", p.host_at_load);
    row("at an async save (own shard staged)", p.host_at_save, "model state on the device");
  } else {
    row("at load (own shards filled directly)", p.host_at_load);
    row("at an async save (own shard staged)", p.host_at_save);
  }
  if (gpu_memory_gb > 0) {
    const bool fits = gib(p.peak()) <= gpu_memory_gb;
    s += fmt::format("\nfits in {:.0f} GiB per device: {} (peak {:.1f} GiB, {:.0f}%)\n",
                     gpu_memory_gb, fits ? "yes" : "NO", gib(p.peak()),
                     100.0 * gib(p.peak()) / gpu_memory_gb);
  }
  return s;
}

}  // namespace asc
