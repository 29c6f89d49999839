// fused_adamw_gpu.cu — times our fused AdamW CUDA step (trainer/kernels/adamw_cuda.cu) on one flat
// fp32 shard and a device-to-device copy of the same number of bytes, with CUDA events (median of
// ITERS launches after warm-up); prints one JSON line. Driven by tools/bench/fused_adamw_gpu.py,
// which times torch.optim.AdamW(fused=True) on the same shard in the same run.
// Usage: bench_fused_adamw_gpu NUMEL ITERS
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_cuda.cuh"
#include "kernels/fused_adamw.h"

namespace {
using bench::check;
using bench::fill;
__global__ void to_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = uint16_t(__float_as_uint(x[i]) >> 16);
}

template <class F>
double median_ms(int iters, F f) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event"), check(cudaEventCreate(&b), "event");
  for (int i = 0; i < 3; ++i) f();  // warm-up
  std::vector<float> t;
  for (int i = 0; i < iters; ++i) {
    check(cudaEventRecord(a), "record");
    f();
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(ms);
  }
  check(cudaGetLastError(), "launch");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 100'000'000;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 20;
  float *w, *m, *v, *g, *norm, *src, *dst;
  uint16_t *g16, *p16;
  const int64_t copy_floats = n * 7 / 2;  // 14 n bytes read + 14 n written = 28 n, as the step
  check(cudaMalloc(&w, n * 4), "malloc"), check(cudaMalloc(&m, n * 4), "malloc");
  check(cudaMalloc(&v, n * 4), "malloc"), check(cudaMalloc(&g, n * 4), "malloc");
  check(cudaMalloc(&g16, n * 2), "malloc"), check(cudaMalloc(&p16, n * 2), "malloc");
  check(cudaMalloc(&norm, 4), "malloc");
  check(cudaMalloc(&src, copy_floats * 4), "malloc"),
      check(cudaMalloc(&dst, copy_floats * 4), "malloc");
  fill<<<1024, 256>>>(w, n, 1), fill<<<1024, 256>>>(g, n, 2),
      fill<<<1024, 256>>>(src, copy_floats, 3);
  check(cudaMemset(m, 0, n * 4), "memset"), check(cudaMemset(v, 0, n * 4), "memset");
  to_bf16<<<1024, 256>>>(g, g16, n);
  check(cudaDeviceSynchronize(), "init");

  asc::kernels::FusedAdamWArgs a;
  a.master = w, a.exp_avg = m, a.exp_avg_sq = v, a.grad_f32 = g, a.numel = n;
  a.segments = {{0, n, true}};
  a.lr = 1e-3, a.weight_decay = 0.01;
  int64_t step = 0;
  auto run = [&](asc::kernels::FusedAdamWArgs x, bool clip) {
    x.step = ++step;
    if (clip) asc::kernels::grad_sq_norm_cuda(x, norm, nullptr);
    asc::kernels::fused_adamw_cuda(x, clip ? norm : nullptr, clip ? 1.f : 0.f, nullptr);
  };
  const double f32 = median_ms(iters, [&] { run(a, false); });
  auto a16 = a;
  a16.param_bf16 = p16;
  const double f32_bf16out = median_ms(iters, [&] { run(a16, false); });
  auto b16 = a16;
  b16.grad_f32 = nullptr, b16.grad_bf16 = g16;
  const double bf16_bf16out = median_ms(iters, [&] { run(b16, false); });
  const double f32_clip = median_ms(iters, [&] { run(a, true); });
  const double copy = median_ms(iters, [&] {
    check(cudaMemcpyAsync(dst, src, copy_floats * 4, cudaMemcpyDeviceToDevice), "copy");
  });
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  const double N = double(n);
  auto gbps = [&](double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; };
  std::printf(
      "{\"device\": \"%s\", \"numel\": %lld, \"iters\": %d, "
      "\"ours_ms\": %.4f, \"ours_GBps\": %.1f, "
      "\"ours_bf16out_ms\": %.4f, \"ours_bf16out_GBps\": %.1f, "
      "\"ours_bf16grad_bf16out_ms\": %.4f, \"ours_bf16grad_bf16out_GBps\": %.1f, "
      "\"ours_with_norm_clip_ms\": %.4f, \"ours_with_norm_clip_GBps\": %.1f, "
      "\"copy_ms\": %.4f, \"copy_GBps\": %.1f}\n",
      prop.name, (long long)n, iters, f32, gbps(28 * N, f32), f32_bf16out,
      gbps(30 * N, f32_bf16out), bf16_bf16out, gbps(26 * N, bf16_bf16out), f32_clip,
      gbps(32 * N, f32_clip), copy, gbps(28 * N, copy));
  return 0;
}
