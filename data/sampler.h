// sampler.h — which samples each data-parallel rank reads, step by step.
//
// Rank 0, the coordinator, validates the corpus and computes each epoch's seeded permutation of
// the samples; it publishes it as an EpochPlan protobuf broadcast over the channel (MPI across
// processes). A global batch is the next `global_batch` entries of that order; rank r of W reads
// the r-th contiguous slice of it. The order does not depend on W, so 1, 2 or 4 ranks see the
// same global batches, and the data state (epoch, cursor) restores a run exactly, also on
// another rank count. A coordinator failure is broadcast too: every rank throws the same error.
// Thread-safety: one sampler per rank, used from one thread. No libtorch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/byte_channel.h"  // the channel the plans travel on (interface only)

namespace asc {

struct DataState {
  int64_t epoch = 0;
  int64_t cursor = 0;  // global samples consumed in this epoch
  bool operator==(const DataState& o) const { return epoch == o.epoch && cursor == o.cursor; }
};

// Where loop step `step` (1-based) reads, with `num_samples` samples in global batches of
// `global_batch`: entries [begin, begin + global_batch) of epoch_order(num_samples, seed, epoch),
// with epoch = (step - 1) / steps_per_epoch and begin = ((step - 1) % steps_per_epoch) *
// global_batch. What ShardedSampler hands out, as a formula (a resume starts there, provenance
// recomputes a step's samples from it); the same for every world size.
struct StepPlace {
  int64_t epoch = 0, begin = 0;
};
StepPlace step_place(int64_t step, int64_t num_samples, int64_t global_batch);

class ShardedSampler {
 public:
  // On rank 0, `coordinator_setup` validates the corpus and returns the number of samples; it may
  // throw asc::Error, which then reaches every rank. Other ranks do not call it.
  ShardedSampler(ByteChannel& channel, uint64_t seed, int64_t global_batch,
                 const std::function<int64_t()>& coordinator_setup);
  // The sample indices this rank reads for the next global batch; advances the data state. An
  // epoch's tail that does not fill a global batch is dropped.
  std::vector<int64_t> next_local_batch();
  DataState state() const { return state_; }
  void restore(const DataState& s);
  int64_t num_samples() const { return num_samples_; }
  int64_t steps_per_epoch() const { return num_samples_ / global_; }

 private:
  void fetch_plan(int64_t epoch);
  ByteChannel& ch_;
  uint64_t seed_;
  int64_t global_, num_samples_ = 0;
  DataState state_;
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
};

}  // namespace asc
