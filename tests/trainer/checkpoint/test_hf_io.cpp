// Hugging Face directory errors: pickles refused with the conversion hint; missing, unexpected
// and misshapen tensors named with their file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "checkpoint/hf_io.h"
#include "common/error.h"
#include "common/fs.h"
#include "test_util.h"

using namespace asc;
using testing::HasSubstr;
namespace fs = std::filesystem;

namespace {
std::string load_error(const std::string& dir) {
  try {
    LlamaForCausalLM model(read_hf_config(dir));
    load_hf_weights(dir, model);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}
LlamaConfig tiny() {
  LlamaConfig c = llama_preset("tiny");
  c.vocab_size = 32, c.hidden_size = 16, c.intermediate_size = 24, c.num_hidden_layers = 1;
  c.num_attention_heads = 2, c.num_key_value_heads = 2;
  return c;
}
}  // namespace

TEST(HfIo, PickleCheckpointIsRefusedWithConversionHint) {
  std::string msg = load_error(test::hf_fixtures() + "/gqa_pickle");
  EXPECT_THAT(msg, HasSubstr("holds a pickle checkpoint (pytorch_model.bin)"));
  EXPECT_THAT(msg, HasSubstr("save_pretrained(sys.argv[2], safe_serialization=True)"));
}

TEST(HfIo, NotAModelDirectory) {
  EXPECT_THAT(load_error(test::temp_dir("empty")),
              HasSubstr("not a Hugging Face model directory (no config.json)"));
}

TEST(HfIo, MissingUnexpectedAndMisshapenTensors) {
  torch::manual_seed(0);
  LlamaForCausalLM model(tiny());
  model->init_weights();
  NamedTensors all = hf_named_tensors(model);

  std::string d1 = test::temp_dir("missing");
  save_hf_dir(d1, model->config(), NamedTensors(all.begin() + 1, all.end()), at::kFloat);
  EXPECT_THAT(load_error(d1), HasSubstr("missing tensor 'model.embed_tokens.weight'"));

  std::string d2 = test::temp_dir("unexpected");
  NamedTensors extra = all;
  extra.emplace_back("model.layers.7.mlp.up_proj.weight", at::zeros({2, 2}));
  save_hf_dir(d2, model->config(), extra, at::kFloat);
  EXPECT_THAT(load_error(d2), HasSubstr("unexpected tensor 'model.layers.7.mlp.up_proj.weight'"));

  std::string d3 = test::temp_dir("shape");
  NamedTensors bad = all;
  bad[0].second = at::zeros({31, 16});
  save_hf_dir(d3, model->config(), bad, at::kFloat);
  EXPECT_THAT(
      load_error(d3),
      HasSubstr("model.embed_tokens.weight' has shape [31, 16] but config.json implies [32, 16]"));

  // bf16 round trip keeps values to bf16 precision.
  std::string d4 = test::temp_dir("bf16");
  save_hf_dir(d4, model->config(), all, at::kBFloat16);
  LlamaForCausalLM back(read_hf_config(d4));
  load_hf_weights(d4, back);
  auto a = hf_named_tensors(back);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_TRUE(at::equal(a[i].second, all[i].second.to(at::kBFloat16).to(at::kFloat)))
        << a[i].first;
  EXPECT_EQ(read_hf_config(d4).torch_dtype, "bfloat16");
}

TEST(HfIo, NonFloatTensorsAreRefused) {
  torch::manual_seed(0);
  LlamaForCausalLM model(tiny());
  NamedTensors all = hf_named_tensors(model);
  all[0].second = all[0].second.to(at::kLong);
  std::string d = test::temp_dir("int");
  save_hf_dir(d, model->config(), {all[0]}, at::kLong);
  save_hf_dir(d, model->config(), all, at::kLong);
  EXPECT_THAT(load_error(d), HasSubstr("has dtype I64; parameters must be floating point"));
}

// pad_token_id: as in transformers, the pad row starts at zero and gets no gradient; it and
// sliding_window survive an export.
TEST(HfIo, PadTokenRowAndConfigRoundTrip) {
  LlamaConfig c = tiny();
  c.pad_token_id = 3;
  c.sliding_window = 64;
  torch::manual_seed(0);
  LlamaForCausalLM model(c);
  model->init_weights();
  auto w = model->model->embed_tokens->weight;
  EXPECT_EQ(w[3].abs().sum().item<double>(), 0.0);
  auto ids = at::tensor({3, 5, 3, 7}, at::kLong).reshape({1, 4});
  causal_lm_loss_sum(model(ids), ids).backward();
  EXPECT_EQ(w.grad()[3].abs().sum().item<double>(), 0.0);
  EXPECT_GT(w.grad()[5].abs().sum().item<double>(), 0.0);
  std::string d = test::temp_dir("pad");
  save_hf_dir(d, c, hf_named_tensors(model), at::kFloat);
  LlamaConfig back = read_hf_config(d);
  EXPECT_EQ(back.pad_token_id, std::optional<int64_t>(3));
  EXPECT_EQ(back.sliding_window, std::optional<int64_t>(64));
  EXPECT_THROW(model(at::zeros({1, 65}, at::kLong)), Error);  // window not implemented: refused
}

TEST(HfIo, IndexNamingAMissingFileOrTensor) {
  torch::manual_seed(0);
  LlamaForCausalLM model(tiny());
  std::string d = test::temp_dir("index");
  save_hf_dir(d, model->config(), hf_named_tensors(model), at::kFloat, /*max_shard_bytes=*/4096);
  ASSERT_TRUE(fs::exists(d + "/model.safetensors.index.json"));
  EXPECT_EQ(load_error(d), "<no error>");
  std::string idx = read_file(d + "/model.safetensors.index.json");
  auto pos = idx.find("\"model.norm.weight\"");
  ASSERT_NE(pos, std::string::npos);
  idx.replace(pos, std::string("\"model.norm.weight\"").size(), "\"model.norm.weightX\"");
  write_file_atomic(d + "/model.safetensors.index.json", idx);
  EXPECT_THAT(load_error(d), HasSubstr("index says 'model.norm.weightX' is in"));
}

TEST(HfIo, RejectsUnsupportedArchitectures) {
  std::string d = test::temp_dir("arch");
  write_file_atomic(d + "/config.json", R"({"model_type": "gpt2", "vocab_size": 10})");
  EXPECT_THAT(load_error(d), HasSubstr("model_type 'gpt2' is not a LLaMA-family model"));
  write_file_atomic(
      d + "/config.json",
      R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                        "num_hidden_layers": 1, "num_attention_heads": 2,
                        "rope_scaling": {"type": "linear", "factor": 2.0}})");
  EXPECT_THAT(load_error(d), HasSubstr("rope_scaling"));
  write_file_atomic(
      d + "/config.json",
      R"({"model_type": "llama", "vocab_size": 1e300, "hidden_size": 8, "intermediate_size": 8,
                        "num_hidden_layers": 1, "num_attention_heads": 2})");
  EXPECT_THAT(load_error(d), HasSubstr("field 'vocab_size' must be an integer, got 1e+300"));
  write_file_atomic(
      d + "/config.json",
      R"({"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 8,
                        "num_hidden_layers": 1, "num_attention_heads": 2, "eos_token_id": [2, 7]})");
  EXPECT_THAT(load_error(d),
              HasSubstr("eos_token_id [2,7] (a list, as Llama-3 writes) is not supported"));
}

// Regression: the PyPI libtorch exports std::filesystem functions of its own; bound to them,
// remove_all of a populated tree crashed. Our binaries must bind to the system libstdc++.
TEST(HfIo, FilesystemCallsWorkInLibtorchLinkedBinaries) {
  std::string d = test::temp_dir("fs");
  fs::create_directories(d + "/a/b/c");
  write_file_atomic(d + "/a/b/c/x.txt", "x");
  write_file_atomic(d + "/a/y.txt", "y");
  EXPECT_EQ(fs::remove_all(d + "/a"), 5u);
  EXPECT_FALSE(fs::exists(d + "/a"));
}

// The export's layout is planned from the config alone: names, order and shapes must be the
// model's own (grouped-query and tied-embedding configurations).
TEST(HfIo, ParameterShapesFromTheConfigAreTheModels) {
  for (const char* preset : {"tiny-gqa", "tiny"}) {
    for (bool tied : {false, true}) {
      LlamaConfig c = llama_preset(preset);
      c.tie_word_embeddings = tied;
      LlamaForCausalLM m(c);
      const auto planned = llama_parameter_shapes(c);
      const auto params = m->named_parameters();
      ASSERT_EQ(planned.size(), params.size()) << preset << " tied " << tied;
      for (size_t i = 0; i < params.size(); ++i) {
        EXPECT_EQ(planned[i].first, params[i].key()) << i;
        EXPECT_EQ(planned[i].second, std::vector<int64_t>(params[i].value().sizes().begin(),
                                                          params[i].value().sizes().end()))
            << params[i].key();
      }
    }
  }
}
