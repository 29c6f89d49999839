// small_m_gemm_impl.h — the body of small_m_gemm_f32, included once per instruction set by
// small_m_gemm.cpp (baseline) and small_m_gemm_avx2.cpp (-mavx2 -mfma), inside a namespace
// named for that set. GCC's vector extension: 8 floats per vector (two SSE registers on the
// baseline, one AVX register with AVX2).
#include <cstdint>

namespace {

typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));

inline v8f load8(const float* p) {
  return *reinterpret_cast<const v8f*>(p);
}

// Rows [0, MR) of x against one weight row w: MR accumulators of 8 lanes, then each row's lanes
// summed in order and the tail (D % 8) added.
template <int MR>
inline void rows_times_weight(const float* x, int64_t D, const float* w, float* y, int64_t ldy) {
  v8f acc[MR] = {};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    const v8f wv = load8(w + d);
    for (int i = 0; i < MR; ++i) acc[i] += load8(x + i * D + d) * wv;
  }
  for (int i = 0; i < MR; ++i) {
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s += acc[i][l];
    for (int64_t e = d; e < D; ++e) s += x[i * D + e] * w[e];
    y[i * ldy] = s;
  }
}

}  // namespace

void small_m_gemm_f32_impl(const float* x, int64_t M, int64_t D, const float* W, int64_t n0,
                           int64_t n1, float* y, int64_t ldy) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = W + n * D;
    int64_t m = 0;
    for (; m + 8 <= M; m += 8) rows_times_weight<8>(x + m * D, D, w, y + m * ldy + n, ldy);
    if (m + 4 <= M) rows_times_weight<4>(x + m * D, D, w, y + m * ldy + n, ldy), m += 4;
    if (m + 2 <= M) rows_times_weight<2>(x + m * D, D, w, y + m * ldy + n, ldy), m += 2;
    if (m < M) rows_times_weight<1>(x + m * D, D, w, y + m * ldy + n, ldy);
  }
}
