#include "optim/flat_adamw.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "common/error.h"
#include "kernels/cuda_device.h"
#include "kernels/fused_adamw.h"

namespace asc {

FlatAdamW::FlatAdamW(NamedTensors params, AdamWOptions opt, at::ScalarType compute_dtype)
    : params_(std::move(params)), opt_(opt), compute_dtype_(compute_dtype) {
  ASC_CHECK(!params_.empty(), "FlatAdamW: no parameters");
  ASC_CHECK(compute_dtype == at::kFloat || compute_dtype == at::kBFloat16,
            "FlatAdamW: compute dtype must be fp32 or bf16");
  torch::NoGradGuard no_grad;
  const at::Device device = params_[0].second.device();
  int64_t total = 0;
  for (const auto& [name, p] : params_) {
    ASC_CHECK(p.device() == device, "FlatAdamW: parameter {} is on {}, the first on {}", name,
              p.device().str(), device.str());
    ASC_CHECK(p.scalar_type() == at::kFloat,
              "FlatAdamW: parameter {} is {}; build the optimizer before casting the model", name,
              c10::toString(p.scalar_type()));
    offsets_.push_back(total);
    total += p.numel();
    decay_.push_back(gets_weight_decay(name));
  }
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  master_ = at::empty({total}, f32);
  for (size_t i = 0; i < params_.size(); ++i) view_of(master_, i).copy_(params_[i].second);
  m_ = at::zeros({total}, f32);
  v_ = at::zeros({total}, f32);
  if (compute_dtype == at::kBFloat16) compute_ = master_.to(at::kBFloat16);
  const at::Tensor& home = compute_.defined() ? compute_ : master_;
  grad_ = at::zeros({total}, home.options());
  // Re-home each parameter: its data and its gradient become views of the flat buffers, so the
  // model computes from them and autograd accumulates into grad_ in place.
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    p.set_data(view_of(home, i));
    p.mutable_grad() = view_of(grad_, i);
  }
  if (kernels::kernels_run_on(device)) norm_sq_ = at::zeros({1}, f32);
}

at::Tensor FlatAdamW::view_of(const at::Tensor& flat, size_t i) const {
  const at::Tensor& p = params_[i].second;
  return flat.narrow(0, offsets_[i], p.numel()).view(p.sizes());
}

void FlatAdamW::accumulate_grads(bool last) {
  if (!compute_.defined()) return;  // fp32: autograd already accumulates in grad_
  if (last && !acc_holds_) return;  // one micro-batch: the step reads the bf16 grads
  torch::NoGradGuard no_grad;
  if (!acc_.defined()) acc_ = at::zeros(master_.sizes(), master_.options());
  if (acc_holds_)
    acc_.add_(grad_);  // fp32 += bf16, in fp32
  else
    acc_.copy_(grad_);
  acc_holds_ = true;
  grad_.zero_();
}

double FlatAdamW::clip_and_step(double lr, double max_grad_norm) {
  ++step_;  // undone below when the norm is not finite (the update is then skipped)
  kernels::FusedAdamWArgs a;
  a.master = master_.data_ptr<float>();
  a.exp_avg = m_.data_ptr<float>();
  a.exp_avg_sq = v_.data_ptr<float>();
  if (acc_holds_)
    a.grad_f32 = acc_.data_ptr<float>();
  else if (compute_.defined())
    a.grad_bf16 = reinterpret_cast<const uint16_t*>(grad_.data_ptr<at::BFloat16>());
  else
    a.grad_f32 = grad_.data_ptr<float>();
  if (compute_.defined())
    a.param_bf16 = reinterpret_cast<uint16_t*>(compute_.data_ptr<at::BFloat16>());
  a.numel = master_.numel();
  for (size_t i = 0; i < params_.size(); ++i)
    a.segments.push_back({offsets_[i], params_[i].second.numel(), bool(decay_[i])});
  a.lr = lr, a.beta1 = opt_.beta1, a.beta2 = opt_.beta2, a.eps = opt_.eps;
  a.weight_decay = opt_.weight_decay, a.step = step_;
  if (kernels::kernels_run_on(master_.device())) {
    // Norm, clip factor and update stay on the device (one stream, no host sync); the norm is
    // read back afterwards, for the log only.
    void* stream = kernels::current_cuda_stream(master_.device());
    kernels::grad_sq_norm_cuda(a, norm_sq_.data_ptr<float>(), stream);
    // The kernel leaves everything unchanged when the norm is not finite.
    kernels::fused_adamw_cuda(a, norm_sq_.data_ptr<float>(), float(max_grad_norm), stream);
    const double norm = std::sqrt(double(norm_sq_.item<float>()));
    if (!std::isfinite(norm)) --step_;
    return norm;
  }
  const double norm = std::sqrt(kernels::grad_sq_norm_cpu(a));
  if (!std::isfinite(norm)) {
    --step_;
    return norm;
  }
  a.grad_scale = float(clip_factor(norm, max_grad_norm));
  kernels::fused_adamw_cpu(a);
  return norm;
}

void FlatAdamW::zero_grad() {
  grad_.zero_();
  acc_holds_ = false;
}

OptimizerState FlatAdamW::state() const {
  OptimizerState s;
  s.step = step_;
  for (size_t i = 0; i < params_.size(); ++i) {
    s.master.emplace_back(params_[i].first, view_of(master_, i));
    s.exp_avg.emplace_back(params_[i].first, view_of(m_, i));
    s.exp_avg_sq.emplace_back(params_[i].first, view_of(v_, i));
  }
  return s;
}

void FlatAdamW::load_state(const OptimizerState& s) {
  check_state_matches(s, params_);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    view_of(master_, i).copy_(s.master[i].second);
    view_of(m_, i).copy_(s.exp_avg[i].second);
    view_of(v_, i).copy_(s.exp_avg_sq[i].second);
  }
  if (compute_.defined()) compute_.copy_(master_);  // round to nearest even, as .to(bf16)
  step_ = s.step;
  zero_grad();
}

void FlatAdamW::load_state_from(const CheckpointReader& r, const NamedTensors&) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    r.check_shape(name, p);
    for (const auto& [kind, buf] :
         {std::pair{"master", &master_}, {"exp_avg", &m_}, {"exp_avg_sq", &v_}}) {
      at::Tensor dst = view_of(*buf, i);
      // The reader fills host memory: a device buffer goes through a host copy.
      at::Tensor host = dst.is_cpu() ? dst : at::empty({dst.numel()}, at::kFloat);
      r.read(name, kind, 0, host.numel(), host.data_ptr<float>());
      if (!host.is_same(dst)) dst.copy_(host.view(dst.sizes()));
    }
  }
  if (compute_.defined()) compute_.copy_(master_);
  step_ = r.optimizer_step();
  zero_grad();
}

}  // namespace asc
