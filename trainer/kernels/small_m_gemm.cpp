#include "kernels/small_m_gemm.h"

namespace asc::kernels {

namespace baseline {
#include "kernels/small_m_gemm_impl.h"
}  // namespace baseline

namespace avx2 {
void small_m_gemm_f32_impl(const float* x, int64_t M, int64_t D, const float* W, int64_t n0,
                           int64_t n1, float* y, int64_t ldy);
}  // namespace avx2

bool cpu_has_avx2_fma() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

void small_m_gemm_f32(const float* x, int64_t M, int64_t D, const float* W, int64_t n0, int64_t n1,
                      float* y, int64_t ldy, bool avx2_fma) {
  if (avx2_fma)
    avx2::small_m_gemm_f32_impl(x, M, D, W, n0, n1, y, ldy);
  else
    baseline::small_m_gemm_f32_impl(x, M, D, W, n0, n1, y, ldy);
}

}  // namespace asc::kernels
