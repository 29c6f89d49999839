// Fused AdamW (one pass over flat fp32 buffers) against libtorch's own torch::optim::AdamW over
// 100 steps, with a weight-decay mask, global-norm clipping and the bf16 compute copy; the CPU
// tests run once per instruction set the loop is compiled for (baseline, AVX2, AVX-512F; those
// the CPU lacks are skipped, named), and the sets give the same bits; the CUDA kernel against
// the CPU loop where a GPU is present (skipped cleanly elsewhere).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "kernel_device.h"
#include "kernels/fused_adamw.h"

using namespace asc::kernels;

namespace {
struct Flat {
  at::Tensor master, m, v, grad, bf16;
  std::vector<FlatSegment> segments;
};
// Three "parameters" laid end to end; the middle one (a norm) gets no weight decay.
Flat make_flat(const std::vector<at::Tensor>& params) {
  Flat f;
  std::vector<at::Tensor> flat;
  int64_t off = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    f.segments.push_back({off, params[i].numel(), i != 1});
    off += params[i].numel();
    flat.push_back(params[i].reshape({-1}));
  }
  f.master = at::cat(flat).contiguous();
  f.m = at::zeros_like(f.master);
  f.v = at::zeros_like(f.master);
  f.grad = at::zeros_like(f.master);
  f.bf16 = at::empty(f.master.sizes(), at::kBFloat16);
  return f;
}
FusedAdamWArgs args_of(Flat& f, int64_t step, double lr, float scale) {
  FusedAdamWArgs a;
  a.master = f.master.data_ptr<float>(), a.exp_avg = f.m.data_ptr<float>();
  a.exp_avg_sq = f.v.data_ptr<float>(), a.grad_f32 = f.grad.data_ptr<float>();
  a.param_bf16 = reinterpret_cast<uint16_t*>(f.bf16.data_ptr<at::BFloat16>());
  a.numel = f.master.numel(), a.segments = f.segments;
  a.lr = lr, a.beta1 = 0.9, a.beta2 = 0.95, a.eps = 1e-8, a.weight_decay = 0.1;
  a.step = step, a.grad_scale = scale;
  return a;
}
// Runs the CPU loop with one instruction set for the test's duration.
class PerIsa : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    const auto have = available_cpu_isas();
    if (std::find(have.begin(), have.end(), GetParam()) == have.end())
      GTEST_SKIP() << "this CPU has no " << cpu_isa_name(GetParam());
    saved_ = cpu_isa();
    set_cpu_isa(GetParam());
  }
  void TearDown() override { set_cpu_isa(saved_); }
  CpuIsa saved_ = CpuIsa::kBaseline;
};
std::string isa_test_name(const ::testing::TestParamInfo<CpuIsa>& info) {
  return cpu_isa_name(info.param);
}
}  // namespace

class FusedAdamWCpu : public PerIsa {};
INSTANTIATE_TEST_SUITE_P(Isa, FusedAdamWCpu,
                         ::testing::Values(CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512),
                         isa_test_name);

TEST_P(FusedAdamWCpu, MatchesTorchOptimAdamWWithMaskClippingAndBf16Copy) {
  torch::manual_seed(1);
  std::vector<at::Tensor> init = {at::randn({37, 11}), at::randn({64}), at::randn({5, 7, 3})};
  Flat f = make_flat(init);
  std::vector<at::Tensor> ref;
  for (auto& t : init) ref.push_back(t.clone().set_requires_grad(true));
  auto opts = torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
  auto no_decay = torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<at::Tensor>{ref[0], ref[2]},
                      std::make_unique<torch::optim::AdamWOptions>(opts));
  groups.emplace_back(std::vector<at::Tensor>{ref[1]},
                      std::make_unique<torch::optim::AdamWOptions>(no_decay));
  torch::optim::AdamW torch_opt(groups, opts);
  for (int step = 1; step <= 100; ++step) {
    const double lr = 1e-2 * (1.0 + 0.5 * std::sin(step));
    for (auto& g : torch_opt.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    std::vector<at::Tensor> grads;
    for (auto& t : init) grads.push_back(at::randn(t.sizes()) * (step % 7 == 0 ? 10.0 : 0.3));
    for (size_t i = 0; i < ref.size(); ++i) ref[i].mutable_grad() = grads[i].clone();
    std::vector<at::Tensor> flat_g;
    for (auto& g : grads) flat_g.push_back(g.reshape({-1}));
    f.grad.copy_(at::cat(flat_g));
    // Clipping: the same factor on both sides (torch's clip_grad_norm_ semantics, max norm 1).
    FusedAdamWArgs a = args_of(f, step, lr, 1.f);
    const double norm = std::sqrt(grad_sq_norm_cpu(a));
    const double torch_norm = torch::nn::utils::clip_grad_norm_(ref, 1.0);
    ASSERT_NEAR(norm, torch_norm, 1e-4 * torch_norm);
    // torch scaled its grads in place by max_norm / (norm + 1e-6), clamped to 1, in float.
    a.grad_scale = std::min(1.f, 1.f / (float(torch_norm) + 1e-6f));
    fused_adamw_cpu(a);
    torch_opt.step();
  }
  int64_t off = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    auto ours = f.master.slice(0, off, off + ref[i].numel()).view(ref[i].sizes());
    // Relative error of the whole tensor (||ours - torch|| / ||torch||). ATen's vectorised
    // add/addcmul use fused multiply-adds on CPUs that have them; our loop rounds each operation
    // (so the CUDA kernel can match it bit for bit), which leaves a few ulps per element.
    const double rel = ((ours - ref[i]).norm() / ref[i].norm()).item<double>();
    EXPECT_LT(rel, 1e-6) << "parameter " << i;
    const double worst =
        ((ours - ref[i]).abs() / ref[i].abs().clamp_min(1e-3)).max().item<double>();
    EXPECT_LT(worst, 2e-5) << "parameter " << i << ": worst element";
    off += ref[i].numel();
  }
  // The bf16 copy written in the pass is the master rounded to nearest even.
  EXPECT_TRUE(at::equal(f.bf16, f.master.to(at::kBFloat16)));
}

TEST_P(FusedAdamWCpu, Bf16GradientsEqualTheirFp32Values) {
  torch::manual_seed(2);
  Flat a = make_flat({at::randn({1000}), at::randn({33})}),
       b = make_flat({a.master.slice(0, 0, 1000).clone(), a.master.slice(0, 1000).clone()});
  auto g = at::randn({1033}).to(at::kBFloat16);
  a.grad.copy_(g.to(at::kFloat));
  FusedAdamWArgs fa = args_of(a, 3, 1e-3f, 0.5f);
  FusedAdamWArgs fb = args_of(b, 3, 1e-3f, 0.5f);
  fb.grad_f32 = nullptr;
  fb.grad_bf16 = reinterpret_cast<const uint16_t*>(g.data_ptr<at::BFloat16>());
  fused_adamw_cpu(fa);
  fused_adamw_cpu(fb);
  EXPECT_TRUE(at::equal(a.master, b.master));
  EXPECT_TRUE(at::equal(a.m, b.m));
  EXPECT_TRUE(at::equal(a.v, b.v));
}

// Every instruction set gives the baseline's bits, on every path (fp32 or bf16 gradients, with
// or without the bf16 copy), over odd lengths (vector bodies and scalar tails) and 30 steps.
TEST_P(FusedAdamWCpu, SameBitsAsTheBaselineLoop) {
  if (GetParam() == CpuIsa::kBaseline) GTEST_SKIP() << "the baseline is the reference here";
  torch::manual_seed(6);
  const std::vector<at::Tensor> init = {at::randn({1031}), at::randn({17}), at::randn({4099})};
  for (bool bf16_grad : {false, true})
    for (bool bf16_copy : {false, true}) {
      Flat ours = make_flat(init), base = make_flat(init);
      for (int step = 1; step <= 30; ++step) {
        const at::Tensor g = at::randn({ours.master.numel()}) * (step % 5 == 0 ? 20.0 : 0.5);
        const at::Tensor g16 = g.to(at::kBFloat16);
        ours.grad.copy_(g), base.grad.copy_(g);
        FusedAdamWArgs a = args_of(ours, step, 3e-3, 0.7f), b = args_of(base, step, 3e-3, 0.7f);
        if (bf16_grad) {
          a.grad_f32 = b.grad_f32 = nullptr;
          a.grad_bf16 = b.grad_bf16 =
              reinterpret_cast<const uint16_t*>(g16.data_ptr<at::BFloat16>());
        }
        if (!bf16_copy) a.param_bf16 = b.param_bf16 = nullptr;
        fused_adamw_cpu(a);
        set_cpu_isa(CpuIsa::kBaseline);
        fused_adamw_cpu(b);
        set_cpu_isa(GetParam());
      }
      const std::string path = std::string(bf16_grad ? "bf16" : "fp32") + " gradients, " +
                               (bf16_copy ? "with" : "without") + " the bf16 copy";
      EXPECT_TRUE(at::equal(ours.master, base.master)) << path;
      EXPECT_TRUE(at::equal(ours.m, base.m)) << path;
      EXPECT_TRUE(at::equal(ours.v, base.v)) << path;
      if (bf16_copy) {
        EXPECT_TRUE(at::equal(ours.bf16, base.bf16)) << path;
      }
    }
}

// ASCLEPIUS_CPU_ISA picks the set (the suite runs these tests again with avx2 forced); names
// are checked, and a set the CPU lacks is refused.
TEST(FusedAdamW, TheInstructionSetIsChosenByTheEnvironmentOrTheCpu) {
  if (const char* v = std::getenv("ASCLEPIUS_CPU_ISA"); v && *v) {
    EXPECT_STREQ(cpu_isa_name(cpu_isa()), v);
  } else {
    EXPECT_EQ(cpu_isa(), best_cpu_isa());
  }
  for (CpuIsa isa : available_cpu_isas()) EXPECT_EQ(cpu_isa_from_name(cpu_isa_name(isa)), isa);
  EXPECT_THROW(cpu_isa_from_name("avx512bw"), std::exception);
  EXPECT_THROW(cpu_isa_from_name(""), std::exception);
  const auto have = available_cpu_isas();
  ASSERT_EQ(have.front(), CpuIsa::kBaseline);
  if (have.size() < 3) {
    const CpuIsa missing = have.size() == 1 ? CpuIsa::kAvx2 : CpuIsa::kAvx512;
    EXPECT_THROW(set_cpu_isa(missing), std::exception);
    EXPECT_THROW(cpu_isa_from_name(cpu_isa_name(missing)), std::exception);
  }
}

TEST(FusedAdamW, CudaKernelEqualsCpuLoop) {
  ASC_SKIP_WITHOUT_KERNEL_DEVICE();
  torch::manual_seed(3);
  // Odd sizes: chunks that are not multiples of 4 exercise the scalar paths too.
  Flat cpu = make_flat({at::randn({4099}), at::randn({13}), at::randn({65536 + 3})});
  Flat dev;
  dev.master = asc::test::on_kernel_device(cpu.master), dev.m = asc::test::on_kernel_device(cpu.m),
  dev.v = asc::test::on_kernel_device(cpu.v);
  dev.grad = asc::test::on_kernel_device(cpu.grad),
  dev.bf16 = asc::test::on_kernel_device(cpu.bf16), dev.segments = cpu.segments;
  auto d_norm =
      at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(asc::test::kernel_device()));
  for (int step = 1; step <= 10; ++step) {
    cpu.grad.normal_();
    dev.grad.copy_(cpu.grad);
    FusedAdamWArgs c = args_of(cpu, step, 1e-3f, 1.f), d = args_of(dev, step, 1e-3f, 1.f);
    c.param_bf16 = nullptr, d.param_bf16 = nullptr;  // the float4 path
    grad_sq_norm_cuda(d, d_norm.data_ptr<float>(), nullptr);
    const float clip = std::min(1.f, 1.f / (std::sqrt(d_norm.item<float>()) + 1e-6f));
    c.grad_scale = clip;  // the device derives the same factor from its own norm
    fused_adamw_cpu(c);
    fused_adamw_cuda(d, d_norm.data_ptr<float>(), 1.f, nullptr);
  }
  EXPECT_TRUE(at::equal(cpu.master, dev.master.cpu()))
      << (cpu.master - dev.master.cpu()).abs().max();
  EXPECT_TRUE(at::equal(cpu.m, dev.m.cpu()));
  EXPECT_TRUE(at::equal(cpu.v, dev.v.cpu()));
  // And the bf16-copy path.
  FusedAdamWArgs c = args_of(cpu, 11, 1e-3f, 1.f), d = args_of(dev, 11, 1e-3f, 1.f);
  fused_adamw_cpu(c);
  fused_adamw_cuda(d, nullptr, 0.f, nullptr);
  EXPECT_TRUE(at::equal(cpu.bf16, dev.bf16.cpu()));
  EXPECT_TRUE(at::equal(cpu.master, dev.master.cpu()));
  // bf16 gradients (64-bit loads) with the bf16 copy, a grad_scale and no clipping.
  auto g16 = at::randn({cpu.master.numel()}).to(at::kBFloat16);
  auto g16_dev = asc::test::on_kernel_device(g16);
  c = args_of(cpu, 12, 2e-3f, 0.75f), d = args_of(dev, 12, 2e-3f, 0.75f);
  c.grad_f32 = d.grad_f32 = nullptr;
  c.grad_bf16 = reinterpret_cast<const uint16_t*>(g16.data_ptr<at::BFloat16>());
  d.grad_bf16 = reinterpret_cast<const uint16_t*>(g16_dev.data_ptr<at::BFloat16>());
  fused_adamw_cpu(c);
  fused_adamw_cuda(d, nullptr, 0.f, nullptr);
  EXPECT_TRUE(at::equal(cpu.master, dev.master.cpu()));
  EXPECT_TRUE(at::equal(cpu.bf16, dev.bf16.cpu()));
  EXPECT_TRUE(at::equal(cpu.v, dev.v.cpu()));
}

// A NaN in the gradient makes the device norm NaN, and the step then changes nothing (the trainer
// counts it as skipped), on the device as on the CPU.
TEST(FusedAdamW, CudaSkipsTheStepWhenTheNormIsNotFinite) {
  ASC_SKIP_WITHOUT_KERNEL_DEVICE();
  torch::manual_seed(5);
  Flat cpu = make_flat({at::randn({5000}), at::randn({7})});
  cpu.grad.normal_();
  cpu.grad[123] = std::nanf("");
  cpu.bf16.copy_(cpu.master);  // defined values, so equality is meaningful
  Flat dev;
  dev.master = asc::test::on_kernel_device(cpu.master), dev.m = asc::test::on_kernel_device(cpu.m),
  dev.v = asc::test::on_kernel_device(cpu.v);
  dev.grad = asc::test::on_kernel_device(cpu.grad),
  dev.bf16 = asc::test::on_kernel_device(cpu.bf16), dev.segments = cpu.segments;
  const at::Tensor w0 = dev.master.clone(), b0 = dev.bf16.clone();
  auto d_norm =
      at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(asc::test::kernel_device()));
  FusedAdamWArgs d = args_of(dev, 1, 1e-3f, 1.f);
  grad_sq_norm_cuda(d, d_norm.data_ptr<float>(), nullptr);
  fused_adamw_cuda(d, d_norm.data_ptr<float>(), 1.f, nullptr);
  EXPECT_TRUE(std::isnan(d_norm.item<float>()));
  EXPECT_TRUE(at::equal(dev.master, w0));
  EXPECT_TRUE(at::equal(dev.bf16, b0));
  EXPECT_EQ(dev.m.abs().sum().item<float>(), 0.f);
  EXPECT_EQ(dev.v.abs().sum().item<float>(), 0.f);
}

// The device norm: deterministic (fixed grid, fixed-order final sum, no atomics) and equal to the
// CPU's double-accumulated sum within fp32 summation error; same for bf16 gradients.
TEST(FusedAdamW, CudaGradNormIsDeterministicAndMatchesCpu) {
  ASC_SKIP_WITHOUT_KERNEL_DEVICE();
  torch::manual_seed(4);
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(3'000'017)}) {
    Flat cpu = make_flat({at::randn({n})});
    cpu.grad.normal_();
    auto g_dev = asc::test::on_kernel_device(cpu.grad);
    FusedAdamWArgs c = args_of(cpu, 1, 1e-3f, 1.f), d = c;
    d.grad_f32 = g_dev.data_ptr<float>();
    auto out =
        at::zeros({2}, at::TensorOptions().dtype(at::kFloat).device(asc::test::kernel_device()));
    grad_sq_norm_cuda(d, out.data_ptr<float>(), nullptr);
    grad_sq_norm_cuda(d, out.data_ptr<float>() + 1, nullptr);
    auto h = out.cpu();
    EXPECT_EQ(h[0].item<float>(), h[1].item<float>()) << "not deterministic at n=" << n;
    const double ref = grad_sq_norm_cpu(c);
    EXPECT_NEAR(h[0].item<double>(), ref, 1e-5 * ref) << "n=" << n;
    auto g16 = cpu.grad.to(at::kBFloat16), g16_dev = asc::test::on_kernel_device(g16);
    c.grad_f32 = nullptr, d.grad_f32 = nullptr;
    c.grad_bf16 = reinterpret_cast<const uint16_t*>(g16.data_ptr<at::BFloat16>());
    d.grad_bf16 = reinterpret_cast<const uint16_t*>(g16_dev.data_ptr<at::BFloat16>());
    grad_sq_norm_cuda(d, out.data_ptr<float>(), nullptr);
    const double ref16 = grad_sq_norm_cpu(c);
    EXPECT_NEAR(out.cpu()[0].item<double>(), ref16, 1e-5 * ref16) << "bf16, n=" << n;
  }
}
