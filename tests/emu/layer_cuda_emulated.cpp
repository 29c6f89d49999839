// layer_cuda_emulated.cpp — trainer/kernels/layer_cuda.cu, unchanged, compiled as host C++ for the
// CPU emulator (ASC_CUDA_EMULATION; see tests/emu/cuda_emu.h).
#include "kernels/layer_cuda.cu"
