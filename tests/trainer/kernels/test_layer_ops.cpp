// The layer operations of kernels/layer_ops.h:
//  - the chunked LM-head cross-entropy against the full-logits libtorch loss (loss and the
//    gradients of hidden states and head weight), any chunk size, ignored targets, fp32 and
//    bf16, and the model's loss_sum against causal_lm_loss_sum(forward);
//  - on a CUDA device with the CUDA kernels built: each fused kernel (RMSNorm, SwiGLU, rotary,
//    cross-entropy) against the libtorch reference, forward and gradients, over odd shapes, and a
//    few training steps on the GPU against the CPU. Skipped on machines without either;
//  - the small-M product of CPU decoding (kernels/decode_kernels.h, kernels/decode_cpu.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>

#include "kernel_device.h"
#include "common/error.h"
#include "kernels/decode_cpu.h"
#include "kernels/layer_ops.h"
#include "kernels/decode_kernels.h"
#include "config/recipe.h"
#include "model/llama.h"
#include "parallel/planner.h"

using namespace asc;

namespace {

double rel(const at::Tensor& a, const at::Tensor& b) {
  const auto x = a.detach().cpu().to(at::kDouble), y = b.detach().cpu().to(at::kDouble);
  return ((x - y).norm() / (y.norm() + 1e-30)).item<double>();
}

// The reference: full logits in the compute dtype, cross-entropy summed in fp32.
at::Tensor full_ce(const at::Tensor& h, const at::Tensor& w, const at::Tensor& t) {
  return torch::nn::functional::cross_entropy(
      at::mm(h, w.t()).to(at::kFloat), t,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum));
}

struct Grads {
  at::Tensor loss, dh, dw;
};
template <class F>
Grads run(F f, const at::Tensor& h0, const at::Tensor& w0, double scale) {
  auto h = h0.detach().clone().requires_grad_(true), w = w0.detach().clone().requires_grad_(true);
  at::Tensor loss = f(h, w);
  (loss * scale).backward();
  return {loss.detach(), h.grad(), w.grad()};
}

}  // namespace

TEST(LayerOps, ChunkedCrossEntropyEqualsTheFullLogitsLoss) {
  torch::manual_seed(3);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const int64_t N = 37, D = 24, V = 51;
    const auto h = at::randn({N, D}).to(dtype), w = (0.3 * at::randn({V, D})).to(dtype);
    auto t = at::randint(0, V, {N}, at::kLong);
    t.index_put_({at::arange(0, N, 4)}, -100);  // some positions have no target
    const Grads ref = run([&](auto& a, auto& b) { return full_ce(a, b, t); }, h, w, 0.7);
    for (int64_t chunk : {1, 5, 36, 37, 1000}) {
      const Grads got =
          run([&](auto& a, auto& b) { return ops::chunked_cross_entropy_sum(a, b, t, chunk); }, h,
              w, 0.7);
      const double tol = dtype == at::kFloat ? 1e-6 : 1e-2;  // bf16: chunked vs one GEMM rounding
      EXPECT_LT(rel(got.loss, ref.loss), dtype == at::kFloat ? 1e-6 : 1e-5) << chunk;
      EXPECT_LT(rel(got.dh, ref.dh), tol) << "d hidden, chunk " << chunk;
      EXPECT_LT(rel(got.dw, ref.dw), tol) << "d weight, chunk " << chunk;
      EXPECT_EQ(got.dh.scalar_type(), dtype);
      EXPECT_EQ(got.dw.scalar_type(), dtype);
    }
  }
}

TEST(LayerOps, ChunkedCrossEntropyRejectsBadShapes) {
  const auto h = at::randn({4, 8}), w = at::randn({10, 8});
  EXPECT_THROW(ops::chunked_cross_entropy_sum(h, w, at::zeros({3}, at::kLong), 2), std::exception);
  EXPECT_THROW(ops::chunked_cross_entropy_sum(h, at::randn({10, 7}), at::zeros({4}, at::kLong), 2),
               std::exception);
  EXPECT_THROW(ops::chunked_cross_entropy_sum(h, w, at::zeros({4}, at::kLong), 0), std::exception);
}

TEST(LayerOps, ModelLossSumEqualsTheLossOfTheFullLogits) {
  for (bool tied : {false, true}) {
    LlamaConfig c = llama_preset("tiny-gqa");
    c.tie_word_embeddings = tied;
    LlamaForCausalLM a(c), b(c);
    a->init_weights_seeded(7), b->init_weights_seeded(7);
    auto ids = at::randint(0, c.vocab_size, {3, 19}, at::kLong);
    auto labels = ids.clone();
    labels.index_put_({0, at::indexing::Slice(0, 6)}, -100);
    const auto la = causal_lm_loss_sum(a(ids), labels);
    const auto lb = b->loss_sum(ids, labels, nullptr, 8);
    la.backward(), lb.backward();
    EXPECT_LT(rel(lb, la), 1e-6) << "tied " << tied;
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_LT(rel(pb[i].value().grad(), pa[i].value().grad()), 1e-5)
          << pa[i].key() << " tied " << tied;
  }
}

// --- CUDA ---------------------------------------------------------------------------------------

namespace {
// f(args on the kernel device) fused vs the same on CPU (the libtorch reference): outputs and the
// gradients of every input, for a random upstream gradient.
template <class F>
void compare(const char* what, F f, std::vector<at::Tensor> inputs, at::ScalarType dtype,
             double tol) {
  std::vector<at::Tensor> cpu, dev;
  for (auto& x : inputs) {
    cpu.push_back(x.to(dtype).detach().clone().requires_grad_(true));
    dev.push_back(test::on_kernel_device(x.to(dtype)).detach().requires_grad_(true));
  }
  at::Tensor yc, dy;
  {
    test::ReferencePath reference;
    ASSERT_FALSE(ops::fused(cpu[0])) << what;
    yc = f(cpu);
    dy = at::randn(yc.sizes()).to(dtype);
    yc.backward(dy);
  }
  ASSERT_TRUE(ops::fused(dev[0])) << what;
  const int64_t launches = test::kernel_launches();
  const at::Tensor yd = f(dev);
  yd.backward(test::on_kernel_device(dy));
  if (launches >= 0) {  // the emulator counts launches: forward and backward both ran kernels
    EXPECT_GE(test::kernel_launches(), launches + 2) << what << ": not fused";
  }
  EXPECT_LT(rel(yd, yc), tol) << what << " forward";
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (cpu[i].grad().defined()) {
      EXPECT_LT(rel(dev[i].grad(), cpu[i].grad()), tol) << what << " gradient of input " << i;
    }
  }
}
}  // namespace

TEST(LayerOps, CudaKernelsMatchTheReferenceOverOddShapes) {
  ASC_SKIP_WITHOUT_KERNEL_DEVICE();
  torch::manual_seed(11);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const double tol = dtype == at::kFloat ? 2e-6 : 1e-2;
    // RMSNorm backward keeps a row in registers when it fits the block: 1, 2 or 4 packs per
    // thread ({600, 2048}, {1030, 4096}: more rows than its 512 blocks, so a block sums several),
    // else its partial sums in memory ({129, 4100}); unaligned rows move single elements.
    for (auto [rows, dim] : {std::pair<int64_t, int64_t>{1, 17},
                             {7, 64},
                             {129, 4100},
                             {33, 5},
                             {600, 2048},
                             {1030, 4096}}) {
      compare(
          "rmsnorm", [](auto& v) { return ops::rms_norm(v[0], v[1], 1e-5); },
          {at::randn({rows, dim}), 1 + 0.1 * at::randn({dim})}, dtype, tol);
      compare(
          "swiglu", [](auto& v) { return ops::swiglu(v[0], v[1]); },
          {3 * at::randn({rows, dim}), at::randn({rows, dim})}, dtype, tol);
    }
    // Views that start one element into their buffer: misaligned for the kernels' 128-bit packs
    // (taken above where rows are a multiple of 16 bytes), so they move single elements.
    compare(
        "rmsnorm (misaligned view)",
        [](auto& v) {
          return ops::rms_norm(v[0].narrow(0, 1, 7 * 64).view({7, 64}), v[1], 1e-5);
        },
        {at::randn({7 * 64 + 1}), 1 + 0.1 * at::randn({64})}, dtype, tol);
    compare(
        "swiglu (misaligned view)",
        [](auto& v) { return ops::swiglu(v[0].narrow(0, 1, 64), v[1].narrow(0, 1, 64)); },
        {3 * at::randn({65}), at::randn({65})}, dtype, tol);
    for (auto [B, T, H, E] : {std::array<int64_t, 4>{1, 1, 1, 2}, {2, 13, 3, 10}, {3, 7, 5, 128}}) {
      auto [cos, sin] = rotary_tables(T, E, 10000.0, std::nullopt, torch::kFloat32, torch::kCPU);
      // One table [T, E], and per-row positions (packing): tables [B, 1, T, E].
      const auto pos = at::randint(0, T, {B * T}, at::kLong);
      const std::pair<at::Tensor, at::Tensor> tables[] = {
          {cos, sin},
          {cos.index_select(0, pos).view({B, 1, T, E}),
           sin.index_select(0, pos).view({B, 1, T, E})}};
      for (const auto& [c, s] : tables)
        compare(
            c.dim() == 2 ? "rotary" : "rotary (packed)",
            [&](auto& v) {
              return ops::rotary(v[0], c.to(v[0].device()).to(v[0].scalar_type()),
                                 s.to(v[0].device()).to(v[0].scalar_type()));
            },
            {at::randn({B, T, H, E})}, dtype, tol);
    }
    auto t = at::randint(0, 1001, {45}, at::kLong);
    t.index_put_({at::arange(0, 45, 7)}, -100);
    compare(
        "cross-entropy (chunked)",
        [&](auto& v) {
          return ops::chunked_cross_entropy_sum(v[0], v[1], t.to(v[0].device()), 16);
        },
        {at::randn({45, 40}), 0.2 * at::randn({1001, 40})}, dtype,
        dtype == at::kFloat ? 1e-5 : 2e-2);
  }
}

TEST(LayerOps, CudaTrainingStepsMatchCpu) {
  ASC_SKIP_WITHOUT_KERNEL_DEVICE();
  LlamaConfig c = llama_preset("tiny-gqa");
  LlamaForCausalLM cpu(c), dev(c);
  cpu->init_weights_seeded(5), dev->init_weights_seeded(5);
  dev->to(test::kernel_device());
  for (int step = 0; step < 3; ++step) {
    torch::manual_seed(100 + step);
    auto ids = at::randint(0, c.vocab_size, {2, 33}, at::kLong);
    at::Tensor lc;
    {
      test::ReferencePath reference;
      lc = cpu->loss_sum(ids, ids, nullptr, 16);
      lc.backward();
    }
    const auto ids_dev = test::on_kernel_device(ids);
    const auto ld = dev->loss_sum(ids_dev, ids_dev, nullptr, 16);
    EXPECT_LT(rel(ld, lc), 1e-5) << "step " << step;
    ld.backward();
    torch::NoGradGuard no_grad;
    auto pc = cpu->parameters(), pd = dev->parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      EXPECT_LT(rel(pd[i].grad(), pc[i].grad()), 1e-4) << "step " << step << " parameter " << i;
      pc[i].sub_(1e-2 * pc[i].grad()), pd[i].sub_(1e-2 * pd[i].grad());
      pc[i].mutable_grad().reset(), pd[i].mutable_grad().reset();
    }
  }
}

// The planner counts the logits of one chunk, not of the whole micro-batch, with the chunked loss.
TEST(LayerOps, PlannerCountsOneChunkOfLogits) {
  MemoryPlanInput in;
  in.model = llama_preset("llama2-7b");
  in.micro_batch = 2, in.seq_len = 2048, in.compute_bytes = 2;
  const int64_t full = plan_memory(in).logits;
  EXPECT_EQ(full, 2 * 2048 * in.model.vocab_size * (2 + 4 + 4));
  in.loss_chunk_rows = 1024;
  EXPECT_EQ(plan_memory(in).logits, full / 4);
  EXPECT_LT(
      plan_memory(in).peak(),
      plan_memory(MemoryPlanInput{in.model, ParallelMode::kFsdp, 1, 2, 2, 2048, true, 0}).peak());
  in.loss_chunk_rows = 1 << 20;  // larger than the micro-batch: the whole micro-batch
  EXPECT_EQ(plan_memory(in).logits, full);
}

// On a device (train.device cuda) the host keeps staging only, and attention keeps no [T, T]
// probabilities (flash / memory-efficient kernels); the device peak is otherwise the same.
TEST(LayerOps, PlannerOnADeviceKeepsTheStateOffTheHost) {
  for (const std::string mode : {"none", "ddp", "zero2", "fsdp"}) {
    MemoryPlanInput in;
    in.model = llama_preset("llama2-7b");
    in.mode = parse_parallel_mode(mode), in.world_size = mode == "none" ? 1 : 8;
    in.compute_bytes = 2;
    in.micro_batch = 2, in.seq_len = 2048, in.activation_checkpointing = true;
    const MemoryPlan host = plan_memory(in);
    in.on_device = true;
    const MemoryPlan dev = plan_memory(in);
    EXPECT_EQ(dev.model_state(), host.model_state()) << mode;
    const int64_t probs = 2 * in.model.num_attention_heads * 2048 * 2048 * 2;  // one layer's
    EXPECT_EQ(host.activations_ckpt - dev.activations_ckpt, probs) << mode;
    EXPECT_EQ(host.activations_full - dev.activations_full, 32 * probs) << mode;
    EXPECT_EQ(dev.host_at_save, dev.master + dev.optimizer) << mode;
    // One owned range at a time: at most the rank's share of the largest unit, in fp32 (one
    // process too: it runs through the engine, which never holds the fp32 model on the host).
    // The largest unit is a decoder layer: the embedding (131 M) and the final norm with the
    // head (131 M) are units of their own.
    const int64_t layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096;
    const bool whole = mode == "none" || mode == "ddp";
    EXPECT_EQ(dev.host_at_load, (whole ? layer : (layer + 7) / 8) * 4) << mode;
    EXPECT_LT(dev.host_at_load, host.host_at_load / 10) << mode;
  }
}

// The chunk-seeded initialisation gives the same values for any split of a parameter (what lets
// each fsdp rank initialise only what it owns), across chunk boundaries and the zeroed pad row,
// and different values for another seed or parameter name.
TEST(Init, AnyRangeOfAParameterEqualsTheWholeParameter) {
  LlamaConfig c = llama_preset("tiny-gqa");
  c.vocab_size = 40000, c.hidden_size = 64, c.pad_token_id = 16400;  // pad row crosses 2^20
  const std::string name = "model.embed_tokens.weight";
  const int64_t n = c.vocab_size * c.hidden_size;  // 2.4 chunks of 2^20
  std::vector<float> whole(static_cast<size_t>(n));
  init_parameter_range(c, 9, name, n, 0, n, whole.data());
  const int64_t pad = *c.pad_token_id * c.hidden_size;
  for (int64_t i = pad; i < pad + c.hidden_size; ++i) ASSERT_EQ(whole[size_t(i)], 0.f) << i;
  EXPECT_NE(whole[size_t(pad - 1)], 0.f);
  const at::Tensor w = at::from_blob(whole.data(), {n});
  EXPECT_NEAR(w.std().item<double>(), 0.02, 0.001);
  torch::manual_seed(1);
  for (int trial = 0; trial < 20; ++trial) {
    int64_t b = at::randint(0, n, {1}).item<int64_t>(),
            e = at::randint(0, n + 1, {1}).item<int64_t>();
    if (trial == 0) b = (int64_t(1) << 20) - 5, e = (int64_t(1) << 20) + 5;  // a chunk boundary
    if (trial == 1) b = pad - 3, e = pad + 7;                                // the pad row's start
    if (b > e) std::swap(b, e);
    std::vector<float> part(static_cast<size_t>(e - b) + 1);
    init_parameter_range(c, 9, name, n, b, e, part.data());
    for (int64_t i = b; i < e; ++i)
      ASSERT_EQ(part[size_t(i - b)], whole[size_t(i)])
          << "range [" << b << ", " << e << ") at " << i;
  }
  std::vector<float> other(1000), other_name(1000);
  init_parameter_range(c, 10, name, n, 0, 1000, other.data());
  init_parameter_range(c, 9, "lm_head.weight", n, 0, 1000, other_name.data());
  EXPECT_NE(other[0], whole[0]);
  EXPECT_NE(other_name[0], whole[0]);
  // A model's init_weights_seeded is the same function over each whole parameter.
  LlamaForCausalLM m(c);
  m->init_weights_seeded(9);
  EXPECT_TRUE(at::equal(m->model->embed_tokens->weight.reshape({-1}), w));
}

// A GPU run is checked against its plan before anything is allocated on the device: llama2-7b,
// fsdp at one rank with checkpointing (the plan: ~116 GiB since the head became a unit of its
// own; the engine before that measured 118.7 on an H200 against a plan of 118.2) fits 141 GiB
// and not 80; train.check_memory: false or an unknown size skips the check.
TEST(LayerOps, AGpuRunThatCannotFitStopsBeforeItStarts) {
  const std::string yaml =
      "model:\n  preset: llama2-7b\ndata:\n  corpus: demo\n  seq_len: 2048\ntrain:\n"
      "  device: cuda\n  dtype: bf16\n  global_batch_size: 1\n  micro_batch_size: 1\n"
      "  loss_chunk_rows: 2048\nparallel:\n  mode: fsdp\n  activation_checkpointing: true\n";
  const Recipe r = load_recipe_text(yaml, "gpu.yaml", {}, 1);
  const MemoryPlanInput in = plan_input(r, llama_preset("llama2-7b"), 1);
  const int64_t GiB = int64_t(1) << 30;
  EXPECT_NO_THROW(check_plan_fits_device(r, in, 141 * GiB));
  try {
    check_plan_fits_device(r, in, 80 * GiB);
    ADD_FAILURE() << "a 116 GiB plan fitted 80 GiB";
  } catch (const std::exception& e) {
    const double need = double(plan_memory(in).peak()) / double(GiB);
    EXPECT_GT(need, 110.0);
    EXPECT_LT(need, 125.0);
    char want[64];
    std::snprintf(want, sizeof want, "this run needs about %.1f GiB per GPU", need);
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << want << "\n" << e.what();
    EXPECT_NE(std::string(e.what()).find("the GPU has 80.0 GiB"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(check_plan_fits_device(r, in, -1));
  const Recipe off = load_recipe_text(yaml, "gpu.yaml", {"train.check_memory=false"}, 1);
  EXPECT_NO_THROW(
      check_plan_fits_device(off, plan_input(off, llama_preset("llama2-7b"), 1), 80 * GiB));
}

// The small-M product of a decoding step (kernels/decode_kernels.h) against a double-precision
// product, on every build this CPU runs (baseline; AVX2 + FMA), over shapes that leave every
// remainder (rows not a multiple of 8, 4, 2; D not a multiple of 8), for a range of weight rows
// only; and the torch-side wrapper: libtorch's own linear wherever it does not apply.
TEST(SmallGemm, MatchesADoubleProductOverOddShapesOnEveryBuild) {
  torch::manual_seed(5);
  std::vector<bool> builds = {false};
  if (kernels::cpu_has_avx2_fma()) builds.push_back(true);
  for (bool avx2 : builds)
    for (int64_t M : {1, 2, 3, 5, 7, 8, 9, 15, 16})
      for (int64_t D : {1, 7, 8, 9, 64, 77})
        for (int64_t N : {1, 5, 33}) {
          const auto x = at::randn({M, D}), w = at::randn({N, D});
          auto y = at::full({M, N + 2}, 7.0f);  // row stride N + 2: the extra columns untouched
          const int64_t n0 = N > 2 ? 1 : 0, n1 = N;
          kernels::small_m_gemm_f32(x.data_ptr<float>(), M, D, w.data_ptr<float>(), n0, n1,
                                    y.data_ptr<float>(), N + 2, avx2);
          const auto want = at::mm(x.to(at::kDouble), w.to(at::kDouble).t());
          const auto got = y.narrow(1, n0, n1 - n0).to(at::kDouble);
          EXPECT_LT(rel(got, want.narrow(1, n0, n1 - n0)), 1e-6)
              << "avx2 " << avx2 << " M " << M << " D " << D << " N " << N;
          if (n0 == 1) EXPECT_TRUE(at::equal(y.select(1, 0), at::full({M}, 7.0f)));
          EXPECT_TRUE(at::equal(y.narrow(1, N, 2), at::full({M, 2}, 7.0f)));
        }
  // The wrapper: [B, T, D] input, up to kSmallMaxRows rows through the kernel (close to
  // libtorch), more rows and bf16 through libtorch's linear itself (bit-equal).
  const auto w = at::randn({300, 40});
  const auto few = at::randn({2, 3, 40});
  const auto y = kernels::small_m_linear(few, w);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 300}));
  EXPECT_LT(rel(y, torch::linear(few, w)), 1e-6);
  const auto many = at::randn({kernels::kSmallMaxRows + 1, 40});
  EXPECT_TRUE(at::equal(kernels::small_m_linear(many, w), torch::linear(many, w)));
  const auto fb = few.to(at::kBFloat16), wb = w.to(at::kBFloat16);
  EXPECT_TRUE(at::equal(kernels::small_m_linear(fb, wb), torch::linear(fb, wb)));
  // A product autograd records goes through libtorch (the kernel has no backward).
  const auto wg = w.clone().requires_grad_(true);
  const auto yg = kernels::small_m_linear(few, wg);
  ASSERT_TRUE(yg.requires_grad());
  yg.sum().backward();
  EXPECT_LT(rel(wg.grad(), few.reshape({-1, 40}).sum(0).expand({300, 40})), 1e-6);
}

// Decoding attention (kernels/decode_kernels.h) against libtorch's attention over each row's own
// slots, on every build this CPU runs: grouped-query and plain heads, head dims that leave a
// tail (E % 8), rows of different ranges (one empty: zeros), key counts that are not multiples
// of 4; through the torch-side wrapper, and the raw kernel for a subset of tasks.
TEST(DecodeAttention, MatchesLibtorchAttentionOverEachRowsSlots) {
  torch::manual_seed(9);
  std::vector<bool> builds = {false};
  if (kernels::cpu_has_avx2_fma()) builds.push_back(true);
  struct Shape {
    int64_t H, K, E;
  };
  for (const Shape sh : {Shape{4, 2, 16}, Shape{3, 3, 13}, Shape{8, 1, 64}})
    for (bool avx2 : builds) {
      const int64_t B = 4, S = 23;
      const auto q = at::randn({B, sh.H, 1, sh.E});
      const auto k = at::randn({B, sh.K, S, sh.E}), v = at::randn({B, sh.K, S, sh.E});
      const std::vector<int64_t> begin = {0, 5, 3, 7}, end = {23, 6, 3, 18};
      const double scale = 1.0 / std::sqrt(double(sh.E));
      auto out = at::full({B, sh.H, 1, sh.E}, 5.0f);
      std::vector<float> scores(S);
      // Every task, through the raw kernel with this build.
      kernels::decode_attention_f32(q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(),
                                    out.data_ptr<float>(), sh.H, sh.K, S, sh.E, begin.data(),
                                    end.data(), float(scale), 0, B * sh.H, scores.data(), avx2);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t lo = begin[size_t(b)], n = end[size_t(b)] - lo;
        if (n <= 0) {
          EXPECT_TRUE(at::equal(out[b], at::zeros_like(out[b]))) << "empty row " << b;
          continue;
        }
        const auto kb = k[b].narrow(1, lo, n).repeat_interleave(sh.H / sh.K, 0);
        const auto vb = v[b].narrow(1, lo, n).repeat_interleave(sh.H / sh.K, 0);
        const auto want = at::scaled_dot_product_attention(q[b], kb, vb, {}, 0.0, false, scale);
        EXPECT_LT(rel(out[b], want), 1e-5)
            << "H " << sh.H << " K " << sh.K << " E " << sh.E << " row " << b << " avx2 " << avx2;
      }
      // The wrapper (the CPU's build) gives the same values.
      const auto wrapped = kernels::decode_attention(q, k, v, begin, end, scale);
      EXPECT_LT(rel(wrapped, out), 1e-6);
    }
  // Ranges outside the cache are refused, naming the row.
  const auto q = at::randn({1, 2, 1, 8}), k = at::randn({1, 2, 5, 8});
  EXPECT_THROW(kernels::decode_attention(q, k, k, {0}, {6}, 1.0), Error);
}
