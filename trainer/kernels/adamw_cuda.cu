// adamw_cuda.cu — the fused AdamW step on the GPU. Two parts, both on one stream and with no host
// synchronisation:
//   grad_sq_norm_cuda: per-block partial sums of g² (grid-stride), then one block adds the
//     partials in a fixed order — the same bits on every run (no float atomics);
//   fused_adamw_cuda: ONE launch over every segment of the flat shard (multi-tensor style: block
//     b finds its segment by binary search in a small device table). Each block forms the clip
//     factor from the device-side norm and applies the shared per-element update
//     (adamw_update.h), 4 elements at a time with 128-bit loads/stores of the fp32 arrays (64-bit
//     for bf16 gradients and the bf16 copy); a chunk's unaligned head and tail go element-wise.
// No libtorch here: raw pointers and a stream. Not thread-safe across host threads (the segment
// table and norm scratch are cached per device).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/adamw_update.h"
#include "common/foreign_error.h"
#include "kernels/cuda_compat.cuh"
#include "kernels/fused_adamw.h"

namespace asc::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 16384;  // elements per block of the update (16 per thread)
constexpr int kNormBlocks = 1024;  // partial sums of the norm kernel

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    fail_library_call("CUDA", cuda_version_text().c_str(), what, cudaGetErrorString(e), kCudaHint,
                      __FILE__, __LINE__);
}

struct DevSegment {
  int64_t offset, numel;
  int64_t first_chunk;  // running count of chunks before this segment
  int64_t decay;        // 64-bit: no padding bytes, so tables compare equal with memcmp
};

// Device-side state reused across steps: the segment table (re-uploaded only when the layout
// changes) and the norm's partial sums.
struct DeviceCache {
  std::vector<DevSegment> host;
  DevSegment* segments = nullptr;
  size_t capacity = 0;
  float* partials = nullptr;
};
std::mutex cache_mutex;
std::map<int, DeviceCache> caches;

DeviceCache& cache_for_current_device() {
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "get device");
  return caches[dev];
}

__global__ void sq_norm_partial_kernel(const float* __restrict__ g32,
                                       const uint16_t* __restrict__ g16, int64_t n,
                                       float* __restrict__ partials) {
  __shared__ float red[kThreads];
  float acc = 0.f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = g32 ? g32[i] : bf16_to_float(g16[i]);
    acc += g * g;
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = red[0];
}

__global__ void sq_norm_final_kernel(const float* __restrict__ partials, int count,
                                     float* __restrict__ out) {
  __shared__ double red[kNormBlocks];
  red[threadIdx.x] = threadIdx.x < unsigned(count) ? double(partials[threadIdx.x]) : 0.0;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = float(red[0]);
}

struct alignas(8) Bf16x4 {  // one 64-bit load or store
  uint16_t x, y, z, w;
};

template <bool kBf16Grad>
__device__ __forceinline__ float grad_at(const float* g32, const uint16_t* g16, int64_t i) {
  if constexpr (kBf16Grad) return bf16_to_float(g16[i]);
  return g32[i];
}

template <bool kBf16Grad, bool kBf16Out>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                 const float* __restrict__ g32, const uint16_t* __restrict__ g16,
                 uint16_t* __restrict__ p16, const DevSegment* __restrict__ segs, int nsegs,
                 AdamWStep s, const float* __restrict__ norm_sq, float max_norm, float grad_scale) {
  // This block's segment: the last one whose first chunk is <= blockIdx.x.
  int lo = 0, hi = nsegs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (segs[mid].first_chunk <= int64_t(blockIdx.x))
      lo = mid;
    else
      hi = mid - 1;
  }
  const DevSegment seg = segs[lo];
  const int64_t begin = seg.offset + (int64_t(blockIdx.x) - seg.first_chunk) * kChunk;
  const int64_t end = min(begin + kChunk, seg.offset + seg.numel);
  const bool decay = seg.decay != 0;

  float scale = grad_scale;
  if (norm_sq) {
    const float nsq = *norm_sq;
    if (!isfinite(nsq)) return;  // a NaN/Inf gradient: the step is skipped, nothing changes
    if (max_norm > 0.f) scale *= fminf(1.f, __fdiv_rn(max_norm, sqrtf(nsq) + 1e-6f));
  }

  auto one = [&](int64_t i) {
    adamw_element(w[i], m[i], v[i], grad_at<kBf16Grad>(g32, g16, i) * scale, s, decay);
    if constexpr (kBf16Out) p16[i] = float_to_bf16_rne(w[i]);
  };
  // Element-wise up to the first multiple of 4 (all base pointers are 16-byte aligned).
  const int64_t vbegin = min(end, (begin + 3) & ~int64_t(3));
  const int64_t nvec = (end - vbegin) / 4;
  if (threadIdx.x < vbegin - begin) one(begin + threadIdx.x);
  for (int64_t k = threadIdx.x; k < nvec; k += blockDim.x) {
    const int64_t i = vbegin + 4 * k;
    float4 wv = *reinterpret_cast<const float4*>(w + i);
    float4 mv = *reinterpret_cast<const float4*>(m + i);
    float4 vv = *reinterpret_cast<const float4*>(v + i);
    float4 gv;
    if constexpr (kBf16Grad) {
      const Bf16x4 h = *reinterpret_cast<const Bf16x4*>(g16 + i);
      gv = make_float4(bf16_to_float(h.x), bf16_to_float(h.y), bf16_to_float(h.z),
                       bf16_to_float(h.w));
    } else {
      gv = *reinterpret_cast<const float4*>(g32 + i);
    }
    adamw_element(wv.x, mv.x, vv.x, gv.x * scale, s, decay);
    adamw_element(wv.y, mv.y, vv.y, gv.y * scale, s, decay);
    adamw_element(wv.z, mv.z, vv.z, gv.z * scale, s, decay);
    adamw_element(wv.w, mv.w, vv.w, gv.w * scale, s, decay);
    *reinterpret_cast<float4*>(w + i) = wv;
    *reinterpret_cast<float4*>(m + i) = mv;
    *reinterpret_cast<float4*>(v + i) = vv;
    if constexpr (kBf16Out) {
      *reinterpret_cast<Bf16x4*>(p16 + i) =
          Bf16x4{float_to_bf16_rne(wv.x), float_to_bf16_rne(wv.y), float_to_bf16_rne(wv.z),
                 float_to_bf16_rne(wv.w)};
    }
  }
  for (int64_t i = vbegin + 4 * nvec + threadIdx.x; i < end; i += blockDim.x) one(i);
}

bool aligned(const void* p, size_t a) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % a == 0;
}

}  // namespace

bool cuda_kernels_built() {
  return true;
}

void grad_sq_norm_cuda(const FusedAdamWArgs& a, float* d_norm_sq, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  std::lock_guard<std::mutex> lock(cache_mutex);
  DeviceCache& c = cache_for_current_device();
  if (!c.partials)
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&c.partials), kNormBlocks * sizeof(float)),
               "malloc norm partials");
  // A fixed grid (not sized by n): the order of the additions, hence the bits, depend only on n.
  ASC_LAUNCH(kNormBlocks, kThreads, st, sq_norm_partial_kernel)
  (a.grad_f32, a.grad_bf16, a.numel, c.partials);
  cuda_check(cudaGetLastError(), "sq_norm_partial_kernel launch");
  ASC_LAUNCH(1, kNormBlocks, st, sq_norm_final_kernel)(c.partials, kNormBlocks, d_norm_sq);
  cuda_check(cudaGetLastError(), "sq_norm_final_kernel launch");
}

void fused_adamw_cuda(const FusedAdamWArgs& a, const float* d_norm_sq, float max_norm,
                      void* stream) {
  if ((a.grad_f32 != nullptr) == (a.grad_bf16 != nullptr))
    fail_at("fused AdamW: give exactly one of grad_f32 / grad_bf16", __FILE__, __LINE__);
  if (!aligned(a.master, 16) || !aligned(a.exp_avg, 16) || !aligned(a.exp_avg_sq, 16) ||
      !aligned(a.grad_f32, 16) || !aligned(a.grad_bf16, 8) || !aligned(a.param_bf16, 8))
    fail_at("fused AdamW (CUDA): flat buffers must be 16-byte aligned", __FILE__, __LINE__);
  auto st = static_cast<cudaStream_t>(stream);
  std::vector<DevSegment> segs;
  int64_t chunks = 0, at = 0;
  for (const auto& seg : a.segments) {
    if (seg.offset != at || seg.numel < 0)
      fail_at("fused AdamW: segments must cover [0, numel) in order", __FILE__, __LINE__);
    at += seg.numel;
    if (seg.numel == 0) continue;
    segs.push_back({seg.offset, seg.numel, chunks, seg.decay ? 1 : 0});
    chunks += (seg.numel + kChunk - 1) / kChunk;
  }
  if (at != a.numel) fail_at("fused AdamW: segments do not cover numel", __FILE__, __LINE__);
  if (chunks == 0) return;
  if (chunks > int64_t(INT32_MAX)) fail_at("fused AdamW: shard too large", __FILE__, __LINE__);

  std::lock_guard<std::mutex> lock(cache_mutex);
  DeviceCache& c = cache_for_current_device();
  const bool same = c.host.size() == segs.size() &&
                    std::memcmp(c.host.data(), segs.data(), segs.size() * sizeof(DevSegment)) == 0;
  if (!same) {
    if (segs.size() > c.capacity) {
      cuda_check(cudaFree(c.segments), "free segment table");
      cuda_check(
          cudaMalloc(reinterpret_cast<void**>(&c.segments), segs.size() * sizeof(DevSegment)),
          "malloc segment table");
      c.capacity = segs.size();
    }
    // Ordered on the stream before the launch; synchronous for the host (pageable source), but
    // only when the layout changes.
    cuda_check(cudaMemcpyAsync(c.segments, segs.data(), segs.size() * sizeof(DevSegment),
                               cudaMemcpyHostToDevice, st),
               "copy segment table");
    cuda_check(cudaStreamSynchronize(st), "segment table upload");
    c.host = segs;
  }
  const AdamWStep s = make_adamw_step(a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.step);
  const int n = int(segs.size());
  const dim3 grid{unsigned(chunks)};
  auto* kernel = a.grad_bf16
                     ? (a.param_bf16 ? adamw_kernel<true, true> : adamw_kernel<true, false>)
                     : (a.param_bf16 ? adamw_kernel<false, true> : adamw_kernel<false, false>);
  ASC_LAUNCH(grid, kThreads, st, kernel)
  (a.master, a.exp_avg, a.exp_avg_sq, a.grad_f32, a.grad_bf16, a.param_bf16, c.segments, n, s,
   d_norm_sq, max_norm, a.grad_scale);
  cuda_check(cudaGetLastError(), "adamw_kernel launch");
}

}  // namespace asc::kernels
