// run_control.h — when the training loop stops, and what it does with a step that is not finite.
//   - agree(): once per step, one all-reduce over the ranks carries the largest stop signal any
//     rank received (SIGINT/SIGTERM/SIGUSR1, or the --stop-after-step option) and whether any
//     rank's background checkpoint write is still running, so every rank stops after the same
//     step and commits a pending checkpoint at the same step;
//   - account(): a NaN/Inf loss or gradient norm (global, so alike on every rank) skips the step
//     everywhere; more than train.max_bad_steps in a row stops the run with one clear error.
#pragma once

#include <cstdint>

#include "comm/communicator.h"

namespace asc {

class RunControl {
 public:
  // comm: the host communicator (null: one process). stop_after_step >= 1: acts as a SIGTERM
  // received during that step, on every rank alike.
  RunControl(comm::Communicator* comm, int64_t max_bad_steps, int64_t stop_after_step = -1);

  struct Agreed {
    int stop_signal = 0;      // 0: go on; else the signal every rank stops with
    bool all_written = true;  // no rank's background checkpoint write is still running
  };
  // At the end of (1-based) `step`; a collective.
  Agreed agree(int64_t step, bool this_rank_writing) const;

  // Whether the step's loss and gradient norm are finite. If not, the step was skipped (the
  // optimizer left everything unchanged): counted, warned about (rank 0), and an error once more
  // than max_bad_steps come in a row.
  bool account(int64_t step, double loss, double grad_norm);
  int64_t skipped_steps() const { return skipped_; }

 private:
  comm::Communicator* comm_;
  int rank_ = 0;
  int64_t max_bad_steps_, stop_after_step_;
  int64_t skipped_ = 0, bad_in_a_row_ = 0;
};

}  // namespace asc
