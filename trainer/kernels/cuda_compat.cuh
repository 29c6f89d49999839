// cuda_compat.cuh — what the kernel sources (*.cu) take from CUDA: the runtime and bf16 headers
// under nvcc; or, when ASC_CUDA_EMULATION is defined, whatever CPU emulator the including build
// put in front of the kernel source (the test suite's tests/emu/*_emulated.cpp include their
// emulator, then the .cu file; nothing here reaches into tests/). The emulator must provide the
// CUDA names the kernels use and asc::emu::launcher. ASC_LAUNCH is the one spelling of a launch:
//   ASC_LAUNCH(grid, block, stream, kernel)(args...)  ==  kernel<<<grid, block, 0,
//   stream>>>(args...)
#pragma once

#if defined(ASC_CUDA_EMULATION)
#if !defined(ASC_CUDA_EMULATOR)
#error "ASC_CUDA_EMULATION: include the CPU emulator (tests/emu/cuda_emu.h) before the kernel source"
#endif
#define ASC_LAUNCH(grid, block, stream, ...) \
  ::asc::emu::launcher((grid), (block), (stream), __VA_ARGS__)
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define ASC_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
#endif

namespace asc::kernels {
// The CUDA runtime these kernels were built against, for error messages.
#if defined(CUDART_VERSION)
#define ASC_STR2(x) #x
#define ASC_STR(x) ASC_STR2(x)
inline constexpr const char* kCudaVersion =
    "runtime " ASC_STR(CUDART_VERSION);  // e.g. 13000 = 13.0
#undef ASC_STR
#undef ASC_STR2
#else
inline constexpr const char* kCudaVersion = "(CPU emulator)";
#endif
}  // namespace asc::kernels
