// The AVX2 + FMA build of decode_kernels (this file alone is compiled with -mavx2 -mfma).
#include <cmath>
#include <cstdint>

namespace asc::kernels::avx2 {
#include "kernels/decode_kernels_impl.h"
}  // namespace asc::kernels::avx2
