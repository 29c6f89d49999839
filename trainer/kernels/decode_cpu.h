// decode_cpu.h — CPU operations of a decoding step (one new token per sequence), where the
// batch is a handful of rows and libtorch's general kernels leave speed unused.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace asc::kernels {

// Rows of x up to which small_m_linear takes small_m_gemm (beyond: torch::linear's GEMM, which
// is compute-bound and better there).
constexpr int64_t kSmallMaxRows = 16;

// y = x W^T for x [..., D] and W [N, D]: through small_m_gemm (split over libtorch's threads by
// weight rows) when both are fp32 on the CPU and x has at most kSmallMaxRows rows; torch::linear
// otherwise (other dtypes, devices, more rows, a product autograd records: the kernel has no
// backward), and everywhere with ASCLEPIUS_SMALL_GEMM=0 (benchmarks).
torch::Tensor small_m_linear(const torch::Tensor& x, const torch::Tensor& w);

// Whether decode_attention runs for these tensors: fp32 on the CPU, one query per row and
// head, contiguous caches, and not ASCLEPIUS_SMALL_GEMM=0, which turns off both kernels
// (elsewhere callers use libtorch's attention with a mask).
bool decode_attention_applies(const torch::Tensor& q_BH1E, const torch::Tensor& k_BKSE);

// Attention of each row's one query over that row's own slots [begin[b], end[b]) of the caches
// (decode_attention_f32; grouped-query heads share their group's keys), split over libtorch's
// threads by (row, head): q [B, H, 1, E], k and v [B, K, S, E] -> [B, H, 1, E]. A row with
// end <= begin gets zeros.
torch::Tensor decode_attention(const torch::Tensor& q_BH1E, const torch::Tensor& k_BKSE,
                               const torch::Tensor& v_BKSE, const std::vector<int64_t>& begin,
                               const std::vector<int64_t>& end, double scale);

}  // namespace asc::kernels
