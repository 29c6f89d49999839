// Hugging Face tokenizer.json (byte-level BPE) and Mistral v0.3's SentencePiece model: our ids
// equal Hugging Face's on the real files (Meta's Llama 3.2 tokenizer.json, Mistral's v3 model;
// tools/fixture-wheels.txt) over synthetic notes and adversarial text, decoding round-trips, the
// word cache never changes an id, and files we do not support are refused naming what.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "data/hf_bpe.h"
#include "data/synth_notes.h"
#include "data/tokenizer.h"

using namespace asc;
using testing::HasSubstr;
namespace fs = std::filesystem;

namespace {
std::string tmp(const std::string& name) {
  auto d = fs::temp_directory_path() / ("asc_hftok_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return (d / name).string();
}

// Unpacked by tools/setup.sh beside the Python environment the tests use.
std::string fixture(const std::string& rel) {
  const auto p =
      fs::path(ASC_PYTHON).parent_path().parent_path() / "share" / "asclepius-fixtures" / rel;
  if (!fs::exists(p)) ADD_FAILURE() << p << " is missing: run tools/setup.sh";
  return p.string();
}

int run_oracle(const std::string& mode, const std::string& path, const nlohmann::json& cases,
               const std::string& name) {
  const std::string ours = tmp(name + ".json");
  write_file_atomic(ours, cases.dump());
  const std::string cmd = std::string(ASC_PYTHON) + " " + ASC_SOURCE_DIR +
                          "/tests/oracle/check_hf_tokenizer.py " + mode + " " + path + " " + ours +
                          " 1>&2";
  return std::system(cmd.c_str());
}

// Text that breaks naive tokenizers: scripts, emoji sequences, combining marks, whitespace of
// every kind, digits, contractions, special-token look-alikes.
std::vector<std::string> adversarial() {
  std::vector<std::string> t = {
      "",
      " ",
      "\n",
      "Hello world",
      "中文字符测试，日本語のテキスト、한국어 텍스트",
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 family, "
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok "
      "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88",
      "e\xCC\x81 n\xCC\x83 a\xCC\x88\xCC\x84 Z\xCC\xA4\xCD\x94\xCD\xA7\xCC\x91 \xCC\x81"
      "alone",
      "مرحبا بالعالم שלום עולם 123 abc",
      std::string(40, ' ') + "after forty spaces",
      "tabs\t\tand\t \tmixed \t\n\t",
      "a\n\n\nb\r\nc\rd\n \n  \n",
      "trailing spaces   ",
      "   ",
      "\n\n",
      "digits 1234567890123 3.14159 1,000,000 007 x2 2x 12ab34",
      "don't I'm we'll they've she'd it's IT'S DON'T 'S 'll",
      "don\xE2\x80\x99t I\xE2\x80\x99m we\xE2\x80\x99ll \xE2\x80\x98quoted\xE2\x80\x99",
      "<|begin_of_text|>inside<|eot_id|> <|end_of_text|>x<|reserved_special_token_5|>",
      "<|begin_of_text <|eot_id |eot_id|> < |eot_id| > <s> </s> [INST] [/INST]",
      "nbsp\xC2\xA0here em\xE2\x80\x83space ideographic\xE3\x80\x80space nel\xC2\x85x "
      "ls\xE2\x80\xA8ps\xE2\x80\xA9 zwsp\xE2\x80\x8Bx",
      std::string("nul\0byte", 8),
      "Patient's BP 120/80 mmHg; HR 72 bpm.\nDx: STEMI s/p PCI (LAD). Rx: ASA 81 mg PO QD.",
      "\xF0\x9D\x94\x98\xF0\x9D\x94\xAB\xF0\x9D\x94\xA6 math letters, \xC5\xBF long s 'S "
      "\xE2\x84\xAA",
      "caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m \xCE\xA9\xE2\x89\x88\xC3\xA7\xE2\x88\x9A",
      std::string(3000, 'a'),
      std::string(1000, '7'),
      "!!!???...,,,;;;:::---___===+++***",
      "http://example.com/path?q=1&r=2#frag user@example.org",
      "x\xE1\xA0\x8Ey  \xE1\xA0\x8E\xE1\xA0\x8E z",  // U+180E: not White_Space for Onig
      "The patient 's BP , HR . Isn 't it ? Yes ! We 're sure they 've seen I 'm ' quoted ' .",
  };
  std::string mixed;
  for (int i = 0; i < 200; ++i) mixed += (i % 7 ? "word" : "\n\t ") + std::to_string(i * 37);
  t.push_back(mixed);
  return t;
}

// Text that transformers' clean_up_tokenization_spaces changes on decode (Llama 3's config
// asks for it): decoding is then not the identity.
bool changes_on_cleanup(const std::string& s) {
  for (const char* p : {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"})
    if (s.find(p) != std::string::npos) return true;
  return false;
}

bool has_special_text(const std::string& s) {
  return s.find("<|") != std::string::npos || s.find("<s>") != std::string::npos ||
         s.find("</s>") != std::string::npos || s.find("[INST]") != std::string::npos ||
         s.find("[/INST]") != std::string::npos;
}

nlohmann::json cases_for(const Tokenizer& tok, const std::vector<std::string>& texts,
                         bool clean_up = false) {
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& t : texts) {
    auto ids = tok.encode(t);
    const std::string decoded = tok.decode(ids);
    if (!has_special_text(t) && !(clean_up && changes_on_cleanup(t)))
      EXPECT_EQ(decoded, t) << "round trip";
    cases.push_back({{"text", t}, {"ids", ids}, {"decoded", decoded}});
  }
  return cases;
}

std::vector<std::string> demo_texts(uint64_t seed) {
  std::vector<std::string> texts;
  for (auto& e : synthesize_notes({40, seed, 2})) {
    texts.push_back(e.note);
    texts.push_back(e.question);
    texts.push_back(e.answer);
  }
  return texts;
}
}  // namespace

TEST(HfTokenizer, Llama32IdsEqualTransformersFast) {
  const std::string dir = fs::path(fixture("llama3.2/tokenizer.json")).parent_path().string();
  Tokenizer tok(dir);  // a directory: its tokenizer.json
  EXPECT_STREQ(tok.kind(), "hf-bpe");
  EXPECT_EQ(tok.vocab_size(), 128257);  // 128,000 + 256 special + Llama 3.2's <|image|>
  EXPECT_EQ(tok.bos_id(), 128000);      // <|begin_of_text|>
  EXPECT_EQ(tok.eos_id(), 128001);      // <|end_of_text|>, from tokenizer_config.json
  EXPECT_EQ(tok.pad_id(), 128000);
  EXPECT_EQ(tok.unk_id(), -1);
  EXPECT_EQ(tok.encode("<|eot_id|>", false), std::vector<int32_t>{128009});
  auto texts = adversarial();
  for (auto& t : demo_texts(5)) texts.push_back(t);
  EXPECT_EQ(run_oracle("fast", dir, cases_for(tok, texts, /*clean_up=*/true), "llama32"), 0);
  EXPECT_EQ(tok.decode(tok.encode("He 's here , ok .")), "He's here, ok.");  // as transformers
}

TEST(HfTokenizer, MistralV3IdsEqualTransformersWithControlTokens) {
  Tokenizer tok(fixture("mistral-v3/tokenizer.model"));
  EXPECT_STREQ(tok.kind(), "sentencepiece");
  EXPECT_EQ(tok.vocab_size(), 32768);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  // Control pieces in text are their ids, as Mistral-7B-v0.3's tokenizer_config.json says.
  EXPECT_EQ(tok.encode("[INST]", false), std::vector<int32_t>{3});
  EXPECT_EQ(tok.encode("[/INST]", false), std::vector<int32_t>{4});
  auto texts = adversarial();
  for (auto& t : demo_texts(6)) texts.push_back(t);
  EXPECT_EQ(run_oracle("mistral", fixture("mistral-v3/tokenizer.model"), cases_for(tok, texts),
                       "mistral"),
            0);
}

TEST(HfTokenizer, WordCacheGivesTheUncachedIds) {
  Tokenizer tok(fixture("llama3.2/tokenizer.json"));
  const std::vector<std::string> alphabet = {"a",          "The",
                                             " ",          "  ",
                                             "\n",         "\t",
                                             "1",          "234",
                                             "'s",         "\xE2\x80\x99",
                                             "\xC3\xA9",   "中",
                                             "<|eot_id|>", "<|",
                                             "|>",         "\xF0\x9F\x98\x80",
                                             "mg",         ".",
                                             "\r\n",       "    "};
  std::mt19937 rng(11);
  std::vector<std::string> texts = demo_texts(7);
  for (int i = 0; i < 3000; ++i) {
    std::string t;
    for (int k = int(rng() % 14); k > 0; --k) t += alphabet[rng() % alphabet.size()];
    texts.push_back(t);
  }
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& t : texts) ASSERT_EQ(tok.encode(t), tok.encode_uncached(t)) << "[" << t << "]";
}

TEST(HfTokenizer, InvalidUtf8IsAClearError) {
  Tokenizer tok(fixture("llama3.2/tokenizer.json"));
  for (const std::string bad :
       {std::string("ok \xFF there"), std::string("ok \xC3"),
        std::string("ok \xED\xA0\x80 surrogate"), std::string("ok \xC0\xAF overlong")}) {
    try {
      tok.encode(bad);
      FAIL() << "accepted invalid UTF-8";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("not valid UTF-8 at byte 3"));
    }
  }
}

// A hand-made byte-level tokenizer (256 byte characters and a few merges) in two
// configurations our real file does not exercise: GPT-2's ByteLevel regex with a prefix space
// (tokenizer_config.json's add_prefix_space, which transformers applies), and ignore_merges.
// Hugging Face's ids on the same file are the reference.
namespace {
nlohmann::json tiny_tokenizer_json(bool gpt2_style) {
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_level_char(uint8_t(b))] = id++;
  const std::string G = byte_level_char(' ');  // "Ġ"
  std::vector<std::pair<std::string, std::string>> merges = {
      {"t", "h"}, {"h", "e"}, {"th", "e"}, {G, "t"}, {G + "t", "he"}, {"a", "t"}, {"i", "n"},
      {G, G},     {"e", "r"}, {"o", "n"},  {G, "a"}, {"p", "t"},      {"1", "2"}, {G + G, G + G}};
  nlohmann::json mj = nlohmann::json::array();
  for (auto& [l, r] : merges) {
    if (!vocab.contains(l + r)) vocab[l + r] = id++;
    mj.push_back(l + " " + r);
  }
  vocab["patient"] = id++;  // whole word, reachable only through ignore_merges
  nlohmann::json pre =
      gpt2_style ? nlohmann::json{{"type", "ByteLevel"},
                                  {"add_prefix_space", true},
                                  {"trim_offsets", true},
                                  {"use_regex", true}}
                 : nlohmann::json{
                       {"type", "Sequence"},
                       {"pretokenizers",
                        {{{"type", "Split"},
                          {"pattern", {{"Regex", R"(\p{N}{1,3}| ?\p{L}+|\s+|[^\s\p{L}\p{N}]+)"}}},
                          {"behavior", "Isolated"},
                          {"invert", false}},
                         {{"type", "ByteLevel"},
                          {"add_prefix_space", false},
                          {"trim_offsets", true},
                          {"use_regex", false}}}}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", id},
         {"content", "<bos>"},
         {"special", true},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}},
        {{"id", id + 1},
         {"content", "<eos>"},
         {"special", true},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}},
        {{"id", id + 2},
         {"content", "[note]"},
         {"special", false},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}},
        // tokenizers splits on normalized = false tokens first ("<ab" wins over "<abc>"
        // there), and keeps the vocabulary's id for "th" rather than the file's.
        {{"id", id + 3},
         {"content", "<ab"},
         {"special", false},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", false}},
        {{"id", id + 4},
         {"content", "<abc>"},
         {"special", false},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", true}},
        {{"id", id + 5},
         {"content", "th"},
         {"special", false},
         {"lstrip", false},
         {"rstrip", false},
         {"single_word", false},
         {"normalized", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", nlohmann::json::array()},
        {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {id}}, {"tokens", {"<bos>"}}}}}}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", !gpt2_style},
        {"vocab", vocab},
        {"merges", mj}}}};
}

std::string write_tiny(const std::string& name, const nlohmann::json& j,
                       std::optional<bool> add_prefix_space = false) {
  const std::string dir = tmp(name);
  fs::create_directories(dir);
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  nlohmann::json cfg = nlohmann::json{{"tokenizer_class", "PreTrainedTokenizerFast"},
                                      {"bos_token", "<bos>"},
                                      {"eos_token", "<eos>"}};
  if (add_prefix_space) cfg["add_prefix_space"] = *add_prefix_space;
  write_file_atomic(dir + "/tokenizer_config.json", cfg.dump());
  return dir;
}
}  // namespace

TEST(HfTokenizer, SmallByteLevelVariantsEqualTransformers) {
  // 0: GPT-2 style, tokenizer_config says add_prefix_space true; 1: Split + ignore_merges;
  // 2: GPT-2 style file (add_prefix_space true) with a config that does not say: transformers
  // then forces it off, and so do we.
  for (int variant : {0, 1, 2}) {
    const bool gpt2 = variant != 1;
    SCOPED_TRACE(variant);
    const std::string name = variant == 0 ? "gpt2" : variant == 1 ? "split" : "gpt2_noconfig";
    const std::string dir = write_tiny(name, tiny_tokenizer_json(gpt2),
                                       variant == 0   ? std::optional<bool>(true)
                                       : variant == 1 ? std::optional<bool>(false)
                                                      : std::nullopt);
    Tokenizer tok(dir);
    auto texts = adversarial();
    texts.push_back("the patient at the [note] inner patients  12345 the");
    texts.push_back("x<abc>y <abc> <ab <a the thin");
    for (auto& t : demo_texts(8)) texts.push_back(t);
    nlohmann::json cases = nlohmann::json::array();
    for (const auto& t : texts) {
      auto ids = tok.encode(t);
      cases.push_back({{"text", t}, {"ids", ids}, {"decoded", tok.decode(ids)}});
    }
    EXPECT_EQ(run_oracle("fast", dir, cases, name), 0);
    if (variant == 2) EXPECT_NE(tok.encode("the", false)[0], tok.encode(" the", false)[0]);
    if (!gpt2) {  // ignore_merges: a word in the vocabulary is one id
      auto ids = tok.encode("patient", false);
      EXPECT_EQ(ids.size(), 1u);
    }
  }
}

TEST(HfTokenizer, UnsupportedOrBrokenFilesAreNamed) {
  auto expect_error = [](const std::string& name, const nlohmann::json& j,
                         const std::string& want) {
    SCOPED_TRACE(name);
    const std::string dir = write_tiny(name, j);
    try {
      Tokenizer t(dir + "/tokenizer.json");
      FAIL() << "accepted";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(want));
      EXPECT_THAT(e.what(), HasSubstr("tokenizer.json"));
    }
  };
  auto base = [] { return tiny_tokenizer_json(false); };
  auto j = base();
  j["model"]["type"] = "WordPiece";
  expect_error("wordpiece", j, "model type WordPiece is not supported");
  j = base();
  j["model"]["type"] = "Unigram";
  expect_error("unigram", j, "model type Unigram is not supported");
  j = base();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}};
  expect_error("metaspace", j, "pre-tokenizer Metaspace is not supported");
  j = base();
  j["normalizer"] = {{"type", "NFC"}};
  expect_error("normalizer", j, "normalizer NFC is not supported");
  j = base();
  j["model"]["byte_fallback"] = true;
  expect_error("byte_fallback", j, "model.byte_fallback true is not supported");
  j = base();
  j["model"]["merges"].push_back("zz qq");
  expect_error("unknown merge", j, "names \"zz\", which is not in model.vocab");
  j = base();
  j["model"]["vocab"].erase(byte_level_char('A'));
  expect_error("missing byte", j, "lacks the byte-level character");
  j = base();
  j["added_tokens"][0]["lstrip"] = true;
  expect_error("lstrip", j, "with lstrip");
  j = base();
  j["post_processor"] = nullptr;
  expect_error("no bos", j, "adds no BOS token");
  j = base();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expect_error("bad regex", j, "does not compile");
  // Malformed JSON.
  const std::string dir = tmp("malformed");
  fs::create_directories(dir);
  write_file_atomic(dir + "/tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
  try {
    Tokenizer t(dir + "/tokenizer.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("malformed tokenizer.json"));
  }
}
