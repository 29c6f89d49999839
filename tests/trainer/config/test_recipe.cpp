// Recipe loading: every error names file, line and key path; overrides; round trip; shipped
// recipes all load.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "config/recipe.h"

using asc::load_recipe_text;
using testing::HasSubstr;

namespace {
const char* kBase = R"(model:
  preset: tiny
data:
  seq_len: 32
train:
  global_batch_size: 8
  micro_batch_size: 4
  max_steps: 3
)";

std::string error_of(const std::string& text, const std::vector<std::string>& ov = {},
                     int64_t world = 1) {
  try {
    load_recipe_text(text, "r.yaml", ov, world);
  } catch (const asc::Error& e) {
    return e.message();
  }
  return "<no error>";
}
}  // namespace

TEST(Recipe, LoadsAndDerivesAccumulation) {
  auto r = load_recipe_text(kBase, "r.yaml");
  EXPECT_EQ(r.model.preset, "tiny");
  EXPECT_EQ(r.data.seq_len, 32);
  EXPECT_EQ(r.grad_accum_steps, 2);
  EXPECT_EQ(r.origin.at("train.max_steps"), "r.yaml:8");
  EXPECT_DOUBLE_EQ(r.train.lr, 2e-5);  // default
}

TEST(Recipe, UnknownNestedKeySuggestsClosest) {
  EXPECT_EQ(error_of(std::string(kBase) + "  warmup: 0.1\n"),
            "r.yaml:9: train.warmup: unknown key; did you mean train.warmup_ratio?");
}

TEST(Recipe, UnknownSectionSuggestsClosest) {
  EXPECT_EQ(error_of(std::string(kBase) + "trian:\n  lr: 1\n"),
            "r.yaml:9: trian: unknown key; did you mean train?");
}

TEST(Recipe, UnknownKeyWithNothingCloseListsValidKeys) {
  EXPECT_THAT(error_of(std::string(kBase) + "  zzzzzzzzzzzzzz: 1\n"),
              HasSubstr("r.yaml:9: train.zzzzzzzzzzzzzz: unknown key (valid here: "));
}

TEST(Recipe, DuplicateKeyIsAnError) {
  EXPECT_EQ(error_of(std::string(kBase) + "  max_steps: 4\n"),
            "r.yaml:9: train.max_steps: duplicate key (first set on line 8)");
  EXPECT_EQ(error_of(std::string(kBase) + "model:\n  preset: tiny\n"),
            "r.yaml:9: model: duplicate key (first set on line 1)");
}

TEST(Recipe, WrongTypeNamesExpectedType) {
  EXPECT_EQ(error_of(std::string(kBase) + "  lr: fast\n"),
            "r.yaml:9: train.lr: expected a number, got 'fast'");
  EXPECT_EQ(error_of(std::string(kBase) + "  seed: 1.5\n"),
            "r.yaml:9: train.seed: expected an integer, got '1.5'");
  EXPECT_EQ(error_of(std::string(kBase) + "logging:\n  tensorboard: maybe\n"),
            "r.yaml:10: logging.tensorboard: expected a boolean (true/false), got 'maybe'");
  EXPECT_EQ(error_of(std::string(kBase) + "  lr: [1, 2]\n"),
            "r.yaml:9: train.lr: expected a number, got a list");
  EXPECT_EQ(error_of(std::string(kBase) + "  lr:\n"),
            "r.yaml:9: train.lr: expected a number, got nothing (null)");
  EXPECT_EQ(error_of(std::string(kBase) + "parallel: fsdp\n"),
            "r.yaml:9: parallel: is a section; expected a mapping of keys");
}

TEST(Recipe, OutOfRangeNamesRule) {
  EXPECT_EQ(error_of(std::string(kBase) + "  lr: -1\n"),
            "r.yaml:9: train.lr: -1 is out of range (must be > 0)");
  EXPECT_EQ(error_of(std::string(kBase) + "  warmup_ratio: 1.5\n"),
            "r.yaml:9: train.warmup_ratio: 1.5 is out of range (must be in [0, 1))");
  EXPECT_THAT(error_of(std::string(kBase) + "  dtype: fp8\n"),
              HasSubstr("r.yaml:9: train.dtype: fp8 is out of range (one of fp32, bf16)"));
  EXPECT_THAT(error_of(std::string(kBase) + "  lr: .nan\n"),
              HasSubstr("train.lr: expected a number, got '.nan'"));
}

TEST(Recipe, BatchArithmeticNamesEachFactor) {
  EXPECT_EQ(error_of(kBase, {"train.micro_batch_size=3"}),
            "r.yaml:6: train.global_batch_size (8) is not "
            "divisible by train.micro_batch_size (3) × data-parallel ranks (1) = 3");
  // With ranks: 8 % (4 × 4) != 0 — the location is where global_batch_size was set.
  auto r = load_recipe_text(std::string(kBase) + "parallel:\n  mode: ddp\n", "r.yaml", {}, 2);
  EXPECT_EQ(r.grad_accum_steps, 1);
  EXPECT_EQ(error_of(std::string(kBase) + "parallel:\n  mode: ddp\n", {}, 4),
            "r.yaml:6: train.global_batch_size (8) is not divisible by train.micro_batch_size (4)"
            " × data-parallel ranks (4) = 16");
}

TEST(Recipe, Overrides) {
  auto r = load_recipe_text(kBase, "r.yaml",
                            {"train.lr=1e-4", "logging.tensorboard=true", "checkpoint.dir=/tmp/x",
                             "model.hidden_size=128"});
  EXPECT_DOUBLE_EQ(r.train.lr, 1e-4);
  EXPECT_TRUE(r.logging.tensorboard);
  EXPECT_EQ(r.checkpoint.dir, "/tmp/x");
  EXPECT_EQ(r.preset_model_config()->hidden_size, 128);
  EXPECT_EQ(r.origin.at("train.lr"), "command line override 'train.lr=1e-4'");
  EXPECT_EQ(error_of(kBase, {"train.lrr=1"}),
            "command line override 'train.lrr=1': train.lrr: unknown key; did you mean train.lr?");
  EXPECT_EQ(error_of(kBase, {"train.lr=abc"}),
            "command line override 'train.lr=abc': train.lr: expected a number, got 'abc'");
  EXPECT_EQ(error_of(kBase, {"train.lr"}),
            "command line override 'train.lr': expected key.path=value");
  EXPECT_EQ(error_of(kBase, {"train=1"}),
            "command line override 'train=1': train is a section, not a key");
}

TEST(Recipe, ModelSourceRules) {
  EXPECT_THAT(error_of("train:\n  global_batch_size: 8\n  micro_batch_size: 8\n"),
              HasSubstr("set model.preset or model.init_from"));
  // A preset with init_from names the architecture the weights must have (checked at load,
  // used by `asclepius plan`); overriding architecture fields stays an error.
  EXPECT_EQ(error_of(kBase, {"model.init_from=/x"}), "<no error>");
  EXPECT_THAT(error_of(kBase, {"model.init_from=/x", "model.hidden_size=128"}),
              HasSubstr("architecture fields cannot be overridden with model.init_from"));
  EXPECT_THAT(error_of(kBase, {"model.preset=lama-7b"}),
              HasSubstr("model.preset: lama-7b is out of range (one of"));
  EXPECT_THAT(
      error_of(kBase, {"model.num_key_value_heads=3"}),
      HasSubstr("model.num_attention_heads (4) is not divisible by model.num_key_value_heads (3)"));
  EXPECT_THAT(error_of(kBase, {"data.seq_len=100000"}),
              HasSubstr("data.seq_len (100000) exceeds model.max_position_embeddings (512)"));
}

TEST(Recipe, SyntaxErrorHasLineAndColumn) {
  EXPECT_THAT(error_of("model:\n  preset: [tiny\n"), HasSubstr("r.yaml:"));
  EXPECT_THAT(error_of("model:\n  preset: [tiny\n"), HasSubstr("YAML syntax error"));
  EXPECT_THAT(error_of("- a\n- b\n"), HasSubstr("a recipe is a mapping of sections"));
}

TEST(Recipe, PrintedConfigLoadsBackToTheSame) {
  auto r = load_recipe_text(kBase, "r.yaml", {"train.lr=3.3e-4", "model.num_key_value_heads=2"});
  std::string y = asc::recipe_to_yaml(r);
  auto r2 = load_recipe_text(y, "printed.yaml");
  EXPECT_EQ(asc::recipe_to_yaml(r2), y);
  EXPECT_DOUBLE_EQ(r2.train.lr, 3.3e-4);
  EXPECT_EQ(r2.preset_model_config()->num_key_value_heads, 2);
  // Every key appears (the architecture resolved from the preset).
  for (const auto& k : asc::recipe_keys()) {
    std::string leaf = k.substr(k.find('.') + 1);
    if (k == "model.init_from") continue;
    EXPECT_THAT(y, HasSubstr("\n  " + leaf + ":")) << k;
  }
}

// The Llama 3 / Mistral v0.3 presets through a recipe: the architecture (rope_scaling, end ids,
// model_type) comes with the preset and survives --print-config.
TEST(Recipe, UpstreamBasePresetsCarryTheirArchitecture) {
  for (const char* preset : {"llama3-8b", "llama3.1-8b", "mistral-7b-v0.3"}) {
    auto r = load_recipe_text(kBase, "r.yaml", {std::string("model.preset=") + preset});
    const asc::LlamaConfig c = *r.preset_model_config();
    EXPECT_EQ(c.rope_scaling.has_value(), std::string(preset) == "llama3.1-8b") << preset;
    auto r2 = load_recipe_text(asc::recipe_to_yaml(r), "printed.yaml");
    const asc::LlamaConfig c2 = *r2.preset_model_config();
    EXPECT_EQ(c2.rope_scaling, c.rope_scaling) << preset;
    EXPECT_EQ(c2.model_type, c.model_type) << preset;
    EXPECT_EQ(c2.eos_token_id, c.eos_token_id) << preset;
    EXPECT_EQ(c2.max_position_embeddings, c.max_position_embeddings) << preset;
  }
}

TEST(Recipe, EveryShippedRecipeLoads) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(ASC_SOURCE_DIR) / "recipes")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(asc::load_recipe(e.path().string()));
    ++n;
  }
  EXPECT_GE(n, 1);
}

TEST(Recipe, DottedKeysAndExtraDocumentsAreRejected) {
  EXPECT_EQ(error_of(std::string(kBase) + "train.lr: 1\n"),
            "r.yaml:9: train.lr: a key may not contain '.'");
  EXPECT_EQ(error_of(std::string(kBase) + "---\ntrain:\n  lr: 1\n"),
            "r.yaml: holds more than one YAML document ('---'); a recipe is one document");
  // yaml-cpp's LoadAll loops forever on these (found by fuzz_recipe); we must not.
  EXPECT_EQ(error_of(",,,\nmodel: 1\n"),
            "r.yaml: not a YAML mapping (stray characters before the first key?)");
  EXPECT_EQ(error_of(","), "r.yaml: not a YAML mapping (stray characters before the first key?)");
  EXPECT_THAT(error_of("# only a comment\n"), HasSubstr("set model.preset or model.init_from"));
}

TEST(Recipe, ArchitectureErrorsPointAtTheOverride) {
  EXPECT_EQ(error_of(kBase, {"model.num_key_value_heads=3"}),
            "command line override 'model.num_key_value_heads=3': model.num_attention_heads (4) is "
            "not divisible by model.num_key_value_heads (3)");
  EXPECT_EQ(error_of(kBase, {"model.hidden_size=66"}),
            "command line override 'model.hidden_size=66': model.hidden_size (66) is not divisible "
            "by model.num_attention_heads (4)");
}

TEST(Recipe, HugeValuesAreOutOfRangeNotOverflow) {
  EXPECT_EQ(
      error_of(kBase, {"train.global_batch_size=9223372036854775807"}),
      "command line override 'train.global_batch_size=9223372036854775807': "
      "train.global_batch_size: 9223372036854775807 is out of range (must be in 1..1073741824)");
  EXPECT_THAT(error_of(kBase, {"model.hidden_size=100000000000"}), HasSubstr("out of range"));
  EXPECT_THAT(error_of(kBase, {}, int64_t(1) << 40), HasSubstr("world size"));
}

TEST(Recipe, SuggestionPrefersTheNearestOfEqualPrefixMatches) {
  EXPECT_EQ(error_of(kBase, {"train.lr_scheduler_type=cosine"}),
            "command line override 'train.lr_scheduler_type=cosine': train.lr_scheduler_type: "
            "unknown key; did you mean train.lr_schedule?");
}

TEST(Recipe, MissingFileIsAnError) {
  EXPECT_THROW(asc::load_recipe("/nonexistent/recipe.yaml"), asc::Error);
}

// Issue 23: an override is a value, not a YAML document, so a '#' in it is kept.
TEST(Recipe, AHashInAnOverrideIsPartOfTheValue) {
  auto r = load_recipe_text(kBase, "r.yaml", {"checkpoint.dir=/x/exp #2"});
  EXPECT_EQ(r.checkpoint.dir, "/x/exp #2");
  EXPECT_EQ(load_recipe_text(kBase, "r.yaml", {"checkpoint.dir=\"/x/exp #3\""}).checkpoint.dir,
            "/x/exp #3");
  EXPECT_THAT(error_of(kBase, {"train.lr=1e-4 # smaller"}),
              HasSubstr("train.lr: expected a number, got '1e-4 # smaller'"));
}

// A recipe is read up to a size limit: a device or a wrong file stops with one error instead of
// being read until memory runs out.
TEST(Recipe, FilesPastTheSizeLimitAreRefused) {
  const auto path = std::filesystem::temp_directory_path() / "asc_test_big_recipe.yaml";
  {
    std::ofstream out(path);
    out << kBase << "# " << std::string(asc::kMaxRecipeBytes, 'x') << "\n";
  }
  try {
    asc::load_recipe(path.string());
    FAIL() << "no error";
  } catch (const asc::Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("larger than 1048576 bytes; not a recipe"));
  }
  std::filesystem::remove(path);
  try {
    asc::load_recipe("/dev/zero");
    FAIL() << "no error";
  } catch (const asc::Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("recipe /dev/zero: larger than"));
  }
}

// An unknown top-level section lists the sections (it printed an empty "valid here" list).
TEST(Recipe, AnUnknownSectionListsTheSections) {
  const std::string e = error_of(std::string(kBase) + "zzzzzzzz:\n  a: 1\n");
  EXPECT_THAT(e, HasSubstr("zzzzzzzz: unknown key (valid here: "));
  EXPECT_THAT(e, HasSubstr("model"));
  EXPECT_THAT(e, HasSubstr("checkpoint"));
}
