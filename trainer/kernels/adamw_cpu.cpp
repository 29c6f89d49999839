#include <ATen/Parallel.h>

#include <cmath>

#include "common/error.h"
#include "kernels/adamw_update.h"
#include "kernels/fused_adamw.h"

namespace asc::kernels {
namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per task: big enough to amortise, ~128 KiB/array

AdamWStep step_constants(const FusedAdamWArgs& a) {
  return make_adamw_step(a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.step);
}

void check(const FusedAdamWArgs& a) {
  ASC_CHECK(a.master && a.exp_avg && a.exp_avg_sq, "fused AdamW: null state buffer");
  ASC_CHECK((a.grad_f32 != nullptr) != (a.grad_bf16 != nullptr),
            "fused AdamW: give exactly one of grad_f32 / grad_bf16");
  int64_t at = 0;
  for (const auto& s : a.segments) {
    ASC_CHECK(s.offset == at && s.numel >= 0,
              "fused AdamW: segments must cover [0, numel) in order");
    at += s.numel;
  }
  ASC_CHECK(at == a.numel, "fused AdamW: segments cover {} of {} elements", at, a.numel);
}

template <bool kBf16Grad, bool kWriteBf16>
inline __attribute__((always_inline)) void update_loop(const FusedAdamWArgs& a, const AdamWStep& s,
                                                       bool decay, int64_t b, int64_t e) {
  float* __restrict w = a.master;
  float* __restrict m = a.exp_avg;
  float* __restrict v = a.exp_avg_sq;
  const float scale = a.grad_scale;
  for (int64_t i = b; i < e; ++i) {  // a straight loop the compiler vectorises
    const float g = (kBf16Grad ? bf16_to_float(a.grad_bf16[i]) : a.grad_f32[i]) * scale;
    adamw_element(w[i], m[i], v[i], g, s, decay);
    if (kWriteBf16) a.param_bf16[i] = float_to_bf16_rne(w[i]);
  }
}

// Compiled three times (x86-64 baseline, AVX2, AVX-512F) and picked at load time by the CPU. The
// file is built with -ffp-contract=off: no fused multiply-add, every operation rounds on its own,
// so results do not depend on the clone (nor differ from the CUDA kernel, built --fmad=false).
#define ASC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
ASC_CLONES void update_f32(const FusedAdamWArgs& a, const AdamWStep& s, bool d, int64_t b,
                           int64_t e) {
  update_loop<false, false>(a, s, d, b, e);
}
ASC_CLONES void update_f32_bf16out(const FusedAdamWArgs& a, const AdamWStep& s, bool d, int64_t b,
                                   int64_t e) {
  update_loop<false, true>(a, s, d, b, e);
}
ASC_CLONES void update_bf16(const FusedAdamWArgs& a, const AdamWStep& s, bool d, int64_t b,
                            int64_t e) {
  update_loop<true, false>(a, s, d, b, e);
}
ASC_CLONES void update_bf16_bf16out(const FusedAdamWArgs& a, const AdamWStep& s, bool d, int64_t b,
                                    int64_t e) {
  update_loop<true, true>(a, s, d, b, e);
}
}  // namespace

double grad_sq_norm_cpu(const FusedAdamWArgs& a) {
  check(a);
  return at::parallel_reduce(
      int64_t(0), a.numel, kGrain, 0.0,
      [&](int64_t b, int64_t e, double acc) {
        for (int64_t i = b; i < e; ++i) {
          const double g = a.grad_bf16 ? bf16_to_float(a.grad_bf16[i]) : a.grad_f32[i];
          acc += g * g;
        }
        return acc;
      },
      [](double x, double y) { return x + y; });
}

void fused_adamw_cpu(const FusedAdamWArgs& a) {
  check(a);
  const AdamWStep s = step_constants(a);
  for (const auto& seg : a.segments) {
    at::parallel_for(seg.offset, seg.offset + seg.numel, kGrain, [&](int64_t b, int64_t e) {
      if (a.grad_bf16 && a.param_bf16)
        update_bf16_bf16out(a, s, seg.decay, b, e);
      else if (a.grad_bf16)
        update_bf16(a, s, seg.decay, b, e);
      else if (a.param_bf16)
        update_f32_bf16out(a, s, seg.decay, b, e);
      else
        update_f32(a, s, seg.decay, b, e);
    });
  }
}

}  // namespace asc::kernels
