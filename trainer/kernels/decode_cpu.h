// decode_cpu.h — CPU operations of a decoding step (one new token per sequence), where the
// batch is a handful of rows and libtorch's general kernels leave speed unused.
#pragma once

#include <torch/types.h>

namespace asc::kernels {

// Rows of x up to which small_m_linear takes small_m_gemm (beyond: torch::linear's GEMM, which
// is compute-bound and better there).
constexpr int64_t kSmallMaxRows = 16;

// y = x W^T for x [..., D] and W [N, D]: through small_m_gemm (split over libtorch's threads by
// weight rows) when both are fp32 on the CPU and x has at most kSmallMaxRows rows; torch::linear
// otherwise (other dtypes, devices, more rows), and everywhere with
// ASCLEPIUS_SMALL_GEMM=0 (benchmarks).
torch::Tensor small_m_linear(const torch::Tensor& x, const torch::Tensor& w);

}  // namespace asc::kernels
