// cuda_compat.cuh — what the kernel sources (*.cu) take from CUDA: the runtime and bf16 headers
// under nvcc, or, when ASC_CUDA_EMULATION is defined, the CPU emulator of tests/emu that runs the
// same kernel code in the CPU test suite. ASC_LAUNCH is the one spelling of a kernel launch:
//   ASC_LAUNCH(grid, block, stream, kernel)(args...)  ==  kernel<<<grid, block, 0,
//   stream>>>(args...)
#pragma once

#if defined(ASC_CUDA_EMULATION)
#include "emu/cuda_emu.h"
#define ASC_LAUNCH(grid, block, stream, ...) \
  ::asc::emu::launcher((grid), (block), (stream), __VA_ARGS__)
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define ASC_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
#endif
