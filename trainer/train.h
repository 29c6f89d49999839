// train.h — the one-process training loop (the whole flow reads top to bottom in train.cpp).
#pragma once

#include <vector>

#include "config/recipe.h"

namespace asc {

struct TrainResult {
  int64_t steps = 0;
  std::vector<double> losses;  // one per optimizer step
  std::string run_dir;
  int stopped_by_signal = 0;  // SIGINT/SIGTERM/SIGUSR1 received: saved at `steps` and stopped
};

TrainResult train(const Recipe& recipe);

}  // namespace asc
