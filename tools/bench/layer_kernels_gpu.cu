// layer_kernels_gpu.cu — each fused layer kernel (trainer/kernels/layer_cuda.cu) in bf16 at
// llama2-7b shapes (tokens x 4096 hidden, 11008 intermediate, 32 heads of 128, vocab 32000),
// timed with CUDA events (median of ITERS launches after warm-up), as GB/s of the bytes each must
// move, against a device-to-device copy measured in the same run. Prints one JSON object.
// Usage: bench_layer_kernels_gpu [TOKENS=4096] [ITERS=50]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench_cuda.cuh"
#include "kernels/layer_kernels.h"

namespace {
using bench::check;
using bench::fill_bf16;
void* alloc_bf16(int64_t n, uint32_t seed) {
  void* p = nullptr;
  check(cudaMalloc(&p, size_t(n) * 2 + 256), "malloc");
  fill_bf16<<<1024, 256>>>(static_cast<uint16_t*>(p), n, seed);
  return p;
}
float* alloc_f32(int64_t n) {
  float* p = nullptr;
  check(cudaMalloc(&p, size_t(n) * 4 + 256), "malloc");
  check(cudaMemset(p, 0, size_t(n) * 4), "memset");
  return p;
}
double median_ms(const std::function<void()>& f, int iters) {
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) f();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    check(cudaEventSynchronize(b), "kernel");
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  using namespace asc::kernels;
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 50;
  const int64_t D = 4096, I = 11008, H = 32, E = 128, V = 32000;
  const int64_t chunk = std::min<int64_t>(tokens, 1024);  // cross-entropy rows per chunk
  const int64_t big = std::max({tokens * I, chunk * V, tokens * D});
  void *x = alloc_bf16(big, 1), *y = alloc_bf16(big, 2), *z = alloc_bf16(big, 3),
       *dy = alloc_bf16(big, 4), *dz = alloc_bf16(big, 5), *w = alloc_bf16(D, 6),
       *cs = alloc_bf16(tokens * E, 7), *sn = alloc_bf16(tokens * E, 8);
  float *rstd = alloc_f32(tokens), *dw = alloc_f32(D),
        *ws = alloc_f32(rmsnorm_backward_workspace(D)), *loss = alloc_f32(chunk),
        *one = alloc_f32(1);
  const float one_host = 1.f;  // the cross-entropy's gradient scale, read on the device
  check(cudaMemcpy(one, &one_host, 4, cudaMemcpyHostToDevice), "copy");
  int64_t* targets = nullptr;
  check(cudaMalloc(&targets, size_t(chunk) * 8), "malloc");
  {
    std::vector<int64_t> t(static_cast<size_t>(chunk));
    for (int64_t i = 0; i < chunk; ++i) t[size_t(i)] = (i * 7919) % V;
    check(cudaMemcpy(targets, t.data(), t.size() * 8, cudaMemcpyHostToDevice), "targets");
  }
  check(cudaDeviceSynchronize(), "fill");

  struct Row {
    std::string name;
    double ms, bytes;
  };
  std::vector<Row> rows;
  auto run = [&](const std::string& name, double bytes, const std::function<void()>& f) {
    rows.push_back({name, median_ms(f, iters), bytes});
  };
  const double copy_bytes = 2.0 * double(tokens * I) * 2;  // read + write
  run("device copy", copy_bytes, [&] {
    check(cudaMemcpyAsync(y, x, size_t(tokens * I) * 2, cudaMemcpyDeviceToDevice), "copy");
  });
  // Bytes each kernel must move at least (bf16 activations, fp32 statistics).
  run("rmsnorm forward", 2.0 * tokens * D * 2 + tokens * 4.0,
      [&] { rmsnorm_forward_cuda(x, w, y, rstd, tokens, D, 1e-5f, 1, nullptr); });
  run("rmsnorm backward", 3.0 * tokens * D * 2 + tokens * 4.0,
      [&] { rmsnorm_backward_cuda(dy, x, w, rstd, z, dw, ws, tokens, D, 1, nullptr); });
  run("swiglu forward", 3.0 * tokens * I * 2,
      [&] { swiglu_forward_cuda(x, y, z, tokens * I, 1, nullptr); });
  run("swiglu backward", 5.0 * tokens * I * 2,
      [&] { swiglu_backward_cuda(dy, x, y, z, dz, tokens * I, 1, nullptr); });
  const int64_t B = 1, T = tokens;
  run("rotary forward (q)", 2.0 * tokens * H * E * 2 + 2.0 * tokens * E * 2,
      [&] { rotary_forward_cuda(x, cs, sn, y, B, T, H, E, 0, 1, nullptr); });
  run("rotary backward (q)", 2.0 * tokens * H * E * 2 + 2.0 * tokens * E * 2,
      [&] { rotary_backward_cuda(dy, cs, sn, z, B, T, H, E, 0, 1, nullptr); });
  run("cross-entropy chunk (loss + grad in place)", 2.0 * chunk * V * 2 + chunk * 12.0,
      [&] { cross_entropy_chunk_cuda(z, targets, loss, chunk, V, -100, one, 1, nullptr); });

  const double copy_gbps = rows[0].bytes / rows[0].ms / 1e6;
  std::printf("{\"tokens\": %lld, \"copy_GBps\": %.1f, \"kernels\": [", (long long)tokens,
              copy_gbps);
  for (size_t i = 1; i < rows.size(); ++i) {
    const double gbps = rows[i].bytes / rows[i].ms / 1e6;
    std::printf("%s{\"name\": \"%s\", \"ms\": %.4f, \"GBps\": %.1f, \"fraction_of_copy\": %.3f}",
                i > 1 ? ", " : "", rows[i].name.c_str(), rows[i].ms, gbps, gbps / copy_gbps);
  }
  std::printf("]}\n");
  return 0;
}
