// cuda_emu.h — a small CPU emulator of the CUDA execution model, so the project's kernel sources
// (trainer/kernels/*.cu, through kernels/cuda_compat.cuh with ASC_CUDA_EMULATION defined) compile
// as host C++ and run in the CPU test suite against the libtorch reference. Written here because
// no packaged library runs CUDA C++ on a CPU.
//
// What it models: a launch runs its blocks one after another; every thread of a block is a fiber
// (its own stack) on the calling thread, scheduled cooperatively, so __syncthreads and warp
// shuffles are real barriers and the interleaving is deterministic: between two barriers the
// threads run one after another, ascending and descending in turn (and the other way round in
// every other block), so a race inside a phase shows up as a wrong result in some block.
// __shared__ variables are function statics (one block at a time, so one copy per block). Grid
// and block dimensions are checked against the hardware's limits (cudaGetLastError reports
// cudaErrorInvalidConfiguration; registers, shared memory and __launch_bounds__ are not checked).
// Barriers that cannot all complete (threads of a block split between __syncthreads and warp
// shuffles), a full-mask shuffle with a lane missing, and lanes of a warp at different shuffles
// fail the launch with a message instead of hanging. Kernel memory accesses are checked by
// AddressSanitizer where the kernels are built with it (the test targets are): it sees accesses
// outside an allocation, not between views of one; UBSan's alignment check there stops a
// misaligned vector load (the GPU faults on one; x86 would not notice).
//
// What it does not model: concurrency between blocks, the memory model, lost updates of
// concurrent non-atomic writes, fast-math intrinsics (__expf is expf), code under __CUDA_ARCH__
// (the host branch compiles instead), shared-memory capacity and uninitialised shared memory.
// It checks logic (indexing, reductions, barriers, launch shapes, bounds); speed, device
// arithmetic and cross-block races are for the GPU (tools/gpu/check.sh, compute-sanitizer).
#pragma once

#define ASC_CUDA_EMULATOR 1  // kernels/cuda_compat.cuh checks that an emulator came first

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>

// --- the CUDA C++ dialect as host C++ -----------------------------------------------------------
#define __global__ __attribute__((noinline))  // each kernel a frame of its own in reports
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}

// The running fiber's coordinates (the emulator sets them before resuming a fiber).
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

void __syncthreads();
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
double __shfl_xor_sync(unsigned mask, double v, int lane_mask);
int __shfl_xor_sync(unsigned mask, int v, int lane_mask);

inline float rsqrtf(float v) {
  return 1.f / std::sqrt(v);
}
inline float __expf(float v) {
  return std::exp(v);
}
inline float __logf(float v) {
  return std::log(v);
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
template <class T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
using std::isfinite;

// bf16 with CUDA's names; round to nearest even (NaN stays NaN), written independently of libtorch.
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t b = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if (std::isnan(f)) return {uint16_t((b >> 16) | 0x40u)};
  b += 0x7fffu + ((b >> 16) & 1u);
  return {uint16_t(b >> 16)};
}

// --- the runtime API the kernel sources use -----------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
struct CUstream_st;
using cudaStream_t = CUstream_st*;

const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();  // the last launch's error, then cleared (as CUDA's)
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaMalloc(void** p, size_t bytes);  // 256-byte aligned, as cudaMalloc's
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);

namespace asc::emu {

// Runs body once per thread of the grid (see above). An invalid configuration runs nothing and
// sets the error cudaGetLastError returns; a barrier fault runs the rest of nothing and sets
// cudaErrorLaunchFailure, with the reason in last_fault().
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);
const char* last_fault();

// kernel<<<grid, block, 0, stream>>>(args...) as launcher(grid, block, stream, kernel)(args...).
template <class Kernel>
auto launcher(dim3 grid, dim3 block, cudaStream_t, Kernel* kernel) {
  return [=](auto&&... args) { run_grid(grid, block, [&] { kernel(args...); }); };
}

// Statistics of the launches so far (for the emulator's own tests).
struct Stats {
  int64_t launches = 0, barriers = 0;
};
Stats stats();

}  // namespace asc::emu
