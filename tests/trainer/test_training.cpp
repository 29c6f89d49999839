// One-process training: overfits a fixed batch; a seed makes runs identical; accumulation 4×2
// equals 1×8; the schedule equals the Hugging Face Trainer's step by step; TensorBoard files
// read back with TensorBoard's own reader; bf16 trains with fp32 master weights.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf_io.h"
#include "comm/communicator.h"
#include "data/collate.h"
#include "common/error.h"
#include "common/fs.h"
#include "config/recipe.h"
#include "optim/schedule.h"
#include "test_util.h"
#include "train.h"

using namespace asc;

namespace {
Recipe recipe(const std::string& dir, std::vector<std::string> ov) {
  return test::tiny_recipe(dir, std::move(ov));
}
std::vector<nlohmann::json> metrics_of(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}
NamedTensors weights_of(const std::string& run_dir) {
  std::string d = resolve_model_dir(run_dir);
  LlamaForCausalLM m(read_hf_config(d));
  load_hf_weights(d, m);
  NamedTensors out;
  for (auto& [n, t] : hf_named_tensors(m)) out.emplace_back(n, t.detach().clone());
  return out;
}
}  // namespace

TEST(Training, OverfitsAFixedBatch) {
  auto dir = test::temp_dir("overfit");
  auto r = recipe(dir, {"data.demo_samples=8", "train.max_steps=80", "train.lr=1e-2",
                        "train.lr_schedule=constant", "train.warmup_ratio=0"});
  auto res = train(r);
  ASSERT_EQ(res.losses.size(), 80u);
  EXPECT_GT(res.losses.front(), 5.0);  // ~ln(256)
  EXPECT_LT(res.losses.back(), 0.5) << "a tiny model must memorise 8 sequences";
}

// train.tf32 sets libtorch's CUDA fp32 precision (what cuBLAS and cuDNN read) for the run and
// restores it after; CPU results do not change. (On a GPU, kernel_train_test.sh runs fp32 with
// train.tf32=false against the CPU.)
TEST(Training, Tf32ScopeSetsAndRestoresLibtorchsPrecision) {
  auto& ctx = at::globalContext();
  const bool blas = ctx.allowTF32CuBLAS(), dnn = ctx.allowTF32CuDNN();
  {
    Tf32Scope on(true);
    EXPECT_TRUE(ctx.allowTF32CuBLAS());
    EXPECT_TRUE(ctx.allowTF32CuDNN());
    {
      Tf32Scope off(false);
      EXPECT_FALSE(ctx.allowTF32CuBLAS());
      EXPECT_FALSE(ctx.allowTF32CuDNN());
    }
    EXPECT_TRUE(ctx.allowTF32CuBLAS());
  }
  EXPECT_EQ(ctx.allowTF32CuBLAS(), blas);
  EXPECT_EQ(ctx.allowTF32CuDNN(), dnn);
  auto a = train(recipe(test::temp_dir("tf32_off"), {"train.max_steps=2", "train.tf32=false"}));
  auto b = train(recipe(test::temp_dir("tf32_on"), {"train.max_steps=2"}));  // the default
  EXPECT_EQ(ctx.allowTF32CuBLAS(), blas) << "a run leaves the process as it found it";
  EXPECT_EQ(a.losses, b.losses) << "CPU matmuls do not use TF32";
}

TEST(Training, SameSeedGivesIdenticalLosses) {
  auto a = train(recipe(test::temp_dir("seed_a"), {}));
  auto b = train(recipe(test::temp_dir("seed_b"), {}));
  EXPECT_EQ(a.losses, b.losses);
  auto c = train(recipe(test::temp_dir("seed_c"), {"train.seed=8"}));
  EXPECT_NE(a.losses, c.losses);
}

TEST(Training, AccumulationFourByTwoEqualsOneByEight) {
  auto da = test::temp_dir("acc_1x8"), db = test::temp_dir("acc_4x2");
  auto a = train(recipe(da, {"train.max_steps=3"}));
  auto rb = recipe(db, {"train.max_steps=3", "train.micro_batch_size=2"});
  ASSERT_EQ(rb.grad_accum_steps, 4);
  auto b = train(rb);
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_NEAR(a.losses[i], b.losses[i], 1e-5);
  auto wa = weights_of(da), wb = weights_of(db);
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i)
    EXPECT_TRUE(at::allclose(wa[i].second, wb[i].second, 1e-5, 1e-6)) << wa[i].first;
  // And the weights really moved (the comparison is not vacuous).
  auto m = metrics_of(da);
  EXPECT_GT(m.back()["grad_norm"].get<double>(), 0.0);
}

// The global-batch normalisation itself, with uneven prompt masks: accumulating micro-batches of
// 2 must give the gradient of the whole batch's token-mean loss, and must differ from the mean
// of per-micro-batch means (so the test can tell the two apart).
TEST(Training, AccumulationNormalisesByTheGlobalTargetCount) {
  torch::manual_seed(11);
  LlamaConfig c = llama_preset("tiny");
  LlamaForCausalLM model(c);
  model->init_weights();
  test::LocalTrainer opt(model, false);
  auto names_params = hf_named_tensors(model);
  std::vector<std::string> names;
  std::vector<at::Tensor> params;
  for (auto& [n, p] : names_params) names.push_back(n), params.push_back(p);
  at::Tensor ids = at::randint(0, c.vocab_size, {8, 16}, at::kLong);
  at::Tensor labels = ids.clone();
  for (int64_t b = 0; b < 8; ++b)
    labels.index_put_({b, at::indexing::Slice(0, 2 * b)}, -100);  // 0..14 masked

  GlobalBatch micro;
  for (int64_t a = 0; a < 4; ++a) {
    MicroBatch m;
    m.input_ids_BT = ids.slice(0, 2 * a, 2 * a + 2);
    m.labels_BT = labels.slice(0, 2 * a, 2 * a + 2);
    micro.push_back(std::move(m));
  }
  const double loss_acc = opt.accumulate(micro).loss;
  std::vector<at::Tensor> g_acc;
  for (size_t i = 0; i < params.size(); ++i) g_acc.push_back(params[i].grad().clone());
  opt.zero_grad();

  at::Tensor full = causal_lm_loss_sum(model(ids), labels) / double(count_targets(labels));
  full.backward();
  EXPECT_NEAR(loss_acc, full.item<double>(), 1e-5);
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(at::allclose(g_acc[i], params[i].grad(), 1e-4, 1e-6)) << names[i];
  opt.zero_grad();

  double mean_of_means = 0;
  for (int64_t a = 0; a < 4; ++a) {
    auto l = labels.slice(0, 2 * a, 2 * a + 2);
    mean_of_means += causal_lm_loss_sum(model(ids.slice(0, 2 * a, 2 * a + 2)), l).item<double>() /
                     double(count_targets(l)) / 4.0;
  }
  EXPECT_GT(std::abs(mean_of_means - loss_acc), 1e-4) << "masks too even to tell the methods apart";
}

// Packed rows: each example's logits equal those of the example alone (positions restart,
// attention stays inside the example).
TEST(Training, PackedRowsComputeEachExampleAlone) {
  torch::manual_seed(3);
  LlamaForCausalLM model(llama_preset("tiny-gqa"));
  model->init_weights();
  torch::NoGradGuard no_grad;
  at::Tensor a = at::randint(3, 256, {1, 7}, at::kLong), b = at::randint(3, 256, {1, 5}, at::kLong);
  at::Tensor row = at::cat({a, b, at::ones({1, 4}, at::kLong)}, 1);  // 7 + 5 + 4 padding
  Packing p;
  p.position_ids_BT =
      at::cat({at::arange(7), at::arange(5), at::zeros({4}, at::kLong)}).unsqueeze(0);
  p.segment_ids_BT =
      at::cat({at::full({7}, 1, at::kLong), at::full({5}, 2, at::kLong), at::zeros({4}, at::kLong)})
          .unsqueeze(0);
  at::Tensor packed = model(row, &p);
  EXPECT_TRUE(packed.isfinite().all().item<bool>());  // padding rows included
  EXPECT_TRUE(at::allclose(packed.slice(1, 0, 7), model(a), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(packed.slice(1, 7, 12), model(b), 1e-5, 1e-5));
  EXPECT_FALSE(at::allclose(model(row).slice(1, 7, 12), model(b), 1e-3, 1e-3));  // unpacked differs
}

// The same examples padded (one per row) and packed (several per row) give the same loss and
// the same gradients.
TEST(Training, PackedAndPaddedBatchesGiveTheSameLossAndGradients) {
  torch::manual_seed(4);
  LlamaForCausalLM model(llama_preset("tiny-gqa"));
  model->init_weights();
  test::LocalTrainer opt(model, false);
  auto named = hf_named_tensors(model);
  std::vector<std::string> names;
  std::vector<at::Tensor> params;
  for (auto& [n, t] : named) names.push_back(n), params.push_back(t);
  std::mt19937 rng(5);
  std::vector<Example> ex;
  for (int k = 0; k < 6; ++k) {
    Example e;
    const int len = 6 + int(rng() % 10), prompt = 2 + int(rng() % 4);
    // Example 3 starts with a target token: it must not become one in either layout.
    for (int i = 0; i < len; ++i)
      e.ids.push_back(i == 0 && k != 3 ? 1 : int32_t(3 + rng() % 250)),
          e.mask.push_back(i >= prompt || k == 3);
    ex.push_back(e);
  }
  auto tensor = [](const std::vector<int64_t>& v, int64_t r, int64_t l) {
    return at::from_blob(const_cast<int64_t*>(v.data()), {r, l}, at::kLong).clone();
  };
  GlobalBatch padded;
  for (size_t b = 0; b < ex.size(); b += 2) {  // micro-batches of 2, each padded to its longest
    Rows rows = collate_padded({ex[b], ex[b + 1]}, 1);
    MicroBatch m;
    m.input_ids_BT = tensor(rows.ids, rows.rows, rows.len);
    m.labels_BT = tensor(rows.labels, rows.rows, rows.len);
    padded.push_back(std::move(m));
  }
  Rows pr = collate_packed(ex, 32, 1);
  ASSERT_LT(pr.rows, 6);  // really packed
  GlobalBatch packed;
  MicroBatch m;
  m.input_ids_BT = tensor(pr.ids, pr.rows, pr.len);
  m.labels_BT = tensor(pr.labels, pr.rows, pr.len);
  m.packing = std::make_unique<Packing>();
  m.packing->position_ids_BT = tensor(pr.positions, pr.rows, pr.len);
  m.packing->segment_ids_BT = tensor(pr.segments, pr.rows, pr.len);
  packed.push_back(std::move(m));

  auto l1 = opt.accumulate(padded);
  std::vector<at::Tensor> g1;
  for (size_t i = 0; i < params.size(); ++i) g1.push_back(params[i].grad().clone());
  opt.zero_grad();
  auto l2 = opt.accumulate(packed);
  EXPECT_EQ(l1.targets, l2.targets);
  EXPECT_NEAR(l1.loss, l2.loss, 1e-5);
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(at::allclose(g1[i], params[i].grad(), 1e-4, 1e-6)) << names[i];
}

TEST(Training, RefusesARunDirectoryThatHoldsCheckpoints) {
  auto dir = test::temp_dir("again");
  train(recipe(dir, {"train.max_steps=1"}));
  try {
    train(recipe(dir, {"train.max_steps=1"}));
    FAIL() << "second run into the same directory must be refused";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("already holds checkpoints (latest: " + dir + "/step-0000001)"),
        std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(std::filesystem::exists(dir + "/step-0000001/manifest.pb"));  // untouched
}

TEST(Training, ScheduleMatchesHuggingFaceTrainer) {
  nlohmann::json ref = nlohmann::json::parse(read_file(test::hf_fixtures() + "/schedules.json"));
  int checked = 0;
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    const std::string key = it.key();  // kind/total/ratio
    const auto kind = key.substr(0, key.find('/'));
    const auto rest = key.substr(key.find('/') + 1);
    const int64_t total = std::stoll(rest.substr(0, rest.find('/')));
    const double ratio = std::stod(rest.substr(rest.find('/') + 1));
    const Schedule sk = kind == "cosine"   ? Schedule::kCosine
                        : kind == "linear" ? Schedule::kLinear
                                           : Schedule::kConstant;
    ASSERT_TRUE(kind == "cosine" || kind == "linear" || kind == "constant") << key;
    LrSchedule s{sk, 1.0, warmup_steps_from_ratio(total, ratio), total};
    EXPECT_EQ(s.warmup_steps, it.value()["warmup"].get<int64_t>()) << key;
    const auto& lrs = it.value()["lr"];
    for (int64_t k = 0; k < total; ++k, ++checked)
      ASSERT_NEAR(s.lr_at(k), lrs[size_t(k)].get<double>(), 1e-12) << key << " step " << k;
  }
  EXPECT_GT(checked, 1000);
  // The trainer logs the same values (peak lr × multiplier) step by step.
  auto dir = test::temp_dir("sched");
  train(recipe(dir, {"train.max_steps=10", "train.warmup_ratio=0.2"}));
  LrSchedule s{Schedule::kCosine, 3e-3, 2, 10};
  auto m = metrics_of(dir);
  ASSERT_EQ(m.size(), 10u);
  for (int k = 0; k < 10; ++k) EXPECT_DOUBLE_EQ(m[size_t(k)]["lr"].get<double>(), s.lr_at(k));
  EXPECT_EQ(m[0]["lr"].get<double>(), 0.0);  // the first update runs at lr 0, as in HF
}

TEST(Training, TensorBoardEventsReadBackWithTensorBoard) {
  auto dir = test::temp_dir("tb");
  train(recipe(dir, {"logging.tensorboard=true"}));
  EXPECT_EQ(test::run_oracle("check_tensorboard.py", dir), 0);
}

TEST(Training, Bf16TrainsWithFp32MasterWeights) {
  auto dir = test::temp_dir("bf16");
  auto res = train(recipe(dir, {"train.dtype=bf16", "train.max_steps=30", "train.lr=1e-2"}));
  EXPECT_LT(res.losses.back(), res.losses.front() - 1.0);
  // The checkpoint holds fp32 masters: not all exactly representable in bf16.
  auto w = weights_of(dir);
  auto t = w[0].second;
  EXPECT_FALSE(at::equal(t, t.to(at::kBFloat16).to(at::kFloat)));
}

TEST(Training, CheckpointsEveryStepsAndLatestPointsAtNewest) {
  auto dir = test::temp_dir("ckpt");
  train(recipe(dir, {"checkpoint.every_steps=2", "train.max_steps=5"}));
  for (const char* s : {"step-0000002", "step-0000004", "step-0000005"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + s + "/manifest.pb")) << s;
  EXPECT_EQ(read_file(dir + "/latest"), "step-0000005\n");
  EXPECT_TRUE(std::filesystem::exists(dir + "/recipe.yaml"));
  auto back = load_recipe(dir + "/recipe.yaml");
  EXPECT_EQ(back.train.max_steps, 5);
}

// The ranks per node (train.device cuda refuses more than the GPUs it sees) as launchers say it.
TEST(Launch, LocalSizeFromTheLauncher) {
  const char* vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                        "SLURM_STEP_TASKS_PER_NODE"};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char* v : vars) {
    if (const char* old = std::getenv(v)) saved.emplace_back(v, old);
    unsetenv(v);
  }
  EXPECT_EQ(comm::local_size(), 0);
  setenv("SLURM_STEP_TASKS_PER_NODE", "8(x2)", 1);
  EXPECT_EQ(comm::local_size(), 8);
  setenv("SLURM_STEP_TASKS_PER_NODE", "4,3", 1);  // differs between nodes: not used
  EXPECT_EQ(comm::local_size(), 0);
  setenv("MPI_LOCALNRANKS", "2", 1);
  EXPECT_EQ(comm::local_size(), 2);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3", 1);
  EXPECT_EQ(comm::local_size(), 3);
  for (const char* v : vars) unsetenv(v);
  for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
}
