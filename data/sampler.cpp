#include "data/sampler.h"

#include <cstdint>

#include "common/error.h"
#include "data/demo_corpus.h"
#include "epoch_plan.pb.h"

namespace asc {

ShardedSampler::ShardedSampler(ByteChannel& channel, uint64_t seed, int64_t global_batch,
                               const std::function<int64_t()>& coordinator_setup)
    : ch_(channel), seed_(seed), global_(global_batch) {
  if (global_ % ch_.size() != 0)
    ASC_FAIL("global batch {} is not divisible by {} data-parallel ranks", global_, ch_.size());
  // Setup result (or its error) from the coordinator to everyone, as an EpochPlan with no order.
  std::string bytes;
  if (ch_.rank() == 0) {
    asclepius::data::EpochPlan msg;
    try {
      msg.set_num_samples(coordinator_setup());
      if (msg.num_samples() < global_)
        msg.set_error(fmt::format("the corpus holds {} samples, fewer than one global batch ({})",
                                  msg.num_samples(), global_));
    } catch (const Error& e) {
      msg.set_error(e.what());
    }
    bytes = msg.SerializeAsString();
  }
  ch_.broadcast(&bytes, 0);
  asclepius::data::EpochPlan msg;
  if (!msg.ParseFromString(bytes))
    ASC_FAIL("rank {}: malformed setup message from the coordinator", ch_.rank());
  if (!msg.error().empty()) ASC_FAIL("coordinator (rank 0): {}", msg.error());
  num_samples_ = msg.num_samples();
}

void ShardedSampler::fetch_plan(int64_t epoch) {
  std::string bytes;
  if (ch_.rank() == 0) {
    asclepius::data::EpochPlan plan;
    plan.set_epoch(epoch);
    plan.set_seed(seed_);
    plan.set_num_samples(num_samples_);
    for (int64_t i : epoch_order(num_samples_, seed_, epoch)) plan.add_order(i);
    bytes = plan.SerializeAsString();
  }
  ch_.broadcast(&bytes, 0);
  asclepius::data::EpochPlan plan;
  if (!plan.ParseFromString(bytes) || plan.epoch() != epoch || plan.num_samples() != num_samples_ ||
      plan.order_size() != num_samples_)
    ASC_FAIL("rank {}: the coordinator's plan for epoch {} is malformed", ch_.rank(), epoch);
  order_.assign(plan.order().begin(), plan.order().end());
  order_epoch_ = epoch;
}

std::vector<int64_t> ShardedSampler::next_local_batch() {
  if (state_.cursor + global_ > steps_per_epoch() * global_) state_ = {state_.epoch + 1, 0};
  if (order_epoch_ != state_.epoch) fetch_plan(state_.epoch);
  const int64_t per_rank = global_ / ch_.size();
  const int64_t begin = state_.cursor + ch_.rank() * per_rank;
  std::vector<int64_t> out(order_.begin() + begin, order_.begin() + begin + per_rank);
  state_.cursor += global_;
  return out;
}

StepPlace step_place(int64_t step, int64_t num_samples, int64_t global_batch) {
  ASC_CHECK(step >= 1 && global_batch >= 1 && num_samples >= global_batch,
            "step {} of {} samples in global batches of {}", step, num_samples, global_batch);
  const int64_t spe = num_samples / global_batch;
  return {(step - 1) / spe, ((step - 1) % spe) * global_batch};
}

void ShardedSampler::restore(const DataState& s) {
  if (s.epoch < 0 || s.cursor < 0 || s.cursor % global_ != 0 ||
      s.cursor > steps_per_epoch() * global_)
    ASC_FAIL("data state (epoch {}, cursor {}) does not fit {} samples in global batches of {}",
             s.epoch, s.cursor, num_samples_, global_);
  state_ = s;
}

}  // namespace asc
