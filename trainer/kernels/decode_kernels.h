// decode_kernels.h — the CPU kernels of a decoding step (one new token per sequence), fp32,
// row-major, no libtorch (the caller splits the work over threads: kernels/decode_cpu.h).
//  - small_m_gemm_f32: y = x W^T for a few rows of x (M = batch rows, often 1-8), where MKL's
//    general GEMM reads the weights at a fraction of the memory bandwidth (measured on the AVX2
//    EPYC VM: 6 GB/s for M = 8, D = 512; docs/PERFORMANCE.md). Each weight row is read once and
//    multiplied with every row of x while it is in registers.
//  - decode_attention_f32: one query per (row, head) over that row's own cached keys and values,
//    each read once, with no mask and nothing read past the row's length.
//
// Two builds of the same code: the x86-64 baseline and AVX2 + FMA; the caller chooses (the
// torch-side wrapper follows cpu_isa() of kernels/fused_adamw.h).
#pragma once

#include <cstdint>

namespace asc::kernels {

// Whether this CPU runs the AVX2 + FMA build.
bool cpu_has_avx2_fma();

// y[m, n] = sum_d x[m, d] * W[n, d] for m in [0, M), n in [n0, n1). x: [M, D] with row stride
// D; W: [N, D] with row stride D; y: [M, *] with row stride ldy. Any M >= 1 (rows are taken
// 8 at a time, then 4, 2, 1); sums in fp32 in a fixed order (8 lanes, then lane by lane).
void small_m_gemm_f32(const float* x, int64_t M, int64_t D, const float* W, int64_t n0, int64_t n1,
                      float* y, int64_t ldy, bool avx2_fma);

// Attention of one query per (row b, head h) for the tasks t = b * H + h in [t0, t1):
//   out[b, h] = sum_j softmax_j(scale * q[b, h] . k[b, g, j]) v[b, g, j],  j in [begin[b], end[b])
// with g = h / (H / K) (grouped-query heads share their group's keys). q and out: [B, H, E];
// k and v: caches [B, K, S, E]. A row with end <= begin gets zeros. `scores`: room for
// max(end - begin) floats. Scores and the softmax in fp32 (exp from libm), keys in order.
void decode_attention_f32(const float* q, const float* k, const float* v, float* out, int64_t H,
                          int64_t K, int64_t S, int64_t E, const int64_t* begin, const int64_t* end,
                          float scale, int64_t t0, int64_t t1, float* scores, bool avx2_fma);

}  // namespace asc::kernels
