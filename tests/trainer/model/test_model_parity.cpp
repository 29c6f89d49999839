// Parity with Hugging Face transformers: a tiny random LlamaForCausalLM saved by transformers,
// loaded by us, gives the same fp32 logits and loss; our export loads in transformers and gives
// the same logits again. Configs: grouped-query attention, tied embeddings, sharded checkpoint.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "checkpoint/hf_io.h"
#include "model/llama.h"
#include "test_util.h"

using namespace asc;

class HfParity : public testing::TestWithParam<std::string> {};

TEST_P(HfParity, LogitsAndLossMatchTransformersAndExportLoadsBack) {
  const std::string dir = test::hf_fixtures() + "/" + GetParam();
  const std::string ref_dir =
      test::hf_fixtures() + "/" + (GetParam() == "gqa_sharded" ? "gqa" : GetParam());
  auto expected = st::SafetensorsFile::open(ref_dir + "/expected.safetensors");
  at::Tensor ids = test::load_tensor(*expected, "input_ids");
  at::Tensor labels = test::load_tensor(*expected, "labels");
  at::Tensor want_logits = test::load_tensor(*expected, "logits");
  const double want_loss = test::load_tensor(*expected, "loss").item<double>();

  LlamaForCausalLM model(read_hf_config(dir));
  load_hf_weights(dir, model);
  torch::NoGradGuard no_grad;
  at::Tensor logits = model(ids);
  const double diff = (logits - want_logits).abs().max().item<double>();
  EXPECT_LT(diff, 1e-4) << "max |logits - transformers|";
  const double loss =
      causal_lm_loss_sum(logits, labels).item<double>() / double(count_targets(labels));
  EXPECT_NEAR(loss, want_loss, 1e-4);

  // Our export (fp32) loads in transformers and reproduces our logits.
  const std::string out = test::temp_dir("export_" + GetParam());
  save_hf_dir(out, model->config(), hf_named_tensors(model), at::kFloat,
              /*max_shard_bytes=*/60'000);
  test::save_tensors(out + "/../ours_" + GetParam() + ".safetensors",
                     {{"input_ids", ids}, {"logits", logits}});
  EXPECT_EQ(test::run_oracle("check_export.py",
                             out + " " + out + "/../ours_" + GetParam() + ".safetensors 1e-4"),
            0);
}

INSTANTIATE_TEST_SUITE_P(Configs, HfParity, testing::Values("gqa", "tied", "gqa_sharded"));

TEST(HfParity, RotaryTablesFollowTheHalfSplitConvention) {
  // Independent check of the rotary table against its definition.
  auto [cos, sin] = rotary_tables(5, 8, 10000.0, at::kFloat, at::kCPU);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t i = 0; i < 4; ++i) {
      double ang = double(t) * std::pow(10000.0, -2.0 * double(i) / 8.0);
      EXPECT_NEAR(cos[t][i].item<double>(), std::cos(ang), 1e-6);
      EXPECT_NEAR(cos[t][i + 4].item<double>(), std::cos(ang), 1e-6);
      EXPECT_NEAR(sin[t][i + 4].item<double>(), std::sin(ang), 1e-6);
    }
}
