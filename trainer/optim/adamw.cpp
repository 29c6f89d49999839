#include "optim/adamw.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "common/error.h"

namespace asc {

AdamW::AdamW(std::vector<std::string> names, std::vector<at::Tensor> params, AdamWOptions opt,
             std::vector<at::Tensor> master)
    : names_(std::move(names)), params_(std::move(params)), opt_(opt) {
  ASC_CHECK(master.empty() || master.size() == params_.size(),
            "AdamW: {} master weights for {} "
            "parameters",
            master.size(), params_.size());
  ASC_CHECK(names_.size() == params_.size(), "AdamW: {} names for {} parameters", names_.size(),
            params_.size());
  torch::NoGradGuard no_grad;
  separate_master_ = !master.empty();
  grad_acc_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (!master.empty())
      master_.push_back(master[i].detach().to(at::kFloat).contiguous());
    else if (p.scalar_type() == at::kFloat)
      master_.push_back(p);
    else
      master_.push_back(p.detach().to(at::kFloat));
    m_.push_back(at::zeros_like(master_.back()));
    v_.push_back(at::zeros_like(master_.back()));
    decay_.push_back(gets_weight_decay(names_[i]));
  }
}

void AdamW::accumulate_grads(bool /*last*/) {
  if (!separate_master_) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    if (grad_acc_[i].defined())
      grad_acc_[i].add_(p.grad());
    else
      grad_acc_[i] = p.grad().to(at::kFloat);
    p.mutable_grad() = at::Tensor();
  }
}

at::Tensor AdamW::grad(size_t i) const {
  return grad_acc_[i].defined() ? grad_acc_[i] : params_[i].grad();
}

double AdamW::grad_norm() const {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (size_t i = 0; i < params_.size(); ++i)
    if (grad(i).defined()) norms.push_back(grad(i).to(at::kFloat).norm(2));
  if (norms.empty()) return 0.0;
  return at::stack(norms).norm(2).item<double>();
}

double AdamW::clip_and_step(double lr, double max_grad_norm) {
  const double norm = grad_norm();
  if (!std::isfinite(norm)) return norm;  // skipped: nothing changes
  step(lr, clip_factor(norm, max_grad_norm));
  return norm;
}

OptimizerState AdamW::state() const {
  OptimizerState s;
  s.step = step_;
  for (size_t i = 0; i < names_.size(); ++i) {
    s.master.emplace_back(names_[i], master_[i]);
    s.exp_avg.emplace_back(names_[i], m_[i]);
    s.exp_avg_sq.emplace_back(names_[i], v_[i]);
  }
  return s;
}

void AdamW::load_state(const OptimizerState& s) {
  NamedTensors params;
  for (size_t i = 0; i < names_.size(); ++i) params.emplace_back(names_[i], params_[i]);
  check_state_matches(s, params);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < names_.size(); ++i) {
    master_[i].copy_(s.master[i].second);
    m_[i].copy_(s.exp_avg[i].second);
    v_[i].copy_(s.exp_avg_sq[i].second);
    if (!master_[i].is_same(params_[i])) params_[i].copy_(master_[i]);
  }
  step_ = s.step;
  zero_grad();
}

void AdamW::step(double lr, double grad_scale) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, double(step_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, double(step_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!grad(i).defined()) continue;
    at::Tensor g = grad(i).to(at::kFloat);
    if (grad_scale != 1.0) g = g * grad_scale;
    auto& w = master_[i];
    if (decay_[i] && opt_.weight_decay != 0) w.mul_(1.0 - lr * opt_.weight_decay);
    m_[i].lerp_(g, 1.0 - opt_.beta1);  // torch's AdamW uses lerp for the first moment
    v_[i].mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
    auto denom = (v_[i].sqrt() / bc2_sqrt).add_(opt_.eps);
    w.addcdiv_(m_[i], denom, -step_size);
    if (!w.is_same(p)) p.copy_(w);  // bf16: round the master into the compute copy
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  for (auto& g : grad_acc_) g = at::Tensor();
}

}  // namespace asc
