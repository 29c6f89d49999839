// kernel_device.h — where the CUDA-kernel tests (FusedAdamW.Cuda*, FlatAdamW.Cuda*,
// LayerOps.Cuda*) run the kernels, chosen by linking:
//   test_trainer          (kernel_device_cuda.cpp): a CUDA device; skipped without one;
//   test_kernels_emulated (tests/emu/kernel_device_emulated.cpp): the CPU, with the same kernel
//     sources compiled for the CPU emulator (tests/emu/cuda_emu.h), so they run on every machine.
#pragma once

#include <string>

#include <ATen/Tensor.h>

namespace asc::test {

// Empty when the kernels can run here; otherwise why the tests skip.
std::string kernel_tests_unavailable();
at::Device kernel_device();
// A copy of t on the kernel device (a copy also when that is the CPU).
at::Tensor on_kernel_device(const at::Tensor& t);
// Kernel launches so far where they can be counted (the emulator), else -1.
int64_t kernel_launches();

// While alive, CPU tensors take the plain CPU path (the reference the kernels are compared with):
// a no-op for test_trainer, where CPU tensors never take the kernels; in the emulated build it
// turns the emulated kernels off. FlatAdamW picks its path at each step, so a step taken under
// this guard takes the CPU path.
class ReferencePath {
 public:
  ReferencePath();
  ~ReferencePath();
  ReferencePath(const ReferencePath&) = delete;
  ReferencePath& operator=(const ReferencePath&) = delete;

 private:
  bool previous_;
};

}  // namespace asc::test

#define ASC_SKIP_WITHOUT_KERNEL_DEVICE()                              \
  do {                                                                \
    const std::string why_ = ::asc::test::kernel_tests_unavailable(); \
    if (!why_.empty()) GTEST_SKIP() << why_;                          \
  } while (0)
