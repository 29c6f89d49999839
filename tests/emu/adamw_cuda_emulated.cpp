// adamw_cuda_emulated.cpp — trainer/kernels/adamw_cuda.cu, unchanged, compiled as host C++ for the
// CPU emulator (ASC_CUDA_EMULATION; see tests/emu/cuda_emu.h).
#include "emu/cuda_emu.h"  // the emulator first: kernels/cuda_compat.cuh expects it
#include "kernels/adamw_cuda.cu"
