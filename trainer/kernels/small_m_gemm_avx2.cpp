// The AVX2 + FMA build of small_m_gemm (this file alone is compiled with -mavx2 -mfma).
#include <cstdint>

namespace asc::kernels::avx2 {
#include "kernels/small_m_gemm_impl.h"
}  // namespace asc::kernels::avx2
