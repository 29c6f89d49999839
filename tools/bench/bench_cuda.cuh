// bench_cuda.cuh — helpers shared by the standalone GPU benchmarks (no libtorch): exit on a CUDA
// error, and deterministic pseudo-random inputs (never zeros: zeros can time faster than data).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace bench {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// A value in [-1, 1) for element i of stream `seed`.
__device__ __forceinline__ float pseudo_random(int64_t i, uint32_t seed) {
  uint32_t h = uint32_t(i) * 2654435761u ^ seed;
  h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
  return float(h >> 8) / float(1u << 23) - 1.f;
}

__global__ void fill(float* x, int64_t n, uint32_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = pseudo_random(i, seed);
}

// bf16 bit patterns (the float's upper half).
__global__ void fill_bf16(uint16_t* x, int64_t n, uint32_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = uint16_t(__float_as_uint(pseudo_random(i, seed)) >> 16);
}

}  // namespace bench
