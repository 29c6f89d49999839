#include "kernels/decode_cpu.h"

#include <ATen/Parallel.h>
#include <torch/nn/functional/linear.h>

#include <cstdlib>
#include <cstring>

#include "kernels/fused_adamw.h"
#include "kernels/small_m_gemm.h"

namespace asc::kernels {

namespace {
bool small_gemm_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("ASCLEPIUS_SMALL_GEMM");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}
}  // namespace

torch::Tensor small_m_linear(const torch::Tensor& x, const torch::Tensor& w) {
  const int64_t D = w.size(-1), N = w.size(0);
  const int64_t M = D > 0 ? x.numel() / D : 0;
  if (!small_gemm_enabled() || M < 1 || M > kSmallMaxRows || !x.device().is_cpu() ||
      !w.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat ||
      w.dim() != 2 || x.size(-1) != D || !w.is_contiguous())
    return torch::linear(x, w);
  const auto xc = x.contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  auto y = torch::empty(sizes, x.options());
  const float* xp = xc.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // The AVX2 + FMA build where the CPU ISA in use (ASCLEPIUS_CPU_ISA, else the best) has it.
  static const bool has_fma = cpu_has_avx2_fma();
  const bool avx2_fma = has_fma && cpu_isa() != CpuIsa::kBaseline;
  // Weight rows in blocks of at least 64 (~128 KiB at D = 512), so each thread streams a long run.
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    small_m_gemm_f32(xp, M, D, wp, n0, n1, yp, N, avx2_fma);
  });
  return y;
}

}  // namespace asc::kernels
