// flat_adamw.h — AdamW over flat buffers: the optimizer the trainer uses by default.
//
// The constructor re-homes every parameter into one flat fp32 master buffer, in model order; in
// bf16 mode the parameters become views of one flat bf16 copy instead (the model computes in
// bf16) and the master stays fp32. Gradients are views of one flat buffer too, so autograd
// accumulates straight into it, and a step is one fused pass (kernels/fused_adamw.h) over master,
// moments, gradient and the bf16 copy — on the CPU, or as one CUDA launch with the norm and clip
// kept on the device. Works on the device the parameters live on.
#pragma once

#include "optim/optimizer.h"

namespace asc {

class FlatAdamW final : public Optimizer {
 public:
  // `params`: the model's parameters (fp32, one device). compute_dtype: kFloat or kBFloat16.
  // Weight decay as gets_weight_decay (optim/optimizer.h) says.
  FlatAdamW(NamedTensors params, AdamWOptions opt, at::ScalarType compute_dtype);

  void accumulate_grads(bool last) override;
  double clip_and_step(double lr, double max_grad_norm) override;
  void zero_grad() override;
  int64_t steps() const override { return step_; }
  OptimizerState state() const override;
  void load_state(const OptimizerState& s) override;
  // Reads each tensor straight into the flat buffers (no intermediate copy).
  void load_state_from(const CheckpointReader& r, const NamedTensors& params) override;

  // The flat buffers (tests, benchmarks).
  const at::Tensor& flat_master() const { return master_; }
  const at::Tensor& flat_grad() const { return grad_; }

 private:
  at::Tensor view_of(const at::Tensor& flat, size_t i) const;
  NamedTensors params_;
  std::vector<int64_t> offsets_;
  std::vector<bool> decay_;
  AdamWOptions opt_;
  at::ScalarType compute_dtype_;
  at::Tensor master_, m_, v_;  // fp32
  at::Tensor compute_;         // bf16 copy the parameters view (undefined in fp32 mode)
  at::Tensor grad_;            // in the compute dtype; parameters' .grad() are views of it
  at::Tensor acc_;             // fp32 accumulator over micro-batches (bf16 mode, when needed)
  bool acc_holds_ = false;     // acc_ holds gradients not yet stepped
  at::Tensor norm_sq_;         // CUDA: the squared norm stays on the device
  int64_t step_ = 0;
};

}  // namespace asc
