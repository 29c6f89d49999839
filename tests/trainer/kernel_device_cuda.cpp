// kernel_device_cuda.cpp — the CUDA-kernel tests on a CUDA device (see kernel_device.h).
#include "kernel_device.h"

#include <torch/cuda.h>

#include "kernels/fused_adamw.h"
#include "kernels/layer_kernels.h"

namespace asc::test {

std::string kernel_tests_unavailable() {
  if (!kernels::cuda_kernels_built() || !kernels::layer_kernels_built())
    return "built without CUDA";
  if (!torch::cuda::is_available()) return "no CUDA device";
  return "";
}
at::Device kernel_device() {
  return at::Device(at::kCUDA, 0);
}
at::Tensor on_kernel_device(const at::Tensor& t) {
  return t.to(kernel_device(), /*non_blocking=*/false, /*copy=*/true);
}
int64_t kernel_launches() {
  return -1;
}
ReferencePath::ReferencePath() : previous_(false) {}
ReferencePath::~ReferencePath() = default;

}  // namespace asc::test
