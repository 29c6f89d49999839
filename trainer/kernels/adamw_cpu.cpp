#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "common/error.h"
#include "kernels/adamw_update.h"
#include "kernels/fused_adamw.h"

namespace asc::kernels {
namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per task: big enough to amortise, ~128 KiB/array

AdamWStep step_constants(const FusedAdamWArgs& a) {
  return make_adamw_step(a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.step);
}

void check(const FusedAdamWArgs& a) {
  ASC_CHECK(a.master && a.exp_avg && a.exp_avg_sq, "fused AdamW: null state buffer");
  ASC_CHECK((a.grad_f32 != nullptr) != (a.grad_bf16 != nullptr),
            "fused AdamW: give exactly one of grad_f32 / grad_bf16");
  int64_t at = 0;
  for (const auto& s : a.segments) {
    ASC_CHECK(s.offset == at && s.numel >= 0,
              "fused AdamW: segments must cover [0, numel) in order");
    at += s.numel;
  }
  ASC_CHECK(at == a.numel, "fused AdamW: segments cover {} of {} elements", at, a.numel);
}

template <bool kBf16Grad, bool kWriteBf16>
inline __attribute__((always_inline)) void update_loop(const FusedAdamWArgs& a, const AdamWStep& s,
                                                       bool decay, int64_t b, int64_t e) {
  float* __restrict w = a.master;
  float* __restrict m = a.exp_avg;
  float* __restrict v = a.exp_avg_sq;
  const float scale = a.grad_scale;
  for (int64_t i = b; i < e; ++i) {  // a straight loop the compiler vectorises
    const float g = (kBf16Grad ? bf16_to_float(a.grad_bf16[i]) : a.grad_f32[i]) * scale;
    adamw_element(w[i], m[i], v[i], g, s, decay);
    if (kWriteBf16) a.param_bf16[i] = float_to_bf16_rne(w[i]);
  }
}

// The loop compiled three times (x86-64 baseline, AVX2, AVX-512F), picked by cpu_isa(). The file
// is built with -ffp-contract=off: no fused multiply-add, every operation rounds on its own, so
// the three give the same bits (tested) and the CUDA kernel (built --fmad=false) matches them.
using UpdateFn = void (*)(const FusedAdamWArgs&, const AdamWStep&, bool, int64_t, int64_t);

#define ASC_UPDATE_FOR(ISA_ATTR, NAME)                                                            \
  template <bool kBf16Grad, bool kWriteBf16>                                                      \
  ISA_ATTR void NAME(const FusedAdamWArgs& a, const AdamWStep& s, bool d, int64_t b, int64_t e) { \
    update_loop<kBf16Grad, kWriteBf16>(a, s, d, b, e);                                            \
  }
ASC_UPDATE_FOR(, update_baseline)
ASC_UPDATE_FOR(__attribute__((target("avx2"))), update_avx2)
ASC_UPDATE_FOR(__attribute__((target("avx512f"))), update_avx512)
#undef ASC_UPDATE_FOR

// [isa][bf16 gradient][write the bf16 copy]
#define ASC_TABLE(NAME)                        \
  {                                            \
    {NAME<false, false>, NAME<false, true>}, { \
      NAME<true, false>, NAME<true, true>      \
    }                                          \
  }
const UpdateFn kUpdate[3][2][2] = {ASC_TABLE(update_baseline), ASC_TABLE(update_avx2),
                                   ASC_TABLE(update_avx512)};
#undef ASC_TABLE

bool cpu_has(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kBaseline:
      return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2");
    case CpuIsa::kAvx512:
      return __builtin_cpu_supports("avx512f");
  }
  return false;
}

// The one in use: ASCLEPIUS_CPU_ISA's if set, else the best the CPU has. Read once.
std::atomic<int>& isa_in_use() {
  static std::atomic<int> isa{[] {
    const char* v = std::getenv("ASCLEPIUS_CPU_ISA");
    return int(v && *v ? cpu_isa_from_name(v) : best_cpu_isa());
  }()};
  return isa;
}
}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kBaseline:
      return "baseline";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "?";
}

CpuIsa best_cpu_isa() {
  return cpu_has(CpuIsa::kAvx512) ? CpuIsa::kAvx512
         : cpu_has(CpuIsa::kAvx2) ? CpuIsa::kAvx2
                                  : CpuIsa::kBaseline;
}

std::vector<CpuIsa> available_cpu_isas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (cpu_has(isa)) out.push_back(isa);
  return out;
}

CpuIsa cpu_isa_from_name(const std::string& name) {
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (name == cpu_isa_name(isa)) {
      if (!cpu_has(isa))
        ASC_FAIL_HINT("unset ASCLEPIUS_CPU_ISA, or choose a set this CPU has",
                      "ASCLEPIUS_CPU_ISA={}: this CPU has no {}", name, name);
      return isa;
    }
  ASC_FAIL_HINT("use baseline, avx2 or avx512 (or unset it)",
                "ASCLEPIUS_CPU_ISA={}: not an instruction set of the fused CPU kernels", name);
}

CpuIsa cpu_isa() {
  return CpuIsa(isa_in_use().load());
}

void set_cpu_isa(CpuIsa isa) {
  ASC_CHECK(cpu_has(isa), "set_cpu_isa: this CPU has no {}", cpu_isa_name(isa));
  isa_in_use() = int(isa);
}

double grad_sq_norm_cpu(const FusedAdamWArgs& a) {
  check(a);
  return at::parallel_reduce(
      int64_t(0), a.numel, kGrain, 0.0,
      [&](int64_t b, int64_t e, double acc) {
        for (int64_t i = b; i < e; ++i) {
          const double g = a.grad_bf16 ? bf16_to_float(a.grad_bf16[i]) : a.grad_f32[i];
          acc += g * g;
        }
        return acc;
      },
      [](double x, double y) { return x + y; });
}

void fused_adamw_cpu(const FusedAdamWArgs& a) {
  check(a);
  const AdamWStep s = step_constants(a);
  const UpdateFn update = kUpdate[int(cpu_isa())][a.grad_bf16 != nullptr][a.param_bf16 != nullptr];
  for (const auto& seg : a.segments) {
    at::parallel_for(seg.offset, seg.offset + seg.numel, kGrain,
                     [&](int64_t b, int64_t e) { update(a, s, seg.decay, b, e); });
  }
}

}  // namespace asc::kernels
