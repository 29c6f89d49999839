// The trainer's optimizer (optim/flat_adamw.h) over the engine's buffers in one process, as
// train() runs parallel.mode none: the fused step against the reference step (libtorch ops per
// parameter) on a real model, same training trajectory in fp32 and bf16, with micro-batch
// accumulation, weight decay and clipping; parameters and gradients really live in the flat
// buffers; the checkpoint state moves between the two implementations (both directions) through
// the files; and, where a GPU is present, the CUDA path against the CPU path.
#include <gtest/gtest.h>

#include <map>

#include <ATen/ATen.h>

#include "checkpoint/hf_io.h"
#include "checkpoint/sharded.h"
#include "kernel_device.h"
#include "kernels/fused_adamw.h"
#include "model/llama.h"
#include "optim/flat_adamw.h"
#include "test_util.h"
#include "train.h"

using namespace asc;

namespace {

const AdamWOptions kOpt{0.9, 0.95, 1e-8, 0.1};

LlamaForCausalLM tiny_model(uint64_t seed, at::Device device = at::kCPU) {
  torch::manual_seed(seed);
  LlamaForCausalLM model(llama_preset("tiny"));
  model->init_weights();
  model->to(device);
  return model;
}

std::unique_ptr<test::LocalTrainer> make(const std::string& kind, LlamaForCausalLM& model,
                                         bool bf16) {
  return std::make_unique<test::LocalTrainer>(
      model, bf16, kOpt, kind == "fused" ? OptimizerKind::kFused : OptimizerKind::kReference);
}

// Two micro-batches of 2 sequences; labels with a masked prefix so the target counts differ.
GlobalBatch batch_for_step(int64_t step, int64_t vocab, at::Device device = at::kCPU) {
  at::manual_seed(1000 + step);
  GlobalBatch b;
  for (int k = 0; k < 2; ++k) {
    MicroBatch m;
    m.input_ids_BT = at::randint(0, vocab, {2, 12}, at::kLong).to(device);
    m.labels_BT = m.input_ids_BT.clone();
    m.labels_BT.index_put_({0, at::indexing::Slice(0, 3 + k)}, -100);
    b.push_back(std::move(m));
  }
  return b;
}

std::vector<double> run_steps(LlamaForCausalLM& model, test::LocalTrainer& opt, int64_t from,
                              int64_t to, at::Device device = at::kCPU) {
  std::vector<double> norms;
  for (int64_t s = from; s < to; ++s) {
    opt.accumulate(batch_for_step(s, model->config().vocab_size, device));
    norms.push_back(opt.clip_and_step(1e-3 * (1 + s % 3), 0.5));  // clipping is active
    opt.zero_grad();
  }
  return norms;
}

double max_rel_diff(const OptimizerState& a, const OptimizerState& b) {
  double worst = 0;
  for (NamedTensors OptimizerState::*part :
       {&OptimizerState::master, &OptimizerState::exp_avg, &OptimizerState::exp_avg_sq})
    for (size_t i = 0; i < (a.*part).size(); ++i) {
      at::Tensor x = (a.*part)[i].second.cpu().to(at::kDouble);
      at::Tensor y = (b.*part)[i].second.cpu().to(at::kDouble);
      worst = std::max(worst, ((x - y).norm() / (y.norm() + 1e-30)).item<double>());
    }
  return worst;
}

}  // namespace

TEST(FlatAdamW, ParametersAndGradientsLiveInTheFlatBuffers) {
  LlamaForCausalLM model = tiny_model(1);
  test::LocalTrainer opt(model, false, kOpt);
  const FlatBuffers& flat = opt.engine->owned();
  const auto* base = flat.master.data_ptr<float>();
  const auto* gbase = flat.grad.data_ptr<float>();
  const int64_t n = flat.numel();
  opt.accumulate(batch_for_step(0, model->config().vocab_size));
  int64_t covered = 0;
  for (auto& [name, p] : hf_named_tensors(model)) {
    const float* d = p.data_ptr<float>();
    const float* g = p.grad().data_ptr<float>();
    EXPECT_TRUE(d >= base && d + p.numel() <= base + n) << name;
    EXPECT_EQ(g - gbase, d - base) << name << ": gradient not at its parameter's offset";
    covered += p.numel();
  }
  EXPECT_EQ(covered, n);
  EXPECT_GT(flat.grad.abs().sum().item<double>(), 0.0);  // autograd wrote into the buffer
}

// Both optimizers are fed the same gradients each step: the global batch's gradient is computed
// once (on the fused optimizer's model, micro-batch by micro-batch through its engine) and
// copied into the reference's gradient buffer. No model feedback can then amplify rounding, so
// what differs is the arithmetic alone: the fused loop's m*b1 + (1-b1)*g against torch's lerp,
// the global norm summed in double against a norm of fp32 norms, the division order. Measured
// 2026-12-03 on an AVX-512 Xeon, natively and with ATen, oneDNN, MKL and the loop forced to AVX2:
// the state differs by 2e-7 after 10 steps and 3-4.5e-7 after 60, in fp32 and bf16 — flat, not
// growing (the moments forget old differences). The bound, 2e-6, leaves 4-5x; weight decay wrongly
// applied to the norm weights fails it at the first step (checked, fp32 and bf16).
class FlatVsReference : public ::testing::TestWithParam<bool> {};

TEST_P(FlatVsReference, SameUpdatesFromTheSameGradients) {
  const bool bf16 = GetParam();
  constexpr int64_t kSteps = 60;
  LlamaForCausalLM m1 = tiny_model(5), m2 = tiny_model(5);
  auto fused = make("fused", m1, bf16), ref = make("reference", m2, bf16);
  double worst = 0;
  for (int64_t s = 0; s < kSteps; ++s) {
    fused->accumulate(batch_for_step(s, m1->config().vocab_size));
    ref->engine->owned().grad.copy_(fused->engine->owned().grad);
    const double lr = 1e-3 * (1 + s % 3);
    const double n1 = fused->clip_and_step(lr, 0.5), n2 = ref->clip_and_step(lr, 0.5);
    ASSERT_NEAR(n1, n2, 1e-6 * n2) << "gradient norm, step " << s;
    ASSERT_GT(n2, 0.5) << "clipping is active";
    fused->zero_grad(), ref->zero_grad();
    const double d = max_rel_diff(fused->state(), ref->state());
    worst = std::max(worst, d);
    ASSERT_LT(d, 2e-6) << "step " << s;
  }
  std::fprintf(stderr, "%s: max relative state difference over %lld steps %.3g\n",
               bf16 ? "bf16" : "fp32", (long long)kSteps, worst);
  EXPECT_EQ(fused->opt.steps(), kSteps);
  EXPECT_EQ(ref->opt.steps(), kSteps);
  // The model's compute copy is the master rounded to the compute dtype.
  const OptimizerState st = fused->state();
  auto params = hf_named_tensors(m1);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].second.scalar_type(), bf16 ? at::kBFloat16 : at::kFloat);
    EXPECT_TRUE(at::equal(params[i].second, st.master[i].second.to(params[i].second.scalar_type())))
        << params[i].first;
  }
}
INSTANTIATE_TEST_SUITE_P(Dtypes, FlatVsReference, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "bf16" : "fp32"; });

// The one end-to-end check: each optimizer trains its own model (gradients from its own
// weights), fp32. Rounding differences are then fed back and grow chaotically, at a rate that
// depends on the CPU's arithmetic (AVX2 and AVX-512 round some reductions differently). So the
// bound is measured in the same run: a twin of the reference run whose initial weights differ by
// one ulp (relative 2^-23) shows how fast a rounding-sized difference grows on this CPU; the
// fused run may differ from the reference by at most kGrowth times that, plus a floor of a few
// ulps. Measured 2026-12-03 after 20 steps: fused vs reference 2.6e-6 against the twin's 8.1e-5
// (AVX-512 Xeon), 1.7e-5 against 6.3e-5 with ATen, oneDNN, MKL and the loop forced to AVX2, i.e.
// 0.03-0.3x the twin; weight decay wrongly applied to the norm weights is 70-700x the twin.
TEST(FlatVsReferenceEndToEnd, TrajectoryWithinTheGrowthOfARoundingDifference) {
  constexpr int64_t kSteps = 20;
  constexpr double kGrowth = 30, kFloor = 1e-6;
  LlamaForCausalLM m1 = tiny_model(5), m2 = tiny_model(5), twin = tiny_model(5);
  {
    torch::NoGradGuard no_grad;
    for (auto& [n, p] : hf_named_tensors(twin)) p.mul_(1.0 + std::ldexp(1.0, -23));
  }
  auto fused = make("fused", m1, false), ref = make("reference", m2, false),
       ref_twin = make("reference", twin, false);
  for (int64_t s = 0; s < kSteps; ++s) {
    run_steps(m1, *fused, s, s + 1);
    run_steps(m2, *ref, s, s + 1);
    run_steps(twin, *ref_twin, s, s + 1);
    const double d = max_rel_diff(fused->state(), ref->state());
    const double growth = max_rel_diff(ref_twin->state(), ref->state());
    EXPECT_LT(d, kGrowth * growth + kFloor)
        << "step " << s << ": fused vs reference " << d << ", a one-ulp twin " << growth;
    if (s + 1 == kSteps)
      std::fprintf(stderr, "after %lld steps: fused vs reference %.3g, one-ulp twin %.3g\n",
                   (long long)kSteps, d, growth);
  }
}

// Save after 6 steps with one implementation, load into the other through the checkpoint files,
// continue 6 steps: equal (fp32 rounding) to 12 uninterrupted steps. Both directions, through
// the sharded checkpoint (format 2) and the earlier one-file layout (format 1, still read).
TEST(FlatAdamW, CheckpointStateMovesBetweenImplementations) {
  for (int format : {2, 1})
    for (const auto& [first, second] : {std::pair{"fused", "reference"}, {"reference", "fused"}}) {
      LlamaForCausalLM whole = tiny_model(9);
      auto straight = make(first, whole, false);
      run_steps(whole, *straight, 0, 12);

      LlamaForCausalLM a = tiny_model(9);
      auto opt_a = make(first, a, false);
      run_steps(a, *opt_a, 0, 6);
      const std::string run =
          test::temp_dir(std::string("opt_state_") + first + std::to_string(format));
      if (format == 1) {
        save_step_checkpoint(run, 6, a->config(), opt_a->state(), "{}\n");
      } else {
        ShardedSave sv;
        sv.run_dir = run, sv.step = 6, sv.optimizer_step = opt_a->opt.steps();
        sv.config = a->config();
        sv.state_json = "{}\n";
        save_sharded_checkpoint(sv, opt_a->saved.state_slices(hf_named_tensors(a)), nullptr);
      }

      LlamaForCausalLM b = tiny_model(123);  // different weights: all must come from the files
      auto opt_b = make(second, b, false);
      CheckpointReader reader(resolve_model_dir(run));
      EXPECT_EQ(reader.format(), format);
      EXPECT_EQ(reader.optimizer_step(), 6);
      opt_b->saved.load_state_from(reader, hf_named_tensors(b));
      EXPECT_LT(max_rel_diff(opt_b->state(), opt_a->state()), 1e-12) << "load is exact";
      run_steps(b, *opt_b, 6, 12);
      EXPECT_EQ(opt_b->opt.steps(), 12);
      const double d = max_rel_diff(opt_b->state(), straight->state());
      std::fprintf(stderr, "%s -> %s: max relative difference %.3g\n", first, second, d);
      EXPECT_LT(d, 1e-5) << first << " -> " << second;
    }
}

// A checkpoint of another architecture is refused naming the first tensor that does not fit.
TEST(FlatAdamW, LoadStateRejectsAMismatchedModel) {
  LlamaForCausalLM a = tiny_model(1);
  test::LocalTrainer opt_a(a, false, kOpt);
  const std::string run = test::temp_dir("opt_state_mismatch");
  ShardedSave sv;
  sv.run_dir = run, sv.step = 1, sv.optimizer_step = 1, sv.config = a->config();
  sv.state_json = "{}\n";
  save_sharded_checkpoint(sv, opt_a.saved.state_slices(hf_named_tensors(a)), nullptr);
  torch::manual_seed(2);
  LlamaForCausalLM b(llama_preset("tiny-gqa"));  // fewer key/value heads: k_proj is smaller
  b->init_weights();
  test::LocalTrainer opt_b(b, false, kOpt);
  CheckpointReader reader(resolve_model_dir(run));
  try {
    opt_b.saved.load_state_from(reader, hf_named_tensors(b));
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.k_proj.weight"),
              std::string::npos)
        << e.what();
  }
}

// The CUDA path (norm, clip and update on the device, the fused layer kernels) against the CPU
// path on the same model, 5 steps. fp32: equal within fp32 rounding. bf16: runs part by bf16
// rounding, which 5 Adam steps amplify to about 2% (measured in the emulated build: CPU bf16 vs
// CPU fp32 1.9%, device bf16 vs either 1.9-2.2%), so the device's bf16 run must be within twice
// the CPU bf16 run's own error of both CPU runs (and 5% at most).
TEST(FlatAdamW, CudaTrainingStepsMatchCpu) {
  ASC_SKIP_WITHOUT_KERNEL_DEVICE();
  const at::Device dev = test::kernel_device();
  std::map<bool, std::vector<double>> norms;
  std::map<bool, OptimizerState> reference;
  for (bool bf16 : {false, true}) {
    test::ReferencePath cpu_path;
    LlamaForCausalLM cpu = tiny_model(21);
    test::LocalTrainer oc(cpu, bf16, kOpt);
    norms[bf16] = run_steps(cpu, oc, 0, 5);
    reference[bf16] = oc.state();
  }
  const double bf16_error = max_rel_diff(reference[true], reference[false]);
  for (bool bf16 : {false, true}) {
    LlamaForCausalLM gpu = tiny_model(21, dev);
    test::LocalTrainer og(gpu, bf16, kOpt);
    const auto ng = run_steps(gpu, og, 0, 5, dev);
    const auto& nc = norms[bf16];
    for (size_t i = 0; i < nc.size(); ++i) EXPECT_NEAR(ng[i], nc[i], (bf16 ? 2e-2 : 1e-4) * nc[i]);
    const double d = max_rel_diff(og.state(), reference[bf16]);
    const double d32 = max_rel_diff(og.state(), reference[false]);
    std::fprintf(stderr,
                 "device vs CPU (%s) after 5 steps: max relative difference %.3g; device vs CPU "
                 "fp32 %.3g; CPU bf16 vs CPU fp32 %.3g\n",
                 bf16 ? "bf16" : "fp32", d, d32, bf16_error);
    // Capped at 5%: the emulated training test's wrong-learning-rate mutant is off by 14-78%.
    const double bound = bf16 ? std::min(2 * bf16_error, 0.05) : 1e-4;
    EXPECT_LT(d, bound);
    EXPECT_LT(d32, bound);
  }
}
