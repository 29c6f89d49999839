// layer_cuda_stub.cpp — linked instead of layer_cuda.cu when the build has no CUDA compiler.
#include "common/error.h"
#include "kernels/layer_kernels.h"

namespace asc::kernels {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  ASC_FAIL("{} on CUDA: this build has no CUDA (configure with nvcc available)", what);
}
}  // namespace

bool layer_kernels_built() {
  return false;
}
void rmsnorm_forward_cuda(const void*, const void*, void*, float*, int64_t, int64_t, float, int,
                          void*) {
  no_cuda("RMSNorm");
}
int64_t rmsnorm_backward_workspace(int64_t) {
  return 0;
}
void rmsnorm_backward_cuda(const void*, const void*, const void*, const float*, void*, float*,
                           float*, int64_t, int64_t, int, void*) {
  no_cuda("RMSNorm");
}
void swiglu_forward_cuda(const void*, const void*, void*, int64_t, int, void*) {
  no_cuda("SwiGLU");
}
void swiglu_backward_cuda(const void*, const void*, const void*, void*, void*, int64_t, int,
                          void*) {
  no_cuda("SwiGLU");
}
void rotary_forward_cuda(const void*, const void*, const void*, void*, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int, void*) {
  no_cuda("rotary embedding");
}
void rotary_backward_cuda(const void*, const void*, const void*, void*, int64_t, int64_t, int64_t,
                          int64_t, int64_t, int, void*) {
  no_cuda("rotary embedding");
}
void cross_entropy_chunk_cuda(void*, const int64_t*, float*, int64_t, int64_t, int64_t,
                              const float*, int, void*) {
  no_cuda("cross-entropy");
}

}  // namespace asc::kernels
