#include "kernels/decode_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/record_function.h>
#include <torch/nn/functional/linear.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/fused_adamw.h"
#include "common/error.h"
#include "kernels/decode_kernels.h"

namespace asc::kernels {

namespace {
// The AVX2 + FMA build where the CPU ISA in use (ASCLEPIUS_CPU_ISA, else the best) has it.
bool use_avx2_fma() {
  static const bool has = cpu_has_avx2_fma();
  return has && cpu_isa() != CpuIsa::kBaseline;
}

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
  const bool grad = at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad());
  if (grad || !small_gemm_enabled() || M < 1 || M > kSmallMaxRows || !x.device().is_cpu() ||
      !w.device().is_cpu() || x.scalar_type() != at::kFloat || w.scalar_type() != at::kFloat ||
      w.dim() != 2 || x.size(-1) != D || !w.is_contiguous())
    return torch::linear(x, w);
  RECORD_FUNCTION("asc::small_m_linear", std::vector<c10::IValue>{});  // named in --profile
  const auto xc = x.contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  auto y = torch::empty(sizes, x.options());
  const float* xp = xc.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const bool avx2_fma = use_avx2_fma();
  // Weight rows in blocks of at least 64 (~128 KiB at D = 512), so each thread streams a long run.
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    small_m_gemm_f32(xp, M, D, wp, n0, n1, yp, N, avx2_fma);
  });
  return y;
}

bool decode_attention_applies(const torch::Tensor& q, const torch::Tensor& k) {
  return small_gemm_enabled() && q.device().is_cpu() && k.device().is_cpu() &&
         q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && q.dim() == 4 &&
         k.dim() == 4 && q.size(2) == 1 && k.is_contiguous();
}

torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const std::vector<int64_t>& begin,
                               const std::vector<int64_t>& end, double scale) {
  const int64_t B = q.size(0), H = q.size(1), E = q.size(3), K = k.size(1), S = k.size(2);
  ASC_CHECK(decode_attention_applies(q, k) && v.sizes() == k.sizes() && v.is_contiguous() &&
                v.scalar_type() == at::kFloat && k.size(0) == B && k.size(3) == E && K > 0 &&
                H % K == 0 && int64_t(begin.size()) == B && int64_t(end.size()) == B,
            "decode_attention: q {} over caches {} / {} with {} rows of ranges", q.sizes(),
            k.sizes(), v.sizes(), begin.size());
  int64_t longest = 0;
  for (int64_t b = 0; b < B; ++b) {
    ASC_CHECK(begin[size_t(b)] >= 0 && end[size_t(b)] <= S,
              "decode_attention: row {} reads slots [{}, {}) of a {}-slot cache", b,
              begin[size_t(b)], end[size_t(b)], S);
    longest = std::max(longest, end[size_t(b)] - begin[size_t(b)]);
  }
  RECORD_FUNCTION("asc::decode_attention", std::vector<c10::IValue>{});
  const auto qc = q.contiguous();
  auto out = torch::empty({B, H, 1, E}, q.options());
  const float* qp = qc.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const bool avx2_fma = use_avx2_fma();
  at::parallel_for(0, B * H, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores(size_t(std::max<int64_t>(longest, 1)));
    decode_attention_f32(qp, kp, vp, op, H, K, S, E, begin.data(), end.data(), float(scale), t0, t1,
                         scores.data(), avx2_fma);
  });
  return out;
}

}  // namespace asc::kernels
