// train.h — the one-process training loop (the whole flow reads top to bottom in train.cpp).
#pragma once

#include <vector>

#include "batches.h"
#include "config/recipe.h"
#include "model/llama.h"
#include "optim/optimizer.h"

namespace asc {

struct TrainResult {
  int64_t steps = 0;
  std::vector<double> losses;  // one per optimizer step
  std::string run_dir;
  int stopped_by_signal = 0;  // SIGINT/SIGTERM/SIGUSR1 received: saved at `steps` and stopped
};

TrainResult train(const Recipe& recipe);

// One global batch's gradients, micro-batch by micro-batch: each micro-batch's loss is its *sum*
// of token losses divided by the number of target tokens in the whole global batch, so the
// accumulated gradient is that of the global batch's token-mean loss whatever the split or the
// padding/packing (not a mean of per-micro-batch means).
struct BatchLoss {
  double loss = 0;      // the global batch's token-mean loss
  int64_t targets = 0;  // target tokens in it
  int64_t tokens = 0;   // input tokens (padding included)
};
BatchLoss accumulate_gradients(LlamaForCausalLM& model, Optimizer& opt, const GlobalBatch& batch);

}  // namespace asc
