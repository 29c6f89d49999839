// fused_adamw_main.cpp — times our fused CPU AdamW step and a plain copy of the same number of
// bytes on this machine; prints one JSON line. Driven by tools/bench/fused_adamw.py, which times
// torch.optim.AdamW (foreach and fused) on the same shard in the same run.
// Usage: bench_fused_adamw NUMEL STEPS
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "kernels/fused_adamw.h"

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 100'000'000;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  auto w = at::randn({n}), m = at::zeros({n}), v = at::zeros({n}), g = at::randn({n});
  asc::kernels::FusedAdamWArgs a;
  a.master = w.data_ptr<float>(), a.exp_avg = m.data_ptr<float>(),
  a.exp_avg_sq = v.data_ptr<float>();
  a.grad_f32 = g.data_ptr<float>(), a.numel = n, a.segments = {{0, n, true}};
  a.lr = 1e-3, a.weight_decay = 0.01;
  auto now = [] { return std::chrono::steady_clock::now(); };
  double best = 1e30;
  for (int s = 0; s <= steps; ++s) {  // step 0 warms up
    a.step = s + 1;
    auto t0 = now();
    asc::kernels::fused_adamw_cpu(a);
    double dt = std::chrono::duration<double>(now() - t0).count();
    if (s > 0 && dt < best) best = dt;
  }
  // A copy moving the same bytes: the step reads 4 arrays and writes 3 (28 bytes per element);
  // copy_ of 3.5 n floats reads and writes 28 bytes per element too.
  auto src = at::randn({n * 7 / 2}), dst = at::empty({n * 7 / 2});
  double copy_best = 1e30;
  for (int s = 0; s <= steps; ++s) {
    auto t0 = now();
    dst.copy_(src);
    double dt = std::chrono::duration<double>(now() - t0).count();
    if (s > 0 && dt < copy_best) copy_best = dt;
  }
  // The same bytes read and written in place (x *= 1): no write-allocate reads of a destination,
  // like the step's own in-place arrays — the fairer ceiling on a CPU.
  double inplace_best = 1e30;
  for (int s = 0; s <= steps; ++s) {
    auto t0 = now();
    src.mul_(1.0f);
    double dt = std::chrono::duration<double>(now() - t0).count();
    if (s > 0 && dt < inplace_best) inplace_best = dt;
  }
  const double bytes = 28.0 * double(n);
  std::printf(
      "{\"numel\": %lld, \"threads\": %d, \"ours_step_s\": %.6f, \"ours_GBps\": %.3f, "
      "\"copy_s\": %.6f, \"copy_GBps\": %.3f, \"inplace_s\": %.6f, \"inplace_GBps\": %.3f}\n",
      (long long)n, at::get_num_threads(), best, bytes / best / 1e9, copy_best,
      bytes / copy_best / 1e9, inplace_best, bytes / inplace_best / 1e9);
  return 0;
}
