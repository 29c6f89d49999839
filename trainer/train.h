// train.h — the training loop, one process or one rank of an mpirun/Slurm job (the whole flow
// reads top to bottom in train.cpp's train()).
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "batches.h"
#include "comm/communicator.h"
#include "config/recipe.h"
#include "model/llama.h"
#include "parallel/engine.h"

namespace asc {

struct TrainResult {
  int64_t steps = 0;
  std::vector<double> losses;  // one per optimizer step
  std::string run_dir;
  int stopped_by_signal = 0;  // SIGINT/SIGTERM/SIGUSR1 received: saved at `steps` and stopped
  int64_t skipped_steps = 0;  // NaN/Inf loss or gradient: skipped on every rank
  int rank = 0;
};

// Test and fault hooks, read once from the environment by the command line (tests set them
// directly). None changes what a run computes unless it is set.
struct TrainHooks {
  // ASCLEPIUS_FAULT_NAN="STEP:RANK[,STEP:RANK...]": that rank's loss is NaN at that (1-based) step.
  std::set<std::pair<int64_t, int>> nan_at;
  // ASCLEPIUS_EXIT_AFTER_STARTUP=1: return after start-up (model built, state loaded).
  bool exit_after_startup = false;
  // ASCLEPIUS_ASYNC_SAVE_DELAY_MS: background checkpoint writes start this much later.
  int async_write_delay_ms = 0;
  // ASCLEPIUS_FAULT_SAVE="POINT:RANK[:STEP]": that rank is killed at that point of a save
  // (checkpoint/manifest.h, save_fault_point).
  std::string save_fault;
  static TrainHooks from_environment();
};

struct TrainOptions {
  // >= 1: acts as a SIGTERM received during this step on every rank (saves, then stops with
  // stopped_by_signal = SIGTERM): `asclepius train --stop-after-step N`, verify-resume.
  int64_t stop_after_step = -1;
  TrainHooks hooks;
};

TrainResult train(const Recipe& recipe, const TrainOptions& options = {});

// train.tf32 for as long as it lives: libtorch's CUDA fp32 precision for matrix products and
// convolutions (what cuBLAS and cuDNN read) set to TF32 or IEEE; the previous settings are
// restored at the end, so a run leaves the process as it found it. No effect on CPU math.
class Tf32Scope {
 public:
  explicit Tf32Scope(bool tf32);
  ~Tf32Scope();
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool matmul_, conv_;
};

// The fp32 model a recipe's training starts from: model.init_from's weights (checked against
// model.preset when both are given), or the preset initialised from train.seed.
LlamaForCausalLM initial_model(const Recipe& recipe);

// One global batch's gradients, micro-batch by micro-batch: each micro-batch's loss is its *sum*
// of token losses divided by the number of target tokens in the whole global batch (summed over
// all ranks of `comm`), so the summed gradient is that of the global batch's
// token-mean loss whatever the split over ranks and micro-batches or the padding/packing (not a
// mean of per-micro-batch means). Ranks with fewer micro-batches (packing) run empty ones so
// every rank takes part in every collective.
struct BatchLoss {
  double loss = 0;      // the global batch's token-mean loss (all ranks)
  int64_t targets = 0;  // target tokens in it (all ranks)
  int64_t tokens = 0;   // input tokens, padding included (all ranks)
};
// inject_nan: fault injection for tests — this rank's first micro-batch loss becomes NaN.
// loss_chunk_rows > 0: the LM head's cross-entropy in chunks of that many rows
// (LlamaForCausalLMImpl::loss_sum), never the full logits.
BatchLoss accumulate_gradients(LlamaForCausalLM& model, ParallelEngine& engine,
                               const GlobalBatch& batch, comm::Communicator& comm,
                               bool inject_nan = false, int64_t loss_chunk_rows = 0);

}  // namespace asc
