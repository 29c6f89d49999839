// layer_cuda.cu — the fused layer kernels of layer_kernels.h. Arithmetic in fp32, rounded to the
// storage dtype where PyTorch rounds (RMSNorm's normalised value before the weight, SiLU before
// the product), so results match the libtorch reference within one bf16 rounding. exp and log are
// the accurate expf/logf, not the __expf/__logf intrinsics: these kernels are bound by memory, not
// arithmetic, and the fp32 results then match the reference to a few ulp.
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "common/foreign_error.h"
#include "kernels/cuda_compat.cuh"
#include "kernels/layer_kernels.h"

namespace asc::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kDwBlocks = 512;  // RMSNorm backward: fixed grid, so the dw reduction order is fixed

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    fail_library_call("CUDA", cuda_version_text().c_str(), what, cudaGetErrorString(e), kCudaHint,
                      __FILE__, __LINE__);
}

__device__ __forceinline__ float to_f(float v) {
  return v;
}
__device__ __forceinline__ float to_f(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <class T>
__device__ __forceinline__ float round_to(float v) {  // v as stored in T, back in fp32
  return to_f(from_f<T>(v));
}

// Sum over the block; every thread gets the result. blockDim.x a multiple of 32, <= 1024.
__device__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < int(blockDim.x >> 5) ? warp_sums[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float out = total;
  __syncthreads();  // the shared slots may be reused by the next call
  return out;
}

__device__ float block_max(float v) {
  __shared__ float warp_max[32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < int(blockDim.x >> 5) ? warp_max[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float out = total;
  __syncthreads();
  return out;
}

// --- packs: P consecutive elements moved as one aligned access (P = 16 / sizeof(T): 128 bits)
// when every pointer is 16-byte aligned and the row length a multiple of P; else P = 1.
template <class T, int P>
struct alignas(sizeof(T) * P) Pack {
  T v[P];
};
template <class T, int P>
__device__ __forceinline__ Pack<T, P> load(const T* p, int64_t i) {
  return reinterpret_cast<const Pack<T, P>*>(p)[i];
}
template <class T, int P>
__device__ __forceinline__ void store(T* p, int64_t i, const Pack<T, P>& v) {
  reinterpret_cast<Pack<T, P>*>(p)[i] = v;
}

// --- RMSNorm ------------------------------------------------------------------------------------
template <class T, int P>
__global__ void rmsnorm_fwd(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                            float* __restrict__ rstd_out, int64_t dim, float eps) {
  const int64_t row = blockIdx.x, packs = dim / P;
  const T* xr = x + row * dim;
  T* yr = y + row * dim;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
    const Pack<T, P> xv = load<T, P>(xr, j);
    for (int k = 0; k < P; ++k) {
      const float v = to_f(xv.v[k]);
      ss += v * v;
    }
  }
  const float rstd = rsqrtf(block_sum(ss) / float(dim) + eps);
  if (threadIdx.x == 0) rstd_out[row] = rstd;
  for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
    const Pack<T, P> xv = load<T, P>(xr, j), wv = load<T, P>(w, j);
    Pack<T, P> out;
    for (int k = 0; k < P; ++k)
      out.v[k] = from_f<T>(to_f(wv.v[k]) * round_to<T>(to_f(xv.v[k]) * rstd));
    store<T, P>(yr, j, out);
  }
}

// Each block takes rows blockIdx.x, blockIdx.x + gridDim.x, ... and leaves its dw partial sums
// in its slot of `partial` (summed by sum_partials in block order: a fixed reduction order).
// M > 0: the row fits the block (dim <= M x blockDim x P): each thread keeps its M packs of w,
// of the row's dy and x, and of the dw partial sums in registers, so a row is read once and the
// partial sums are written once at the end. M = 0: any dim; the partial sums stay in the slot.
// Both orders of summation are the same, so both give the same bits.
template <class T, int P, int M>
__global__ void rmsnorm_bwd(const T* __restrict__ dy, const T* __restrict__ x,
                            const T* __restrict__ w, const float* __restrict__ rstd,
                            T* __restrict__ dx, float* __restrict__ partial, int64_t rows,
                            int64_t dim) {
  const int64_t packs = dim / P;
  float* mine = partial + int64_t(blockIdx.x) * dim;  // this block's dw partial sums
  if constexpr (M == 0) {
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) mine[j] = 0.f;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
      const T* dyr = dy + row * dim;
      const T* xr = x + row * dim;
      const float r = rstd[row];
      float dot = 0.f;
      for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
        const Pack<T, P> gv = load<T, P>(dyr, j), wv = load<T, P>(w, j), xv = load<T, P>(xr, j);
        for (int k = 0; k < P; ++k) dot += to_f(gv.v[k]) * to_f(wv.v[k]) * to_f(xv.v[k]) * r;
      }
      const float mean = block_sum(dot) / float(dim);
      T* dxr = dx + row * dim;
      for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
        const Pack<T, P> gv = load<T, P>(dyr, j), wv = load<T, P>(w, j), xv = load<T, P>(xr, j);
        Pack<T, P> out;
        for (int k = 0; k < P; ++k) {
          const float n = to_f(xv.v[k]) * r, g = to_f(gv.v[k]);
          out.v[k] = from_f<T>(r * (g * to_f(wv.v[k]) - n * mean));
          mine[j * P + k] += g * round_to<T>(n);
        }
        store<T, P>(dxr, j, out);
      }
    }
  } else {
    Pack<T, P> wv[M], gv[M], xv[M];
    float acc[M][P];
    ASC_UNROLL
    for (int m = 0; m < M; ++m) {
      const int64_t j = threadIdx.x + int64_t(m) * blockDim.x;
      if (j < packs) wv[m] = load<T, P>(w, j);
      ASC_UNROLL
      for (int k = 0; k < P; ++k) acc[m][k] = 0.f;
    }
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
      const T* dyr = dy + row * dim;
      const T* xr = x + row * dim;
      const float r = rstd[row];
      float dot = 0.f;
      ASC_UNROLL
      for (int m = 0; m < M; ++m) {
        const int64_t j = threadIdx.x + int64_t(m) * blockDim.x;
        if (j < packs) {
          gv[m] = load<T, P>(dyr, j), xv[m] = load<T, P>(xr, j);
          ASC_UNROLL
          for (int k = 0; k < P; ++k)
            dot += to_f(gv[m].v[k]) * to_f(wv[m].v[k]) * to_f(xv[m].v[k]) * r;
        }
      }
      const float mean = block_sum(dot) / float(dim);
      T* dxr = dx + row * dim;
      ASC_UNROLL
      for (int m = 0; m < M; ++m) {
        const int64_t j = threadIdx.x + int64_t(m) * blockDim.x;
        if (j < packs) {
          Pack<T, P> out;
          ASC_UNROLL
          for (int k = 0; k < P; ++k) {
            const float n = to_f(xv[m].v[k]) * r, g = to_f(gv[m].v[k]);
            out.v[k] = from_f<T>(r * (g * to_f(wv[m].v[k]) - n * mean));
            acc[m][k] += g * round_to<T>(n);
          }
          store<T, P>(dxr, j, out);
        }
      }
    }
    ASC_UNROLL
    for (int m = 0; m < M; ++m) {
      const int64_t j = threadIdx.x + int64_t(m) * blockDim.x;
      if (j < packs)
        for (int k = 0; k < P; ++k) mine[j * P + k] = acc[m][k];
    }
  }
}

__global__ void sum_partials(const float* __restrict__ partial, float* __restrict__ out,
                             int64_t dim, int blocks) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= dim) return;
  float s = 0.f;
  for (int b = 0; b < blocks; ++b) s += partial[int64_t(b) * dim + j];
  out[j] = s;
}

// --- SwiGLU -------------------------------------------------------------------------------------
__device__ __forceinline__ float sigmoid(float g) {
  return 1.f / (1.f + expf(-g));
}

template <class T, int P>
__global__ void swiglu_fwd(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ y,
                           int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n / P;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Pack<T, P> gv = load<T, P>(gate, i), uv = load<T, P>(up, i);
    Pack<T, P> out;
    for (int k = 0; k < P; ++k) {
      const float g = to_f(gv.v[k]);
      out.v[k] = from_f<T>(round_to<T>(g * sigmoid(g)) * to_f(uv.v[k]));
    }
    store<T, P>(y, i, out);
  }
}

template <class T, int P>
__global__ void swiglu_bwd(const T* __restrict__ dy, const T* __restrict__ gate,
                           const T* __restrict__ up, T* __restrict__ d_gate, T* __restrict__ d_up,
                           int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n / P;
       i += int64_t(gridDim.x) * blockDim.x) {
    const Pack<T, P> gv = load<T, P>(gate, i), uv = load<T, P>(up, i), dv = load<T, P>(dy, i);
    Pack<T, P> dg, du;
    for (int k = 0; k < P; ++k) {
      const float g = to_f(gv.v[k]), u = to_f(uv.v[k]), d = to_f(dv.v[k]);
      const float s = sigmoid(g);
      du.v[k] = from_f<T>(d * round_to<T>(g * s));
      dg.v[k] = from_f<T>(d * u * s * (1.f + g * (1.f - s)));
    }
    store<T, P>(d_gate, i, dg);
    store<T, P>(d_up, i, du);
  }
}

// --- rotary -------------------------------------------------------------------------------------
// One thread per pair (i, i + E/2) of one (b, t, h) row. sign +1: forward; -1: backward.
template <class T>
__global__ void rotary(const T* __restrict__ x, const T* __restrict__ cos,
                       const T* __restrict__ sin, T* __restrict__ y, int64_t B, int64_t T_,
                       int64_t H, int64_t E, int64_t cs_stride, float sign) {
  const int64_t half = E / 2, pairs = B * T_ * H * half;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs;
       p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, row = p / half;  // row = (b * T + t) * H + h
    const int64_t t = (row / H) % T_, b = row / (H * T_);
    const T* c = cos + b * cs_stride + t * E;
    const T* s = sin + b * cs_stride + t * E;
    const float x1 = to_f(x[row * E + i]), x2 = to_f(x[row * E + i + half]);
    if (sign > 0) {  // y1 = x1 c1 - x2 s1; y2 = x2 c2 + x1 s2
      y[row * E + i] = from_f<T>(x1 * to_f(c[i]) - x2 * to_f(s[i]));
      y[row * E + i + half] = from_f<T>(x2 * to_f(c[i + half]) + x1 * to_f(s[i + half]));
    } else {  // dx1 = dy1 c1 + dy2 s2; dx2 = dy2 c2 - dy1 s1
      y[row * E + i] = from_f<T>(x1 * to_f(c[i]) + x2 * to_f(s[i + half]));
      y[row * E + i + half] = from_f<T>(x2 * to_f(c[i + half]) - x1 * to_f(s[i]));
    }
  }
}

// --- cross-entropy over a chunk of logits
// ---------------------------------------------------------
template <class T>
__global__ void cross_entropy(T* __restrict__ logits, const int64_t* __restrict__ targets,
                              float* __restrict__ loss, int64_t V, int64_t ignore_index,
                              const float* __restrict__ grad_scale) {
  const int64_t row = blockIdx.x;
  T* lr = logits + row * V;
  const int64_t target = targets[row];
  const bool ignored = target == ignore_index;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, to_f(lr[j]));
  m = block_max(m);
  float se = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) se += expf(to_f(lr[j]) - m);
  const float lse = m + logf(block_sum(se));
  if (threadIdx.x == 0) loss[row] = ignored ? 0.f : lse - to_f(lr[target]);
  __syncthreads();  // the target logit is read before it is overwritten
  if (!grad_scale) return;
  const float scale = *grad_scale;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float p = ignored ? 0.f : expf(to_f(lr[j]) - lse) - (j == target ? 1.f : 0.f);
    lr[j] = from_f<T>(scale * p);
  }
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return int(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
}

}  // namespace

bool layer_kernels_built() {
  return true;
}

#define ASC_DISPATCH(dtype, ...) \
  if ((dtype) == 1) {            \
    using T = __nv_bfloat16;     \
    __VA_ARGS__;                 \
  } else {                       \
    using T = float;             \
    __VA_ARGS__;                 \
  }

namespace {
// Whether every pointer is 16-byte aligned and `len` (a row, or the whole) a multiple of the
// 128-bit pack of elements of `elem_bytes`: then the kernels move packs, else single elements.
bool packable(int64_t len, int64_t elem_bytes, std::initializer_list<const void*> ptrs) {
  if (len % (16 / elem_bytes) != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}
}  // namespace

// ASC_PACKED(cond, kernel, ...): kernel<T, 16 / sizeof(T)> when cond, kernel<T, 1> otherwise.
#define ASC_PACKED(cond, grid, stream, kernel, ...)                                  \
  if (cond)                                                                          \
    ASC_LAUNCH(grid, kThreads, stream, kernel<T, int(16 / sizeof(T))>)(__VA_ARGS__); \
  else                                                                               \
    ASC_LAUNCH(grid, kThreads, stream, kernel<T, 1>)(__VA_ARGS__)

void rmsnorm_forward_cuda(const void* x, const void* w, void* y, float* rstd_out, int64_t rows,
                          int64_t dim, float eps, int dtype, void* stream) {
  if (rows == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ASC_DISPATCH(dtype, ASC_PACKED(packable(dim, sizeof(T), {x, w, y}), unsigned(rows), st,
                                 rmsnorm_fwd, static_cast<const T*>(x), static_cast<const T*>(w),
                                 static_cast<T*>(y), rstd_out, dim, eps));
  check(cudaGetLastError(), "rmsnorm forward");
}

namespace {
// rmsnorm_bwd with the fewest packs per thread (M) that hold a row, or M = 0 past 4.
template <class T, int P>
void rmsnorm_bwd_launch(const void* dy, const void* x, const void* w, const float* rstd, void* dx,
                        float* workspace, int64_t rows, int64_t dim, cudaStream_t st) {
  const int64_t per_thread = (dim / P + kThreads - 1) / kThreads;
  auto go = [&](auto kernel) {
    ASC_LAUNCH(kDwBlocks, kThreads, st, kernel)
    (static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), rstd,
     static_cast<T*>(dx), workspace, rows, dim);
  };
  if (per_thread <= 1)
    go(rmsnorm_bwd<T, P, 1>);
  else if (per_thread <= 2)
    go(rmsnorm_bwd<T, P, 2>);
  else if (per_thread <= 4)
    go(rmsnorm_bwd<T, P, 4>);
  else
    go(rmsnorm_bwd<T, P, 0>);
}
}  // namespace

int64_t rmsnorm_backward_workspace(int64_t dim) {
  return int64_t(kDwBlocks) * dim;
}

void rmsnorm_backward_cuda(const void* dy, const void* x, const void* w, const float* rstd,
                           void* dx, float* dw_f32, float* workspace, int64_t rows, int64_t dim,
                           int dtype, void* stream) {
  if (dim == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ASC_DISPATCH(dtype, if (packable(dim, sizeof(T), {dy, x, w, dx}))
                          rmsnorm_bwd_launch<T, int(16 / sizeof(T))>(dy, x, w, rstd, dx, workspace,
                                                                     rows, dim, st);
               else rmsnorm_bwd_launch<T, 1>(dy, x, w, rstd, dx, workspace, rows, dim, st));
  ASC_LAUNCH(unsigned((dim + kThreads - 1) / kThreads), kThreads, st, sum_partials)
  (workspace, dw_f32, dim, kDwBlocks);
  check(cudaGetLastError(), "rmsnorm backward");
}

void swiglu_forward_cuda(const void* gate, const void* up, void* y, int64_t n, int dtype,
                         void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  ASC_DISPATCH(dtype, const bool packed = packable(n, sizeof(T), {gate, up, y}); ASC_PACKED(
                   packed, grid_for(packed ? n / (16 / sizeof(T)) : n), st, swiglu_fwd,
                   static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(y), n));
  check(cudaGetLastError(), "swiglu forward");
}

void swiglu_backward_cuda(const void* dy, const void* gate, const void* up, void* d_gate,
                          void* d_up, int64_t n, int dtype, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  ASC_DISPATCH(
      dtype, const bool packed = packable(n, sizeof(T), {dy, gate, up, d_gate, d_up});
      ASC_PACKED(packed, grid_for(packed ? n / (16 / sizeof(T)) : n), st, swiglu_bwd,
                 static_cast<const T*>(dy), static_cast<const T*>(gate), static_cast<const T*>(up),
                 static_cast<T*>(d_gate), static_cast<T*>(d_up), n));
  check(cudaGetLastError(), "swiglu backward");
}

namespace {
void rotary_launch(const void* x, const void* cos, const void* sin, void* y, int64_t B, int64_t T_,
                   int64_t H, int64_t E, int64_t cs_stride, int dtype, void* stream, float sign) {
  auto st = static_cast<cudaStream_t>(stream);
  const int64_t pairs = B * T_ * H * (E / 2);
  ASC_DISPATCH(dtype,
               ASC_LAUNCH(grid_for(pairs), kThreads, st, rotary<T>)(
                   static_cast<const T*>(x), static_cast<const T*>(cos), static_cast<const T*>(sin),
                   static_cast<T*>(y), B, T_, H, E, cs_stride, sign));
  check(cudaGetLastError(), "rotary");
}
}  // namespace

void rotary_forward_cuda(const void* x, const void* cos, const void* sin, void* y, int64_t B,
                         int64_t T, int64_t H, int64_t E, int64_t cs_batch_stride, int dtype,
                         void* stream) {
  rotary_launch(x, cos, sin, y, B, T, H, E, cs_batch_stride, dtype, stream, 1.f);
}

void rotary_backward_cuda(const void* dy, const void* cos, const void* sin, void* dx, int64_t B,
                          int64_t T, int64_t H, int64_t E, int64_t cs_batch_stride, int dtype,
                          void* stream) {
  rotary_launch(dy, cos, sin, dx, B, T, H, E, cs_batch_stride, dtype, stream, -1.f);
}

void cross_entropy_chunk_cuda(void* logits, const int64_t* targets, float* loss_out, int64_t rows,
                              int64_t V, int64_t ignore_index, const float* grad_scale, int dtype,
                              void* stream) {
  if (rows == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  ASC_DISPATCH(dtype, ASC_LAUNCH(unsigned(rows), kThreads, st, cross_entropy<T>)(
                          static_cast<T*>(logits), targets, loss_out, V, ignore_index, grad_scale));
  check(cudaGetLastError(), "cross-entropy");
}

}  // namespace asc::kernels
