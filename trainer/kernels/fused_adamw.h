// fused_adamw.h — AdamW as one pass over flat fp32 buffers (master weights, moments, gradients),
// on the CPU (adamw_cpu.cpp: vectorisable loop split over threads) or in one CUDA launch
// (adamw_cuda.cu). A flat buffer is a run of segments (one per parameter) so weight decay can be
// masked per segment. The layout — master, exp_avg, exp_avg_sq as flat fp32 in segment order —
// is the same for both implementations, so a run may switch between them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asc::kernels {

struct FlatSegment {
  int64_t offset = 0, numel = 0;
  bool decay = true;
};

struct FusedAdamWArgs {
  float* master = nullptr;  // fp32 weights, updated in place
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  const float* grad_f32 = nullptr;  // exactly one of grad_f32 / grad_bf16
  const uint16_t* grad_bf16 = nullptr;
  uint16_t* param_bf16 = nullptr;  // optional: the bf16 compute copy, written in the same pass
  int64_t numel = 0;
  std::vector<FlatSegment> segments;  // cover [0, numel) in order
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;  // as torch: double
  int64_t step = 1;        // 1-based, after increment
  float grad_scale = 1.f;  // e.g. the clip factor (CPU path)
};

// The instruction set the CPU loop runs with. The loop is compiled for the x86-64 baseline, AVX2
// and AVX-512F and the three give the same bits (no FMA contraction); the best the CPU has is
// used, or ASCLEPIUS_CPU_ISA=baseline|avx2|avx512 (read once; a set the CPU lacks is an error),
// so one machine can run the others' paths (tests run each available one).
enum class CpuIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
const char* cpu_isa_name(CpuIsa isa);
CpuIsa best_cpu_isa();
std::vector<CpuIsa> available_cpu_isas();  // baseline first
CpuIsa cpu_isa();
// "baseline" | "avx2" | "avx512"; fails on another name or a set the CPU lacks.
CpuIsa cpu_isa_from_name(const std::string& name);
void set_cpu_isa(CpuIsa isa);  // for tests and benchmarks; fails if the CPU lacks it

// Sum of squares of the gradient (fp32 values, double accumulation), for the clip factor.
double grad_sq_norm_cpu(const FusedAdamWArgs& a);
void fused_adamw_cpu(const FusedAdamWArgs& a);

// CUDA (all pointers on the device; stream = cudaStream_t or null for the default stream).
// grad_sq_norm_cuda writes the sum of squares into *d_norm_sq (device float) without a host
// sync; fused_adamw_cuda reads it there and applies clip = min(1, max_norm / (sqrt(.) + 1e-6))
// (max_norm <= 0: no clipping) times a.grad_scale, in one launch over all segments; a norm that
// is not finite leaves every buffer unchanged (the step is skipped).
// Built only with CUDA (kernels/adamw_cuda.cu); otherwise these throw "built without CUDA".
bool cuda_kernels_built();
void grad_sq_norm_cuda(const FusedAdamWArgs& a, float* d_norm_sq, void* stream);
void fused_adamw_cuda(const FusedAdamWArgs& a, const float* d_norm_sq, float max_norm,
                      void* stream);

}  // namespace asc::kernels
