// adamw_update.h — the one per-element AdamW update, shared by the CPU loop (adamw_cpu.cpp) and
// the CUDA kernel (adamw_cuda.cu) so both compute the same arithmetic in the same order:
//   g = grad * grad_scale                    (the global-norm clip factor, applied in the pass)
//   w = w * (1 - lr * wd)                    (decoupled weight decay, masked per segment)
//   m = m * beta1 + (1 - beta1) * g
//   v = v * beta2 + (1 - beta2) * g * g
//   w = w - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// i.e. torch::optim::AdamW. fp32 state; the compute-dtype (bf16) copy of w is rounded to nearest
// even, as PyTorch's .to(torch.bfloat16).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define ASC_HD __host__ __device__ __forceinline__
#else
#define ASC_HD inline
#endif

namespace asc::kernels {

// Per-step constants, computed once on the host.
struct AdamWStep {
  float beta1, beta2, eps;
  float one_minus_beta1, one_minus_beta2;
  float decay_factor;  // 1 - lr * weight_decay (1 for segments without decay)
  float step_size;     // lr / (1 - beta1^t)
  float bc2_sqrt;      // sqrt(1 - beta2^t)
};

// The per-step constants from torch's double hyper-parameters, each rounded to float once (host).
inline AdamWStep make_adamw_step(double lr, double beta1, double beta2, double eps,
                                 double weight_decay, int64_t step) {
  AdamWStep s{};
  s.beta1 = float(beta1), s.beta2 = float(beta2), s.eps = float(eps);
  s.one_minus_beta1 = float(1.0 - beta1), s.one_minus_beta2 = float(1.0 - beta2);
  s.decay_factor = float(1.0 - lr * weight_decay);
  s.step_size = float(lr / (1.0 - std::pow(beta1, double(step))));
  s.bc2_sqrt = float(std::sqrt(1.0 - std::pow(beta2, double(step))));
  return s;
}

ASC_HD void adamw_element(float& w, float& m, float& v, float g, const AdamWStep& s, bool decay) {
  if (decay) w = w * s.decay_factor;
  m = m * s.beta1 + s.one_minus_beta1 * g;
  v = v * s.beta2 + s.one_minus_beta2 * g * g;
#if defined(__CUDA_ARCH__)
  const float denom = __fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt) + s.eps;
  w = w - __fdiv_rn(s.step_size * m, denom);  // ATen's addcdiv: self + value * t1 / t2
#else
  const float denom = __builtin_sqrtf(v) / s.bc2_sqrt + s.eps;
  w = w - s.step_size * m / denom;  // ATen's addcdiv: self + value * t1 / t2
#endif
}

ASC_HD uint16_t float_to_bf16_rne(float f) {
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(f);
#else
  std::memcpy(&bits, &f, 4);
#endif
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)) return 0x7fc0;  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

ASC_HD float bf16_to_float(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

}  // namespace asc::kernels
