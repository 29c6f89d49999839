#include "optim/schedule.h"

#include <cstdint>

#include <algorithm>
#include <cmath>

namespace asc {

int64_t warmup_steps_from_ratio(int64_t total_steps, double ratio) {
  return int64_t(std::ceil(double(total_steps) * ratio));
}

double LrSchedule::lr_at(int64_t k) const {
  if (k < warmup_steps) return peak_lr * double(k) / double(std::max<int64_t>(1, warmup_steps));
  const double progress =
      double(k - warmup_steps) / double(std::max<int64_t>(1, total_steps - warmup_steps));
  if (kind == Schedule::kConstant) return peak_lr;
  if (kind == Schedule::kLinear)
    return peak_lr * std::max(0.0, double(total_steps - k) /
                                       double(std::max<int64_t>(1, total_steps - warmup_steps)));
  return peak_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace asc
