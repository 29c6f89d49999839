// state.h — what a training checkpoint holds, independent of who produced it, and the interface
// the Checkpointer (checkpoint/checkpointer.h) saves and restores through. The trainer's
// TrainingState (parallel/engine.h: engine buffers and optimizer steps) implements it, so
// checkpoint/ depends on neither.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace asc {

class CheckpointReader;  // checkpoint/sharded.h

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The checkpoint layout: for every parameter (Hugging Face name, model order) its fp32 master
// weight and moments, same shape as the parameter, plus the number of steps taken.
struct OptimizerState {
  int64_t step = 0;
  NamedTensors master, exp_avg, exp_avg_sq;
};

// Elements [begin, end) of one parameter's training state (fp32, 1-D views are fine).
struct StateSlice {
  std::string name;
  std::vector<int64_t> shape;  // the parameter's global shape
  int64_t begin = 0, end = 0;
  at::Tensor master, exp_avg, exp_avg_sq;
};

// Something whose state a checkpoint saves and restores (master weights, moments, step count).
class SavedState {
 public:
  virtual ~SavedState() = default;
  // Updates taken so far (trainer_state.json, and AdamW's bias correction on resume).
  virtual int64_t steps() const = 0;
  // What this rank writes: slices that, over all ranks, cover every element of every parameter
  // once; no collective.
  virtual std::vector<StateSlice> state_slices(const NamedTensors& params) const = 0;
  // Loads from a checkpoint of any world size or mode, reading only what this rank holds.
  virtual void load_state_from(const CheckpointReader& r, const NamedTensors& params) = 0;
};

}  // namespace asc
