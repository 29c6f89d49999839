// planner.h — per-rank memory of a recipe at a world size, predicted from the model's shape and
// the parallel engine's layout (parallel/engine.h), without building anything. `asclepius plan`
// prints it; a test checks the model-state prediction against what the engine allocates.
// No libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/choices.h"
#include "model/llama_config.h"

namespace asc {

struct Recipe;  // config/recipe.h

struct MemoryPlanInput {
  LlamaConfig model;
  ParallelMode mode = ParallelMode::kFsdp;
  int64_t world_size = 1;
  int64_t compute_bytes = 4;  // 4 (fp32) or 2 (bf16)
  int64_t micro_batch = 1, seq_len = 2048;
  bool activation_checkpointing = true;
  int64_t loss_chunk_rows = 0;  // train.loss_chunk_rows: > 0, the logits exist a chunk at a time
  // train.device cuda: the model state and activations live in device memory (the host holds
  // staging buffers only), and attention runs libtorch's flash / memory-efficient kernels, which
  // keep no [T, T] probabilities.
  bool on_device = false;
  // Host memory of the process (CPU runs): train.cache_host_memory keeps freed blocks for reuse
  // (common/host_memory.h); checkpoint.async with a save period keeps a staging copy.
  bool cache_host_memory = true;
  bool async_save = false;
};

struct MemoryPlan {
  // Persistent model state per rank (what the engine allocates and keeps).
  int64_t params = 0, grads = 0, master = 0, optimizer = 0;
  int64_t model_state() const { return params + grads + master + optimizer; }
  // Transient, per rank.
  int64_t largest_gather = 0;    // the largest all-gathered unit, compute dtype (fsdp)
  int64_t gathered_peak = 0;     // fsdp: the most gathered at once (units, their gradients,
                                 // a gradient reduction in flight)
  int64_t loss_gathered = 0;     // fsdp: what is gathered during the loss's backward
  int64_t activations_ckpt = 0;  // one micro-batch as configured (checkpointing or not), estimate
  int64_t activations_full = 0;  // one micro-batch, every activation kept (estimate)
  int64_t logits = 0;            // logits in fp32 and their gradient (one micro-batch, or
                                 // one chunk of rows with train.loss_chunk_rows)
  int64_t peak() const;          // model state + transient + activations as configured
  // Host memory of the process at load (a parallel mode fills each rank's shards directly, one
  // 2^20-element chunk or checkpoint range at a time; mode none builds the whole fp32 model
  // first) and at an asynchronous save (checkpoint.async: a staging copy of the rank's own
  // master weights and moments; a synchronous save writes from the optimizer's buffers and
  // needs nothing beyond the model state). On a device the model state is not on the host: at
  // load it holds one owned range (at most the largest unit's share, in fp32) at a time.
  int64_t host_at_load = 0, host_at_save = 0;
  int64_t num_parameters = 0;
  // What a CPU rank really holds (resident), beyond the plan's device-style peak (measured on
  // x86-64 Linux, libtorch 2.x, Open MPI; tests/parallel/plan_memory_test.sh compares them):
  int64_t runtime = 0;          // libtorch, MPI, thread pools, the first step's lazy set-up
  int64_t transient_host = 0;   // the live transient peak: the larger of the loss's backward
                                // (gathered units, logits, activations) and the layers' backward
                                // with a gradient reduction in flight
  int64_t allocator_cache = 0;  // freed blocks the heap keeps (train.cache_host_memory, or with
                                // it off glibc's heap): holes between a step's transients that
                                // the next one cannot fill
  int64_t async_staging = 0;    // checkpoint.async: the staging copy, kept across steps
  bool on_device = false;
  // The peak resident memory of a rank: on the CPU the runtime, model state, live transients,
  // the allocator's cache and async staging; on a device the host side (runtime + staging).
  int64_t host_peak() const;
};

MemoryPlan plan_memory(const MemoryPlanInput& in);
// What a recipe runs on `world_size` ranks with the architecture `model` (its preset, or
// init_from's config.json).
MemoryPlanInput plan_input(const Recipe& r, const LlamaConfig& model, int64_t world_size);
// A run whose ranks on this node together need more host memory (host_peak() x ranks_on_node)
// than the node has for them (the least of usable_memory_bytes and MemAvailable plus what the
// ranks already hold) stops before it allocates the model, on every rank, with the plan's
// numbers and the settings that would fit (computed), unless train.check_memory is false.
// bytes_per_rank: host_bytes_per_rank, agreed over the ranks (their least) so all stop alike.
int64_t host_bytes_per_rank(int64_t ranks_on_node);
void check_plan_fits_host(const Recipe& r, const MemoryPlanInput& in, int64_t ranks_on_node,
                          int64_t bytes_per_rank);
// Likewise for a device run (train.device cuda): its plan's peak against the memory of its GPU
// (device_bytes; <= 0: unknown, not checked), before anything is allocated there.
void check_plan_fits_device(const Recipe& r, const MemoryPlanInput& in, int64_t device_bytes);
// A human-readable table (GiB) with a verdict against gpu_memory_gb (<= 0: not checked).
std::string format_plan(const MemoryPlanInput& in, const MemoryPlan& p, double gpu_memory_gb);

}  // namespace asc
