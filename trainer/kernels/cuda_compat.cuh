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
#error \
    "ASC_CUDA_EMULATION: include the CPU emulator (tests/emu/cuda_emu.h) before the kernel source"
#endif
#define ASC_LAUNCH(grid, block, stream, ...) \
  ::asc::emu::launcher((grid), (block), (stream), __VA_ARGS__)
#define ASC_UNROLL
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define ASC_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
#define ASC_UNROLL _Pragma("unroll")  // a loop over a register array: unrolled, kept in registers
#endif

#include <cstdio>
#include <string>

namespace asc::kernels {
// The CUDA runtime these kernels were built against, for error messages ("runtime 13.0").
inline std::string cuda_version_text() {
#if defined(CUDART_VERSION)
  char text[32];
  std::snprintf(text, sizeof text, "runtime %d.%d", CUDART_VERSION / 1000,
                (CUDART_VERSION % 1000) / 10);
  return text;
#else
  return "(CPU emulator)";
#endif
}
}  // namespace asc::kernels
