// flat_adamw.h — the optimizer: AdamW over the flat buffers one rank owns. It only steps; the
// parallel engine (parallel/engine.h) owns the buffers, lays the parameters out in them and sums
// the gradients over ranks before handing them over.
//
// One clip-and-step for every parallel mode and both implementations: the gradient's global
// norm (this rank's squares summed over the ranks that hold the other slices), the step skipped
// when it is not finite (alike on every rank, the norm being global), clipping as
// torch.nn.utils.clip_grad_norm_, then one AdamW update with torch.optim.AdamW's semantics
// (decoupled weight decay before the Adam step, bias correction, eps after the sqrt), the bf16
// compute copy written from the fp32 master in the same pass. train.optimizer picks how:
//   fused      one pass of our kernel (kernels/fused_adamw.h) over all segments: the CPU loop, or
//              one CUDA launch with the norm and clip factor kept on the device;
//   reference  libtorch ops one parameter at a time, the readable oracle (norm of the fp32 norms
//              of this rank's parameter parts, in model order, summed in squares over ranks;
//              torch's lerp for the first moment).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "config/choices.h"
#include "kernels/fused_adamw.h"

namespace asc {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// The one rule for which parameters get weight decay: all but the norms' weights and any bias
// (the Hugging Face Trainer's rule; LLaMA's RMSNorm weights are named ...input_layernorm /
// post_attention_layernorm / model.norm).
bool gets_weight_decay(const std::string& param_name);

// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); 1 when disabled.
double clip_factor(double grad_norm, double max_norm);

// What one rank steps: equal-length flat buffers on one device, cut into segments.
struct FlatBuffers {
  at::Tensor master, exp_avg, exp_avg_sq;  // fp32
  at::Tensor grad;                         // fp32: the step's gradient, summed over ranks
  at::Tensor compute;  // bf16 copy the model computes from; undefined in fp32 (master is it)
  // Cover [0, numel) in order: a part of one parameter, or padding (decay false).
  std::vector<kernels::FlatSegment> segments;
  // For each segment, the index of its parameter in model order, or -1 for padding.
  std::vector<int64_t> segment_param;
  // Sums a one-element tensor (this rank's squared gradient norm, on the buffers' device) over
  // the ranks holding the rest of the gradient, in place; empty when this rank holds all of it.
  std::function<void(at::Tensor&)> sum_over_ranks;
  int64_t numel() const { return master.numel(); }
};

class FlatAdamW {
 public:
  explicit FlatAdamW(AdamWOptions opt, OptimizerKind kind = OptimizerKind::kFused);
  // Global-norm clipping (max_grad_norm <= 0: none) and one update at learning rate lr. Returns
  // the global gradient norm before clipping. When it is NaN or Inf nothing changes (buffers,
  // step count).
  double clip_and_step(FlatBuffers& b, double lr, double max_grad_norm);
  // Updates taken so far (AdamW's bias correction); set when resuming.
  int64_t steps() const { return step_; }
  void set_steps(int64_t steps) { step_ = steps; }
  OptimizerKind kind() const { return kind_; }

 private:
  double fused_step(FlatBuffers& b, double lr, double max_grad_norm);
  double reference_step(FlatBuffers& b, double lr, double max_grad_norm);
  AdamWOptions opt_;
  OptimizerKind kind_;
  int64_t step_ = 0;
};

}  // namespace asc
