// adamw.h — the reference optimizer (train.optimizer: reference): AdamW with torch.optim.AdamW's
// semantics (decoupled weight decay p -= lr·wd·p before the Adam step, bias correction, eps added
// after the bias-corrected sqrt), global-norm gradient clipping, and fp32 master weights when the
// model computes in bf16.
//
// Contract: params are the model's parameters in a fixed order; after backward, step() reads
// their .grad(), updates the fp32 master copy (the parameter itself in fp32 mode) and writes the
// compute-dtype parameter. Weight decay as gets_weight_decay (optim/optimizer.h) says: none on
// the norms (the Hugging Face Trainer's default exclusion). Single-threaded caller.
#pragma once

#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "optim/optimizer.h"

namespace asc {

class AdamW final : public Optimizer {
 public:
  // `master`: fp32 starting weights when params are bf16 (taken before the cast, so no
  // precision is lost); empty = params are fp32 and are their own master.
  AdamW(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWOptions opt,
        std::vector<at::Tensor> master = {});
  // After each micro-batch's backward: with bf16 parameters, adds their gradients into fp32
  // accumulators and clears them, so accumulation over micro-batches happens in fp32 (as with
  // Hugging Face AMP). A no-op for fp32 parameters, whose .grad() already accumulates in fp32.
  void accumulate_grads(bool last = true) override;
  // L2 norm over all gradients (fp32 accumulation), before clipping.
  double grad_norm() const;
  // One update at learning rate lr, gradients scaled by grad_scale (the clip factor).
  void step(double lr, double grad_scale = 1.0);
  void zero_grad() override;
  int64_t steps() const override { return step_; }
  double clip_and_step(double lr, double max_grad_norm) override;
  OptimizerState state() const override;
  void load_state(const OptimizerState& s) override;
  // The gradient step() will use for parameter i (the fp32 accumulator in bf16 mode).
  at::Tensor grad(size_t i) const;
  const std::vector<at::Tensor>& master() const { return master_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& exp_avg() const { return m_; }
  const std::vector<at::Tensor>& exp_avg_sq() const { return v_; }

 private:
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_, master_, m_, v_, grad_acc_;
  bool separate_master_ = false;
  std::vector<bool> decay_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

}  // namespace asc
