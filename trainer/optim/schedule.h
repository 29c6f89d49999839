// schedule.h — learning-rate schedules of the Hugging Face Trainer (what Asclepius ran):
// warm-up steps = ceil(total × warmup_ratio); multiplier at optimizer step k (0-based, the first
// update has k = 0) is k / warmup during warm-up, then cosine / linear decay to 0 or constant.
#pragma once

#include <cstdint>
#include <string>

#include "config/choices.h"

namespace asc {

struct LrSchedule {
  Schedule kind = Schedule::kCosine;  // cosine | linear | constant
  double peak_lr = 2e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double lr_at(int64_t k) const;  // learning rate of update k
};

int64_t warmup_steps_from_ratio(int64_t total_steps, double ratio);

}  // namespace asc
