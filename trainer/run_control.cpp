#include "run_control.h"

#include <cmath>
#include <csignal>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "common/error.h"
#include "common/stop_signal.h"

namespace asc {

RunControl::RunControl(comm::Communicator* comm, int64_t max_bad_steps, int64_t stop_after_step)
    : comm_(comm),
      rank_(comm ? comm->rank() : 0),
      max_bad_steps_(max_bad_steps),
      stop_after_step_(stop_after_step) {}

RunControl::Agreed RunControl::agree(int64_t step, bool this_rank_writing) const {
  const int own = step == stop_after_step_ ? SIGTERM : stop_signal();
  Agreed out{own, !this_rank_writing};
  if (comm_) {
    at::Tensor s = at::tensor({int64_t(own), int64_t(this_rank_writing)}, at::kLong);
    comm_->all_reduce(s, {comm::ReduceOp::kMax})->wait();
    out.stop_signal = int(s[0].item<int64_t>()), out.all_written = s[1].item<int64_t>() == 0;
  }
  return out;
}

bool RunControl::account(int64_t step, double loss, double grad_norm) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) {
    bad_in_a_row_ = 0;
    return true;
  }
  ++skipped_;
  if (++bad_in_a_row_ > max_bad_steps_)
    ASC_FAIL_HINT("lower train.lr, check the data, or raise train.max_bad_steps",
                  "step {}: loss {} / gradient norm {} not finite for {} steps in a row "
                  "(train.max_bad_steps: {}); stopping",
                  step, loss, grad_norm, bad_in_a_row_, max_bad_steps_);
  if (rank_ == 0)
    fmt::print(stderr,
               "warning: step {}: loss {} / gradient norm {} not finite; step skipped on every "
               "rank ({} in a row)\n",
               step, loss, grad_norm, bad_in_a_row_);
  return false;
}

}  // namespace asc
