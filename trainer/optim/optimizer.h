// optimizer.h — what the training loop needs from an optimizer, and the optimizer state as the
// checkpoint stores it. Two implementations share it, chosen by the recipe's train.optimizer:
//   fused     (flat_adamw.h) every parameter re-homed into flat fp32 buffers, one fused pass per
//             step (kernels/: CPU loop or one CUDA launch);
//   reference (adamw.h) per-tensor libtorch ops, the readable oracle.
// The state layout is per parameter, not per implementation, so a run saved by one loads into
// the other (CPU or CUDA, fused or not).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "checkpoint/sharded.h"
#include "checkpoint/state.h"

namespace asc {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class Optimizer : public SavedState {
 public:
  virtual ~Optimizer() = default;
  // Before each micro-batch's forward (the parallel engine gathers what the forward needs).
  virtual void begin_micro_batch(bool /*last*/) {}
  // Around forward passes without backward (validation, under NoGradGuard): the parallel engine
  // gathers what such a forward needs and frees it after. A collective in fsdp: every rank calls
  // them, with the same number of forwards between.
  virtual void begin_forward_only() {}
  virtual void end_forward_only() {}
  // After each micro-batch's backward. With bf16 parameters the gradients are accumulated in
  // fp32; `last` says no further micro-batch follows before the step.
  virtual void accumulate_grads(bool last) = 0;
  // Global-norm clipping (max_grad_norm <= 0: none) and one update at learning rate lr. Returns
  // the global gradient norm before clipping (fp32 gradients, as clip_grad_norm_). When that norm
  // is NaN or Inf nothing changes (weights, moments, step count): the step is skipped, alike on
  // every rank since the norm is global.
  virtual double clip_and_step(double lr, double max_grad_norm) = 0;
  virtual void zero_grad() = 0;
  // The state in the checkpoint layout (tensors may be views of the optimizer's storage).
  virtual OptimizerState state() const = 0;
  // Replaces the state (names and shapes must match) and writes the compute-dtype parameters.
  virtual void load_state(const OptimizerState& s) = 0;

  // SavedState (checkpoint/state.h): steps(), and by default (one process) the whole state as
  // this rank's slices, loaded back tensor by tensor through load_state.
  std::vector<StateSlice> state_slices(const NamedTensors& params) const override;
  void load_state_from(const CheckpointReader& r, const NamedTensors& params) override;
};

// The one rule for which parameters get weight decay, used by every optimizer and the parallel
// engine: all but the norms' weights and any bias (the Hugging Face Trainer's rule; LLaMA's
// RMSNorm weights are named ...input_layernorm / post_attention_layernorm / model.norm).
bool gets_weight_decay(const std::string& param_name);

// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); 1 when disabled.
double clip_factor(double grad_norm, double max_norm);

// Checks `s` against the parameters (names, order, shapes); fails naming the first mismatch.
void check_state_matches(const OptimizerState& s, const NamedTensors& params);

}  // namespace asc
