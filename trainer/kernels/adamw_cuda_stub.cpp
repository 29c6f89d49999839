// adamw_cuda_stub.cpp — linked instead of adamw_cuda.cu when the build has no CUDA compiler.
#include "common/error.h"
#include "kernels/fused_adamw.h"

namespace asc::kernels {

bool cuda_kernels_built() {
  return false;
}
void grad_sq_norm_cuda(const FusedAdamWArgs&, float*, void*) {
  ASC_FAIL("fused AdamW on CUDA: this build has no CUDA (configure with nvcc available)");
}
void fused_adamw_cuda(const FusedAdamWArgs&, const float*, float, void*) {
  ASC_FAIL("fused AdamW on CUDA: this build has no CUDA (configure with nvcc available)");
}

}  // namespace asc::kernels
