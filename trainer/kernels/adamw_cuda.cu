// adamw_cuda.cu — the fused AdamW step on the GPU: a grid-stride sum-of-squares kernel that leaves
// the global gradient norm on the device, then ONE launch over every segment of the flat shard
// that reads it, forms the clip factor on the device (no host synchronisation) and applies the
// shared per-element update (adamw_update.h). 128-bit loads/stores (float4) where a chunk is
// 16-byte aligned; scalar code for the rest. No libtorch here: raw pointers and a stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/adamw_update.h"
#include "kernels/fused_adamw.h"

namespace asc::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;  // elements per block of the update kernel

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

struct Chunk {
  int64_t begin, end;
  int decay;
};

__global__ void sq_norm_kernel(const float* g32, const uint16_t* g16, int64_t n, float* out) {
  __shared__ float partial[kThreads];
  float acc = 0.f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = g32 ? g32[i] : bf16_to_float(g16[i]);
    acc += g * g;
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(out, partial[0]);
}

__global__ void adamw_kernel(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                             const float* __restrict__ g32, const uint16_t* __restrict__ g16,
                             uint16_t* __restrict__ p16, const Chunk* __restrict__ chunks,
                             AdamWStep s, const float* __restrict__ norm_sq, float max_norm,
                             float grad_scale) {
  const Chunk c = chunks[blockIdx.x];
  float scale = grad_scale;
  if (norm_sq && max_norm > 0.f) scale *= fminf(1.f, max_norm / (sqrtf(*norm_sq) + 1e-6f));
  const bool vec = (c.begin % 4 == 0) && g32 && !p16;  // float4 path: fp32 grads, no bf16 copy
  if (vec) {
    const int64_t nv = (c.end - c.begin) / 4;
    for (int64_t k = threadIdx.x; k < nv; k += blockDim.x) {
      const int64_t i = c.begin + 4 * k;
      float4 wv = *reinterpret_cast<float4*>(w + i), mv = *reinterpret_cast<float4*>(m + i);
      float4 vv = *reinterpret_cast<float4*>(v + i);
      const float4 gv = *reinterpret_cast<const float4*>(g32 + i);
      adamw_element(wv.x, mv.x, vv.x, gv.x * scale, s, c.decay);
      adamw_element(wv.y, mv.y, vv.y, gv.y * scale, s, c.decay);
      adamw_element(wv.z, mv.z, vv.z, gv.z * scale, s, c.decay);
      adamw_element(wv.w, mv.w, vv.w, gv.w * scale, s, c.decay);
      *reinterpret_cast<float4*>(w + i) = wv, *reinterpret_cast<float4*>(m + i) = mv;
      *reinterpret_cast<float4*>(v + i) = vv;
    }
    for (int64_t i = c.begin + 4 * nv + threadIdx.x; i < c.end; i += blockDim.x) {
      adamw_element(w[i], m[i], v[i], g32[i] * scale, s, c.decay);
    }
    return;
  }
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const float g = (g32 ? g32[i] : bf16_to_float(g16[i])) * scale;
    adamw_element(w[i], m[i], v[i], g, s, c.decay);
    if (p16) p16[i] = float_to_bf16_rne(w[i]);
  }
}

AdamWStep step_constants(const FusedAdamWArgs& a) {
  return make_adamw_step(a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.step);
}

}  // namespace

bool cuda_kernels_built() {
  return true;
}

void grad_sq_norm_cuda(const FusedAdamWArgs& a, float* d_norm_sq, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  cuda_check(cudaMemsetAsync(d_norm_sq, 0, sizeof(float), st), "memset");
  const int blocks = int(std::min<int64_t>(1024, (a.numel + kThreads - 1) / kThreads));
  if (blocks > 0)
    sq_norm_kernel<<<blocks, kThreads, 0, st>>>(a.grad_f32, a.grad_bf16, a.numel, d_norm_sq);
  cuda_check(cudaGetLastError(), "sq_norm_kernel launch");
}

void fused_adamw_cuda(const FusedAdamWArgs& a, const float* d_norm_sq, float max_norm,
                      void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  // The chunk table: (segment, range) per block; small, rebuilt per call (a few KB).
  std::vector<Chunk> chunks;
  for (const auto& seg : a.segments)
    for (int64_t b = seg.offset; b < seg.offset + seg.numel; b += kChunk)
      chunks.push_back({b, std::min(b + kChunk, seg.offset + seg.numel), seg.decay ? 1 : 0});
  if (chunks.empty()) return;
  Chunk* d_chunks = nullptr;
  cuda_check(
      cudaMallocAsync(reinterpret_cast<void**>(&d_chunks), chunks.size() * sizeof(Chunk), st),
      "malloc");
  cuda_check(cudaMemcpyAsync(d_chunks, chunks.data(), chunks.size() * sizeof(Chunk),
                             cudaMemcpyHostToDevice, st),
             "copy chunk table");
  adamw_kernel<<<unsigned(chunks.size()), kThreads, 0, st>>>(
      a.master, a.exp_avg, a.exp_avg_sq, a.grad_f32, a.grad_bf16, a.param_bf16, d_chunks,
      step_constants(a), d_norm_sq, max_norm, a.grad_scale);
  cuda_check(cudaGetLastError(), "adamw_kernel launch");
  cuda_check(cudaFreeAsync(d_chunks, st), "free");
}

}  // namespace asc::kernels
