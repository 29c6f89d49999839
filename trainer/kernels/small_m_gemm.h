// small_m_gemm.h — y = x W^T for a few rows of x: the projections of a decoding step on the CPU
// (one token per sequence, so M = batch rows, often 1-8), where MKL's general GEMM reads the
// weights at a fraction of the memory bandwidth (measured on the AVX2 EPYC VM: 6 GB/s for
// M = 8, D = 512; docs/PERFORMANCE.md). Each weight row is read once and multiplied with every
// row of x while it is in registers. fp32, row-major, no libtorch (the caller splits the
// weight rows over threads).
//
// Two builds of the same code: the x86-64 baseline and AVX2 + FMA; the caller chooses (the
// torch-side wrapper, kernels/decode_cpu.h, follows cpu_isa() of kernels/fused_adamw.h).
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

}  // namespace asc::kernels
