// kernel_device_emulated.cpp — the CUDA-kernel tests on the CPU emulator (see
// tests/trainer/kernel_device.h): the kernels take CPU tensors unless a ReferencePath is alive.
#include "kernel_device.h"

#include "emu/kernels_on_cpu.h"

namespace asc::test {

std::string kernel_tests_unavailable() {
  return "";
}
at::Device kernel_device() {
  return at::Device(at::kCPU);
}
at::Tensor on_kernel_device(const at::Tensor& t) {
  return t.to(kernel_device(), /*non_blocking=*/false, /*copy=*/true);
}
int64_t kernel_launches() {
  return emu::kernel_launches();
}
ReferencePath::ReferencePath() : previous_(emu::set_kernels_on_cpu(false)) {}
ReferencePath::~ReferencePath() {
  emu::set_kernels_on_cpu(previous_);
}

}  // namespace asc::test
