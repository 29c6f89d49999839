// Hugging Face directory errors: pickles refused with the conversion hint; missing, unexpected
// and misshapen tensors named with their file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

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
  EXPECT_THAT(load_error(d), HasSubstr(d + "/config.json: rope_scaling.type 'linear' is not "
                                           "supported"));
  write_file_atomic(
      d + "/config.json",
      R"({"model_type": "llama", "vocab_size": 1e300, "hidden_size": 8, "intermediate_size": 8,
                        "num_hidden_layers": 1, "num_attention_heads": 2})");
  EXPECT_THAT(load_error(d), HasSubstr("field 'vocab_size' must be an integer, got 1e+300"));
}

namespace {
// read_hf_config's error for a config.json of a small Llama with `extra` fields.
std::string config_error(const std::string& name, const std::string& extra) {
  const std::string d = test::temp_dir(name);
  write_file_atomic(d + "/config.json",
                    R"({"model_type": "llama", "vocab_size": 16, "hidden_size": 8,
                        "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "max_position_embeddings": 64)" +
                        extra + "}");
  try {
    read_hf_config(d);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}
std::string rope(const std::string& fields) {
  return R"(, "rope_scaling": {)" + fields + "}";
}
const char* kLlama3 =
    R"("rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
       "original_max_position_embeddings": 16)";
}  // namespace

// Llama 3.1's rope_scaling is read (either spelling of its type); every other rope_type, a field
// missing or out of range, is refused naming config.json and the field.
TEST(HfIo, RopeScalingIsReadOrRefusedNamingTheField) {
  const std::string base = std::string(kLlama3);
  EXPECT_EQ(config_error("rs_ok", rope(base)), "<no error>");
  {
    const std::string d = test::temp_dir("rs_type");
    write_file_atomic(d + "/config.json",
                      R"({"model_type": "llama", "vocab_size": 16, "hidden_size": 8,
                          "intermediate_size": 8, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "rope_scaling": {"type": "llama3",
                          "factor": 32, "low_freq_factor": 1, "high_freq_factor": 4,
                          "original_max_position_embeddings": 8192}})");
    const LlamaConfig c = read_hf_config(d);
    ASSERT_TRUE(c.rope_scaling.has_value());
    EXPECT_EQ(*c.rope_scaling, (RopeScaling{32.0, 1.0, 4.0, 8192}));
  }
  auto err = [](const std::string& name, const std::string& fields) {
    return config_error(name, rope(fields));
  };
  const std::string file = "/config.json: ";
  for (const char* type : {"linear", "dynamic", "yarn", "longrope"}) {
    const std::string msg = err(std::string("rs_") + type,
                                std::string(R"("rope_type": ")") + type +
                                    R"(", "factor": 2.0, "original_max_position_embeddings": 16)");
    EXPECT_THAT(msg, HasSubstr(file + "rope_scaling.rope_type '" + type + "' is not supported"));
    EXPECT_THAT(msg, HasSubstr("only Llama 3.1's rotary scaling (rope_type llama3)"));
  }
  EXPECT_THAT(err("rs_notype", R"("factor": 8.0)"), HasSubstr(file + "rope_scaling"));
  EXPECT_THAT(err("rs_notype", R"("factor": 8.0)"), HasSubstr("has no rope_type"));
  EXPECT_THAT(err("rs_typenum", R"("rope_type": 3)"),
              HasSubstr(file + "rope_scaling.rope_type must be a string, got 3"));
  EXPECT_THAT(config_error("rs_list", R"(, "rope_scaling": [1])"),
              HasSubstr(file + "rope_scaling must be an object or null, got [1]"));
  for (const char* field :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    // The field left out.
    std::string fields = R"("rope_type": "llama3")";
    for (const char* other :
         {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      if (std::string(other) != field) fields += std::string(R"(, ")") + other + R"(": 4)";
    EXPECT_THAT(
        err(std::string("rs_miss_") + field, fields),
        HasSubstr(file + "rope_scaling (rope_type llama3) is missing field '" + field + "'"));
    // Not a number.
    EXPECT_THAT(err(std::string("rs_str_") + field, fields + R"(, ")" + field + R"(": "8")"),
                HasSubstr(file + "rope_scaling." + field + " must be a"));
  }
  auto with = [&](const std::string& replace_key, const std::string& value) {
    std::string f = base;
    const size_t at = f.find("\"" + replace_key + "\": ");
    const size_t begin = at + replace_key.size() + 4, end = f.find_first_of(",}", begin);
    return f.substr(0, begin) + value + (end == std::string::npos ? "" : f.substr(end));
  };
  EXPECT_THAT(err("rs_f0", with("factor", "0")),
              HasSubstr(file + "rope_scaling.factor must be a finite number > 0 (got 0)"));
  EXPECT_THAT(err("rs_fneg", with("factor", "-2.5")),
              HasSubstr(file + "rope_scaling.factor must be a finite number > 0 (got -2.5)"));
  EXPECT_THAT(err("rs_low0", with("low_freq_factor", "0")),
              HasSubstr(file + "rope_scaling.low_freq_factor must be a finite number > 0"));
  EXPECT_THAT(err("rs_high", with("high_freq_factor", "1.0")),
              HasSubstr(file + "rope_scaling.high_freq_factor (1) must be finite and greater "
                               "than rope_scaling.low_freq_factor (1)"));
  EXPECT_THAT(err("rs_omp0", with("original_max_position_embeddings", "0")),
              HasSubstr(file + "rope_scaling.original_max_position_embeddings = 0 is out of "
                               "range"));
  EXPECT_THAT(err("rs_ompf", with("original_max_position_embeddings", "16.5")),
              HasSubstr(file + "rope_scaling.original_max_position_embeddings must be an "
                               "integer, got 16.5"));
  // "default" is transformers' plain rotary: the same as null.
  EXPECT_EQ(config_error("rs_default", rope(R"("rope_type": "default")")), "<no error>");
}

// Llama 3's list of end ids: the first is eos_token_id, all are kept and written back as a list
// (config.json and generation_config.json); one id stays one id.
TEST(HfIo, EosTokenIdListIsKeptAndWrittenBack) {
  EXPECT_THAT(config_error("eos_empty", R"(, "eos_token_id": [])"),
              HasSubstr("/config.json: eos_token_id is an empty list"));
  EXPECT_THAT(config_error("eos_str", R"(, "eos_token_id": [2, "x"])"),
              HasSubstr("/config.json: eos_token_id [2,\"x\"] must hold integers, got \"x\""));
  const std::string d = test::temp_dir("eos_list");
  write_file_atomic(d + "/config.json",
                    R"({"model_type": "llama", "vocab_size": 16, "hidden_size": 8,
                        "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "eos_token_id": [9, 2, 7]})");
  const LlamaConfig c = read_hf_config(d);
  EXPECT_EQ(c.eos_token_id, 9);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{9, 2, 7}));
  EXPECT_EQ(c.end_token_ids(), (std::vector<int64_t>{9, 2, 7}));
  torch::manual_seed(0);
  LlamaForCausalLM model(c);
  const std::string out = test::temp_dir("eos_list_out");
  save_hf_dir(out, c, hf_named_tensors(model), at::kFloat);
  EXPECT_EQ(read_hf_config(out).eos_token_ids, c.eos_token_ids);
  const auto cfg = nlohmann::json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(cfg["eos_token_id"], nlohmann::json::parse("[9, 2, 7]"));
  const auto gen = nlohmann::json::parse(read_file(out + "/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], nlohmann::json::parse("[9, 2, 7]"));
  // One id: an integer, as before.
  LlamaConfig one = tiny();
  EXPECT_TRUE(one.eos_token_ids.empty());
  EXPECT_EQ(one.end_token_ids(), (std::vector<int64_t>{2}));
  EXPECT_EQ(llama_config_to_hf_json(one)["eos_token_id"], nlohmann::json(2));
  // A list whose first id is not eos_token_id is inconsistent.
  one.eos_token_ids = {5, 2};
  EXPECT_THROW(one.validate("x"), Error);
}

// The upstream bases' presets: the published parameter counts, and the export layout planned
// from the config adds up to them.
TEST(HfIo, UpstreamPresetsHaveThePublishedParameterCounts) {
  const std::pair<const char*, int64_t> published[] = {
      {"llama3-8b", 8'030'261'248},       {"llama3.1-8b", 8'030'261'248},
      {"mistral-7b-v0.3", 7'248'023'552}, {"mistral-7b", 7'248'023'552},
      {"llama2-7b", 6'738'415'616},       {"tinyllama-1.1b", 1'100'048'384},
  };
  for (const auto& [preset, count] : published) {
    const LlamaConfig c = llama_preset(preset);
    EXPECT_EQ(c.num_parameters(), count) << preset;
    int64_t planned = 0;
    for (const auto& [name, shape] : llama_parameter_shapes(c)) {
      int64_t n = 1;
      for (int64_t v : shape) n *= v;
      planned += n;
    }
    EXPECT_EQ(planned, count) << preset;
  }
  const LlamaConfig l3 = llama_preset("llama3-8b"), l31 = llama_preset("llama3.1-8b");
  EXPECT_EQ(l3.bos_token_id, 128000);
  EXPECT_EQ(l3.eos_token_id, 128001);
  EXPECT_EQ(l3.rope_theta, 500000.0);
  EXPECT_EQ(l3.max_position_embeddings, 8192);
  EXPECT_FALSE(l3.rope_scaling.has_value());
  EXPECT_EQ(l31.max_position_embeddings, 131072);
  ASSERT_TRUE(l31.rope_scaling.has_value());
  EXPECT_EQ(*l31.rope_scaling, (RopeScaling{8.0, 1.0, 4.0, 8192}));
  const LlamaConfig m = llama_preset("mistral-7b-v0.3");
  EXPECT_EQ(m.model_type, "mistral");
  EXPECT_EQ(m.vocab_size, 32768);
  EXPECT_EQ(m.rope_theta, 1e6);
  EXPECT_FALSE(m.sliding_window.has_value());
  // Through config.json and back.
  for (const char* preset : {"llama3-8b", "llama3.1-8b", "mistral-7b-v0.3"}) {
    const LlamaConfig c = llama_preset(preset);
    const LlamaConfig back = llama_config_from_hf_json(llama_config_to_hf_json(c), "x");
    EXPECT_EQ(back.rope_scaling, c.rope_scaling) << preset;
    EXPECT_EQ(back.num_parameters(), c.num_parameters()) << preset;
    EXPECT_EQ(back.model_type, c.model_type) << preset;
    EXPECT_EQ(back.eos_token_id, c.eos_token_id) << preset;
  }
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
