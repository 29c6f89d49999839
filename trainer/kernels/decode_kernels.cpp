#include "kernels/decode_kernels.h"

#include <cmath>
#include <cstdint>

namespace asc::kernels {

namespace baseline {
#include "kernels/decode_kernels_impl.h"
}  // namespace baseline

namespace avx2 {
void small_m_gemm_f32_impl(const float* x, int64_t M, int64_t D, const float* W, int64_t n0,
                           int64_t n1, float* y, int64_t ldy);
void decode_attention_f32_impl(const float* q, const float* k, const float* v, float* out,
                               int64_t H, int64_t K, int64_t S, int64_t E, const int64_t* begin,
                               const int64_t* end, float scale, int64_t t0, int64_t t1,
                               float* scores);
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

void decode_attention_f32(const float* q, const float* k, const float* v, float* out, int64_t H,
                          int64_t K, int64_t S, int64_t E, const int64_t* begin, const int64_t* end,
                          float scale, int64_t t0, int64_t t1, float* scores, bool avx2_fma) {
  if (avx2_fma)
    avx2::decode_attention_f32_impl(q, k, v, out, H, K, S, E, begin, end, scale, t0, t1, scores);
  else
    baseline::decode_attention_f32_impl(q, k, v, out, H, K, S, E, begin, end, scale, t0, t1,
                                        scores);
}

}  // namespace asc::kernels
