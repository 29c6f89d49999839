// The optimizer's step (optim/flat_adamw.h), both implementations, on flat buffers built by hand:
// against libtorch's own torch::optim::AdamW, with clipping against clip_grad_norm_, and the one
// weight-decay rule.
#include <gtest/gtest.h>

#include <cstdio>

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "optim/flat_adamw.h"

using namespace asc;

namespace {

// Flat buffers holding `params` end to end (copies), one segment each, decay by name.
FlatBuffers flat_over(const std::vector<std::string>& names, const std::vector<at::Tensor>& ps) {
  FlatBuffers b;
  std::vector<at::Tensor> flat;
  int64_t at = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    flat.push_back(ps[i].detach().reshape({-1}).to(at::kFloat));
    b.segments.push_back({at, ps[i].numel(), gets_weight_decay(names[i])});
    b.segment_param.push_back(int64_t(i));
    at += ps[i].numel();
  }
  b.master = at::cat(flat);
  b.exp_avg = at::zeros_like(b.master);
  b.exp_avg_sq = at::zeros_like(b.master);
  b.grad = at::zeros_like(b.master);
  return b;
}

at::Tensor segment(const FlatBuffers& b, const at::Tensor& flat, size_t i, at::IntArrayRef shape) {
  return flat.narrow(0, b.segments[i].offset, b.segments[i].numel).view(shape);
}

class AdamWStep : public ::testing::TestWithParam<OptimizerKind> {};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Kinds, AdamWStep,
                         ::testing::Values(OptimizerKind::kFused, OptimizerKind::kReference),
                         [](const auto& info) { return std::string(name(info.param)); });

TEST_P(AdamWStep, MatchesTorchOptimAdamWOver100Steps) {
  torch::manual_seed(3);
  std::vector<at::Tensor> ref;
  std::vector<std::string> names;
  for (auto shape : {std::vector<int64_t>{7, 5}, {13}, {3, 4, 2}}) {
    ref.push_back(at::randn(shape).set_requires_grad(true));
    names.push_back("w" + std::to_string(names.size()));
  }
  FlatBuffers b = flat_over(names, ref);
  FlatAdamW opt({0.9, 0.95, 1e-8, 0.1}, GetParam());
  torch::optim::AdamW topt(
      ref, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int step = 0; step < 100; ++step) {
    const double lr = 1e-2 * (1.0 + 0.5 * std::sin(step));
    static_cast<torch::optim::AdamWOptions&>(topt.param_groups()[0].options()).lr(lr);
    for (size_t i = 0; i < ref.size(); ++i) {
      auto g = at::randn(ref[i].sizes());
      segment(b, b.grad, i, ref[i].sizes()).copy_(g);
      ref[i].mutable_grad() = g.clone();
    }
    opt.clip_and_step(b, lr, 0.0);  // no clipping
    topt.step();
  }
  EXPECT_EQ(opt.steps(), 100);
  // Both sides get the same gradients (no feedback), but the arithmetic differs by a few ulps
  // per step: our lerp/addcmul/addcdiv sequence (reference) or fused loop against torch's, and
  // ATen's vector kernels use fused multiply-adds on some paths and not others, so the AVX2 and
  // AVX-512 paths round differently. Measured 2026-12-03 on an AVX-512 Xeon with ATen on its
  // AVX-512, AVX2 and unvectorised paths (reference): relative difference of a whole tensor
  // <= 7.6e-8, worst element 7e-7, 1.1e-6 and 1.2e-6 (a bound of 1e-6 per element failed on the
  // AVX2 path). Bounds: 1e-6 per tensor, 1e-5 per element.
  for (size_t i = 0; i < ref.size(); ++i) {
    const at::Tensor ours = segment(b, b.master, i, ref[i].sizes());
    const double whole = ((ours - ref[i]).norm() / ref[i].norm()).item<double>();
    const double worst =
        ((ours - ref[i]).abs() / ref[i].abs().clamp_min(1e-3)).max().item<double>();
    std::fprintf(stderr, "%s %s: relative difference %.3g, worst element %.3g\n", name(GetParam()),
                 names[i].c_str(), whole, worst);
    EXPECT_LT(whole, 1e-6) << names[i];
    EXPECT_LT(worst, 1e-5) << names[i];
  }
}

TEST(AdamW, OneWeightDecayRuleForEveryOptimizer) {
  for (const char* name :
       {"model.layers.0.input_layernorm.weight", "model.layers.3.post_attention_layernorm.weight",
        "model.norm.weight", "model.layers.0.self_attn.q_proj.bias"})
    EXPECT_FALSE(gets_weight_decay(name)) << name;
  for (const char* name :
       {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight"})
    EXPECT_TRUE(gets_weight_decay(name)) << name;
}

TEST_P(AdamWStep, NormsGetNoWeightDecay) {
  FlatBuffers b = flat_over({"model.norm.weight", "model.layers.0.mlp.up_proj.weight"},
                            {at::ones({4}), at::ones({4})});
  FlatAdamW opt({0.9, 0.999, 1e-8, 0.5}, GetParam());
  opt.clip_and_step(b, 0.1, 1.0);                                       // zero gradients
  EXPECT_TRUE(at::equal(segment(b, b.master, 0, {4}), at::ones({4})));  // no decay: unchanged
  EXPECT_NEAR(b.master[4].item<double>(), 1.0 - 0.1 * 0.5, 1e-7);       // decayed
}

// The returned norm is clip_grad_norm_'s, and the update is AdamW's on the clipped gradients.
TEST_P(AdamWStep, ClipsAsClipGradNorm) {
  torch::manual_seed(5);
  std::vector<at::Tensor> ref = {at::randn({10, 3}).set_requires_grad(true),
                                 at::randn({4}).set_requires_grad(true)};
  FlatBuffers b = flat_over({"a", "b"}, ref);
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i].mutable_grad() = at::randn(ref[i].sizes()) * 3;
    segment(b, b.grad, i, ref[i].sizes()).copy_(ref[i].grad());
  }
  FlatAdamW opt({}, GetParam());
  const double norm = opt.clip_and_step(b, 1e-2, 1.0);
  const double torch_norm = torch::nn::utils::clip_grad_norm_(ref, 1.0);
  EXPECT_NEAR(norm, torch_norm, 1e-5 * torch_norm);
  ASSERT_GT(norm, 2.0) << "clipping is active";
  // Adam's first update hardly depends on the gradient's scale: the first moment shows the
  // gradient the step used, (1 - beta1) times the clipped one.
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_TRUE(
        at::allclose(segment(b, b.exp_avg, i, ref[i].sizes()), ref[i].grad() * 0.1, 1e-5, 1e-8))
        << i;
  torch::optim::AdamW topt(ref, torch::optim::AdamWOptions(1e-2).weight_decay(0));
  topt.step();
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_TRUE(at::allclose(segment(b, b.master, i, ref[i].sizes()), ref[i], 1e-6, 1e-7)) << i;
  EXPECT_EQ(clip_factor(0.5, 1.0), 1.0);
  EXPECT_EQ(clip_factor(10.0, 0.0), 1.0);
}

// A gradient that is not finite changes nothing: buffers and step count.
TEST_P(AdamWStep, SkipsANonFiniteGradient) {
  FlatBuffers b = flat_over({"a"}, {at::ones({8})});
  b.grad.fill_(0.5);
  b.grad[3] = std::nan("");
  FlatAdamW opt({}, GetParam());
  const at::Tensor before = b.master.clone();
  EXPECT_FALSE(std::isfinite(opt.clip_and_step(b, 1e-2, 1.0)));
  EXPECT_EQ(opt.steps(), 0);
  EXPECT_TRUE(at::equal(b.master, before));
  EXPECT_TRUE(at::equal(b.exp_avg, at::zeros_like(before)));
}
