#include "parallel/planner.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"
#include "common/host_memory.h"
#include "config/recipe.h"

namespace asc {
namespace {

std::vector<int64_t> unit_sizes(const LlamaConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim();
  const int64_t q = H * c.num_attention_heads * hd, kv = H * c.num_key_value_heads * hd;
  const int64_t layer = q + 2 * kv + c.num_attention_heads * hd * H + 3 * H * I + 2 * H;
  // The engine's units (parallel/engine.h): the embedding, the layers, the final norm and the
  // head; tied, the final norm joins the embedding's unit, which the head uses.
  std::vector<int64_t> u{c.vocab_size * H + (c.tie_word_embeddings ? H : 0)};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) u.push_back(layer);
  if (!c.tie_word_embeddings) u.push_back(H + c.vocab_size * H);
  return u;
}

double gib(int64_t b) {
  return double(b) / double(1ull << 30);
}

}  // namespace

int64_t MemoryPlan::peak() const {
  return model_state() + gathered_peak + logits + std::max(activations_ckpt, int64_t(0));
}

int64_t MemoryPlan::host_peak() const {
  if (on_device)  // the model state and transients are on the device; the host stages
    return runtime + std::max(host_at_load, async_staging);
  return runtime + model_state() + transient_host + allocator_cache + async_staging;
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
  in.cache_host_memory = r.train.cache_host_memory;
  in.async_save = r.checkpoint.async && r.checkpoint.every_steps > 0;
  return in;
}

namespace {

// One alternative setting and what it would need per rank.
struct Fix {
  std::string setting;
  int64_t need = 0;
};

// The settings that change the plan, each alone, with what each would need per rank (`need`:
// host_peak or peak). Those that fit `budget` come first; at most one micro-batch size and one
// world size (the smallest that fits, else the last tried).
std::vector<Fix> fixes(const MemoryPlanInput& in, int64_t budget, int64_t ranks_on_node,
                       int64_t (*need)(const MemoryPlan&)) {
  std::vector<Fix> out;
  auto try_one = [&](const std::string& setting, MemoryPlanInput alt) {
    out.push_back({setting, need(plan_memory(alt))});
    return out.back().need <= budget;
  };
  // Each setting as evaluated: the others as now (activation checkpointing included, which a
  // recipe that does not set it gets on with fsdp).
  const std::string ckpt = in.mode == ParallelMode::kFsdp ? ""
                           : in.activation_checkpointing
                               ? " parallel.activation_checkpointing=true"
                               : " parallel.activation_checkpointing=false";
  if (in.mode != ParallelMode::kFsdp && in.world_size > 1) {
    MemoryPlanInput a = in;
    a.mode = ParallelMode::kFsdp;
    try_one("parallel.mode=fsdp" + ckpt, a);
  }
  if (!in.activation_checkpointing) {
    MemoryPlanInput a = in;
    a.activation_checkpointing = true;
    try_one("parallel.activation_checkpointing=true", a);
  }
  if (in.loss_chunk_rows == 0 && in.micro_batch * in.seq_len > 1024) {
    MemoryPlanInput a = in;
    a.loss_chunk_rows = 1024;
    try_one("train.loss_chunk_rows=1024", a);
  }
  for (int64_t mb = in.micro_batch / 2; mb >= 1; mb /= 2) {
    MemoryPlanInput a = in;
    a.micro_batch = mb;
    const bool fits = try_one(fmt::format("train.micro_batch_size={}", mb), a);
    if (fits || mb == 1) break;
    out.pop_back();
  }
  for (int64_t k = 2; k <= 64; k *= 2) {  // more nodes, as many ranks on each as now
    MemoryPlanInput a = in;
    a.mode = ParallelMode::kFsdp, a.world_size = in.world_size * k;
    const bool fits =
        try_one(fmt::format("fsdp on {} ranks ({} nodes of {} ranks)", a.world_size,
                            (a.world_size + ranks_on_node - 1) / ranks_on_node, ranks_on_node),
                a);
    if (fits || k == 64) break;
    out.pop_back();
  }
  std::stable_partition(out.begin(), out.end(), [&](const Fix& f) { return f.need <= budget; });
  return out;
}

std::string format_fixes(const std::vector<Fix>& fs, int64_t budget, const char* per) {
  // One line (an error is one line): the settings joined by "; ".
  std::string s;
  for (const Fix& f : fs)
    s += fmt::format("{}{} would need {:.2f} GiB per {} ({})", s.empty() ? " " : "; ", f.setting,
                     gib(f.need), per, f.need <= budget ? "fits" : "does not fit");
  return s.empty() ? " none of the usual settings changes it" : s;
}

int64_t host_need(const MemoryPlan& p) {
  return p.host_peak();
}
int64_t device_need(const MemoryPlan& p) {
  return p.peak();
}

}  // namespace

int64_t host_bytes_per_rank(int64_t ranks_on_node) {
  const int64_t ranks = std::max<int64_t>(1, ranks_on_node);
  long long node = node_memory_bytes();
  // MemAvailable does not count what the node's ranks already hold (about their runtime each).
  const long long avail = available_memory_bytes();
  if (avail > 0) {
    const long long free_for_us = avail + resident_bytes() * ranks;
    node = node > 0 ? std::min(node, free_for_us) : free_for_us;
  }
  long long per_rank = node > 0 ? node / ranks : 0;
  const long long own = process_memory_limit_bytes();  // ulimit -v: each process its own
  if (own > 0) per_rank = per_rank > 0 ? std::min(per_rank, own) : own;
  return per_rank;
}

void check_plan_fits_host(const Recipe& r, const MemoryPlanInput& in, int64_t ranks_on_node,
                          int64_t bytes_per_rank) {
  if (!r.train.check_memory || bytes_per_rank <= 0) return;
  const int64_t ranks = std::max<int64_t>(1, ranks_on_node);
  const MemoryPlan p = plan_memory(in);
  if (p.host_peak() <= bytes_per_rank) return;
  ASC_FAIL_HINT(
      "see `asclepius plan` for the breakdown; use a setting that fits, more nodes, "
      "or train.check_memory: false if the estimate is wrong for you (the kernel's OOM killer "
      "then decides)",
      "{}: this run needs about {:.2f} GiB of host memory per rank (runtime {:.2f}, model state "
      "{:.2f}, transient {:.2f} of which logits {:.2f} and activations {:.2f}, allocator cache "
      "{:.2f}, async staging {:.2f}) x {} rank(s) on this node = {:.1f} GiB, but the node has "
      "{:.1f} GiB for them ({:.2f} GiB per rank: the least of its memory, its cgroup's limit and "
      "MemAvailable plus what the ranks hold now, shared by its ranks, and ulimit -v). Instead, "
      "each alone:{}",
      r.source, gib(p.host_peak()), gib(p.runtime), gib(p.model_state()), gib(p.transient_host),
      gib(p.logits), gib(p.activations_ckpt), gib(p.allocator_cache), gib(p.async_staging), ranks,
      gib(p.host_peak() * ranks), gib(bytes_per_rank * ranks), gib(bytes_per_rank),
      format_fixes(fixes(in, bytes_per_rank, ranks, host_need), bytes_per_rank, "rank"));
}

void check_plan_fits_device(const Recipe& r, const MemoryPlanInput& in, int64_t device_bytes) {
  if (!in.on_device || !r.train.check_memory || device_bytes <= 0) return;
  const MemoryPlan p = plan_memory(in);
  if (p.peak() <= device_bytes) return;
  ASC_FAIL_HINT(
      "see `asclepius plan --gpu-memory-gb` for the breakdown; use a setting that fits, or set "
      "train.check_memory: false if the estimate is wrong for you",
      "{}: this run needs about {:.1f} GiB per GPU (model state {:.1f}, activations {:.1f}, "
      "logits {:.1f}) but the GPU has {:.1f} GiB. Instead, each alone:{}",
      r.source, gib(p.peak()), gib(p.model_state()), gib(p.activations_ckpt), gib(p.logits),
      gib(device_bytes),
      format_fixes(fixes(in, device_bytes, std::max(1, int(in.world_size)), device_need),
                   device_bytes, "GPU"));
}

namespace {

// What a CPU rank holds beyond the device-style plan, measured on x86-64 Linux with libtorch 2.x
// and Open MPI (tests/parallel/plan_memory_test.sh compares them; docs/PERFORMANCE.md):
// - the runtime: about 370 MiB whatever the model (libtorch's and Open MPI's libraries, thread
//   pools, the autograd engine, the first step's lazy set-up);
// - live transients: the larger of two phases that do not overlap, the loss's backward (the
//   units gathered then, the logits and their gradients, the activations) and the layers'
//   backward with a gradient reduction in flight (gathered_peak; the MPI backend reduces in the
//   gradient itself, no copy); the loss's backward also holds the head's weight gradient before
//   autograd adds it into the gradient buffer (vocab x hidden) and the loss's fp32 copy of the
//   shifted logits (rows x vocab);
// - with train.cache_host_memory, the heap keeps what a step frees; the holes between a step's
//   blocks that the next step cannot fill cost, measured, half the live transient peak. Without
//   it, glibc's malloc still keeps freed blocks below its mmap threshold (32 MiB at most) in its
//   heap: where a layer's unit is that small, measured about a quarter of the transient peak;
//   larger blocks are mapped and unmapped, and nothing stays (the 1.1B preset).
void plan_host_resident(const MemoryPlanInput& in, int64_t head_grad, int64_t logits_copy,
                        int64_t layer_bytes, MemoryPlan& p) {
  constexpr int64_t kMiB = int64_t(1) << 20;
  p.on_device = in.on_device;
  p.runtime = 370 * kMiB;
  p.async_staging = in.async_save ? p.master + p.optimizer : 0;
  const int64_t loss_phase = p.loss_gathered + p.logits + head_grad + logits_copy +
                             std::max(p.activations_ckpt, int64_t(0));
  p.transient_host = std::max(loss_phase, p.gathered_peak);
  constexpr int64_t kGlibcMmapThresholdMax = 32 * kMiB;
  if (in.on_device)
    p.allocator_cache = 0;
  else if (in.cache_host_memory)
    p.allocator_cache = p.transient_host / 2;
  else
    p.allocator_cache = layer_bytes < kGlibcMmapThresholdMax ? p.transient_host / 4 : 0;
}

}  // namespace

MemoryPlan plan_memory(const MemoryPlanInput& in) {
  MemoryPlan p;
  const LlamaConfig& c = in.model;
  const int64_t W = in.world_size, es = in.compute_bytes;
  const bool sharded = in.mode == ParallelMode::kZero2 || in.mode == ParallelMode::kFsdp;
  const bool bf16 = es == 2;
  ASC_CHECK(c.num_hidden_layers >= 1, "memory plan: a model without decoder layers");
  const std::vector<int64_t> units = unit_sizes(c);
  int64_t flat = 0, padded_sum = 0, numel_sum = 0, largest = 0;
  for (int64_t n : units) {
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
    auto padded = [W](int64_t n) { return (n + W - 1) / W * W; };
    const int64_t layer = padded(units[1]);
    p.largest_gather = largest * es;
    if (c.tie_word_embeddings) {
      // Unit 0's parameters and gradients for the whole pass, the computing and the prefetched
      // layer, one layer's gradients (+ their fp32 copies for the reduction in bf16).
      const int64_t root = padded(units[0]);
      p.gathered_peak = (2 * root + 3 * layer) * es + (bf16 ? (root + layer) * 4 : 0);
      p.loss_gathered = p.gathered_peak;
    } else {
      // The loss's backward: the head's unit, its parameters and gradients. Then the layers'
      // backward: the computing layer, its gradients and the prefetched layer, while the
      // head's gradient (in fp32) is reduced, later a layer's (bf16: + the computing layer's
      // fp32 copy). Last the embedding's: autograd's gradient (+ its fp32 copy in bf16) while
      // layer 0's is reduced.
      const int64_t top = padded(units.back()), embedding = padded(units[0]);
      p.loss_gathered = 2 * top * es;
      const int64_t layers = 3 * layer * es + top * 4 + (bf16 ? layer * 4 : 0);
      const int64_t embed = embedding * (es + (bf16 ? 4 : 0)) + layer * 4;
      p.gathered_peak = std::max({p.loss_gathered, layers, embed});
    }
  }
  // zero2 in bf16 reduces an fp32 copy of each unit's gradient, one in flight while the next is
  // made (fp32 reduces in the gradient itself).
  if (in.mode == ParallelMode::kZero2 && bf16) p.gathered_peak = 2 * largest * 4;
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
  plan_host_resident(in, c.vocab_size * c.hidden_size * es, logit_rows * c.vocab_size * 4,
                     units[1] * es, p);
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
  s += "per rank, resident (what the process holds):\n";
  row("runtime (libtorch, MPI, threads)", p.runtime, "measured constant");
  if (!in.on_device) {
    row("model state", p.model_state());
    row("transient (the larger phase)", p.transient_host);
    row("allocator cache (freed, kept)", p.allocator_cache,
        in.cache_host_memory ? "train.cache_host_memory" : "glibc's heap (cache off)");
  }
  if (p.async_staging > 0) row("async save staging", p.async_staging, "checkpoint.async");
  row("peak resident", p.host_peak(), in.on_device ? "host side" : "");
  if (gpu_memory_gb > 0) {
    const bool fits = gib(p.peak()) <= gpu_memory_gb;
    s += fmt::format("\nfits in {:.0f} GiB per device: {} (peak {:.1f} GiB, {:.0f}%)\n",
                     gpu_memory_gb, fits ? "yes" : "NO", gib(p.peak()),
                     100.0 * gib(p.peak()) / gpu_memory_gb);
  }
  return s;
}

}  // namespace asc
