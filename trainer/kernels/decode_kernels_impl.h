// decode_kernels_impl.h — the bodies of decode_kernels.h, included once per instruction set by
// decode_kernels.cpp (baseline) and decode_kernels_avx2.cpp (-mavx2 -mfma), inside a namespace
// named for that set. GCC's vector extension: 8 floats per vector (two SSE registers on the
// baseline, one AVX register with AVX2).
// (The including file includes <cmath> and <cstdint> first, outside the namespace.)

namespace {

typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));

inline v8f load8(const float* p) {
  return *reinterpret_cast<const v8f*>(p);
}

// out[r * out_stride] = scale * (a . rows_r) for R rows rows_r = rows + r * n of n floats, at
// once (independent chains): 8 lanes, then the lanes in order, then the tail, so a row's sum is
// the same whatever R. With kPrefetch the vector two of its own lengths on from `a` is
// prefetched a cache line at a time (the product's next weight rows; measured on the EPYC VM:
// 41 -> 49 GFLOP/s at M = 8; a prefetch past the end does not fault).
template <int R, bool kPrefetch>
inline void vector_times_rows(const float* a, const float* rows, int64_t n, float scale, float* out,
                              int64_t out_stride) {
  v8f acc[R] = {};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    if (kPrefetch && (d & 15) == 0) __builtin_prefetch(a + 2 * n + d);
    const v8f av = load8(a + d);
    for (int r = 0; r < R; ++r) acc[r] += load8(rows + r * n + d) * av;
  }
  for (int r = 0; r < R; ++r) {
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s += acc[r][l];
    for (int64_t e = d; e < n; ++e) s += rows[r * n + e] * a[e];
    out[r * out_stride] = scale * s;
  }
}

// Rows [0, MR) of x against one weight row w (the next weight rows prefetched).
template <int MR>
inline void rows_times_weight(const float* x, int64_t D, const float* w, float* y, int64_t ldy) {
  vector_times_rows<MR, true>(w, x, D, 1.0f, y, ldy);
}

// q . k_r for R keys k_r = k + r * E.
template <int R>
inline void dots(const float* q, const float* k, int64_t E, float scale, float* out) {
  vector_times_rows<R, false>(q, k, E, scale, out, 1);
}

}  // namespace

void decode_attention_f32_impl(const float* q, const float* k, const float* v, float* out,
                               int64_t H, int64_t K, int64_t S, int64_t E, const int64_t* begin,
                               const int64_t* end, float scale, int64_t t0, int64_t t1,
                               float* scores) {
  const int64_t group = H / K;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t b = t / H, h = t % H, g = h / group;
    const float* qp = q + t * E;
    float* op = out + t * E;
    const int64_t j0 = begin[b], n = end[b] - begin[b];
    for (int64_t e = 0; e < E; ++e) op[e] = 0.0f;
    if (n <= 0) continue;
    const float* kp = k + ((b * K + g) * S + j0) * E;
    const float* vp = v + ((b * K + g) * S + j0) * E;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) dots<4>(qp, kp + j * E, E, scale, scores + j);
    for (; j < n; ++j) dots<1>(qp, kp + j * E, E, scale, scores + j);
    float top = -INFINITY;
    for (j = 0; j < n; ++j) top = scores[j] > top ? scores[j] : top;
    float sum = 0.0f;
    for (j = 0; j < n; ++j) {
      const float p = std::exp(scores[j] - top);
      sum += p;
      const float* vj = vp + j * E;
      int64_t e = 0;
      for (; e + 8 <= E; e += 8) *reinterpret_cast<v8f*>(op + e) += p * load8(vj + e);
      for (; e < E; ++e) op[e] += p * vj[e];
    }
    const float inv = 1.0f / sum;
    for (int64_t e = 0; e < E; ++e) op[e] *= inv;
  }
}

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
