#include "optim/flat_adamw.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "common/error.h"
#include "kernels/cuda_device.h"

namespace asc {

bool gets_weight_decay(const std::string& param_name) {
  return param_name.find("norm") == std::string::npos &&
         param_name.find("bias") == std::string::npos;
}

double clip_factor(double grad_norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (grad_norm + 1e-6));
}

namespace {

void check(const FlatBuffers& b) {
  const int64_t n = b.numel();
  for (const at::Tensor* t : {&b.exp_avg, &b.exp_avg_sq, &b.grad}) {
    ASC_CHECK(t->numel() == n && t->scalar_type() == at::kFloat && t->is_contiguous(),
              "flat AdamW: the buffers must be contiguous fp32 of {} elements", n);
  }
  ASC_CHECK(
      !b.compute.defined() || (b.compute.numel() == n && b.compute.scalar_type() == at::kBFloat16),
      "flat AdamW: the compute copy must be bf16 of {} elements", n);
  ASC_CHECK(b.segment_param.size() == b.segments.size(),
            "flat AdamW: {} segments but {} parameter indices", b.segments.size(),
            b.segment_param.size());
}

}  // namespace

FlatAdamW::FlatAdamW(AdamWOptions opt, OptimizerKind kind) : opt_(opt), kind_(kind) {}

double FlatAdamW::clip_and_step(FlatBuffers& b, double lr, double max_grad_norm) {
  check(b);
  torch::NoGradGuard no_grad;
  return kind_ == OptimizerKind::kFused ? fused_step(b, lr, max_grad_norm)
                                        : reference_step(b, lr, max_grad_norm);
}

double FlatAdamW::fused_step(FlatBuffers& b, double lr, double max_grad_norm) {
  kernels::FusedAdamWArgs a;
  a.master = b.master.data_ptr<float>();
  a.exp_avg = b.exp_avg.data_ptr<float>();
  a.exp_avg_sq = b.exp_avg_sq.data_ptr<float>();
  a.grad_f32 = b.grad.data_ptr<float>();
  if (b.compute.defined())
    a.param_bf16 = reinterpret_cast<uint16_t*>(b.compute.data_ptr<at::BFloat16>());
  a.numel = b.numel();
  a.segments = b.segments;
  a.lr = lr, a.beta1 = opt_.beta1, a.beta2 = opt_.beta2, a.eps = opt_.eps;
  a.weight_decay = opt_.weight_decay, a.step = step_ + 1;
  if (kernels::kernels_run_on(b.master.device())) {
    // On the device: the squared norm summed over ranks stays there; the host reads it (one
    // sync) to skip a non-finite step on every rank alike; the clip factor and the update read
    // it on the device.
    void* stream = kernels::current_cuda_stream(b.master.device());
    at::Tensor sq = at::zeros({1}, b.master.options());
    kernels::grad_sq_norm_cuda(a, sq.data_ptr<float>(), stream);
    if (b.sum_over_ranks) b.sum_over_ranks(sq);
    const double norm = std::sqrt(double(sq.item<float>()));
    if (!std::isfinite(norm)) return norm;
    ++step_;
    kernels::fused_adamw_cuda(a, sq.data_ptr<float>(), float(max_grad_norm), stream);
    return norm;
  }
  double sq = kernels::grad_sq_norm_cpu(a);
  if (b.sum_over_ranks) {
    at::Tensor t = at::full({1}, sq, at::kDouble);
    b.sum_over_ranks(t);
    sq = t.item<double>();
  }
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) return norm;
  ++step_;
  a.grad_scale = float(clip_factor(norm, max_grad_norm));
  kernels::fused_adamw_cpu(a);
  return norm;
}

double FlatAdamW::reference_step(FlatBuffers& b, double lr, double max_grad_norm) {
  // The parameters' parts, in model order (the norm's summation order).
  std::vector<size_t> parts;
  for (size_t s = 0; s < b.segments.size(); ++s)
    if (b.segment_param[s] >= 0) parts.push_back(s);
  std::stable_sort(parts.begin(), parts.end(),
                   [&](size_t x, size_t y) { return b.segment_param[x] < b.segment_param[y]; });
  auto view = [&](const at::Tensor& flat, size_t s) {
    return flat.narrow(0, b.segments[s].offset, b.segments[s].numel);
  };
  double norm = 0;
  if (!parts.empty()) {
    std::vector<at::Tensor> norms;
    for (size_t s : parts) norms.push_back(view(b.grad, s).norm(2));
    norm = at::stack(norms).norm(2).item<double>();
  }
  if (b.sum_over_ranks) {
    at::Tensor t = at::full({1}, norm * norm, b.master.options().dtype(at::kDouble));
    b.sum_over_ranks(t);
    norm = std::sqrt(t.item<double>());
  }
  if (!std::isfinite(norm)) return norm;
  ++step_;
  const double grad_scale = clip_factor(norm, max_grad_norm);
  const double bc1 = 1.0 - std::pow(opt_.beta1, double(step_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, double(step_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  for (size_t s : parts) {
    at::Tensor g = view(b.grad, s);
    if (grad_scale != 1.0) g = g * grad_scale;
    at::Tensor w = view(b.master, s), m = view(b.exp_avg, s), v = view(b.exp_avg_sq, s);
    if (b.segments[s].decay && opt_.weight_decay != 0) w.mul_(1.0 - lr * opt_.weight_decay);
    m.lerp_(g, 1.0 - opt_.beta1);  // torch's AdamW uses lerp for the first moment
    v.mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
    at::Tensor denom = (v.sqrt() / bc2_sqrt).add_(opt_.eps);
    w.addcdiv_(m, denom, -step_size);
    if (b.compute.defined()) view(b.compute, s).copy_(w);  // round into the bf16 copy
  }
  return norm;
}

}  // namespace asc
