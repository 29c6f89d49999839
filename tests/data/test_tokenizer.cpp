// Tokenizer: a model trained by `tokenizer train` follows the LLaMA conventions, and our ids equal
// Hugging Face's slow LlamaTokenizer on demo notes and on edge cases (newlines, digits, unicode,
// runs of spaces); decode inverts encode; bad model files are named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "data/synth_notes.h"
#include "data/tokenizer.h"

using namespace asc;
using testing::HasSubstr;

namespace {
std::string tmp(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("asc_tok_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return (d / name).string();
}
const std::string& demo_model() {
  static const std::string path = [] {
    std::vector<std::string> notes;
    for (auto& e : synthesize_notes({300, 21, 1})) notes.push_back(e.note);
    std::string p = tmp("demo.model");
    train_tokenizer(notes, {800, 0, "bpe"}, p);
    return p;
  }();
  return path;
}
}  // namespace

TEST(Tokenizer, TrainedModelFollowsLlamaConventions) {
  Tokenizer tok(demo_model());
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), 1);
  EXPECT_EQ(tok.vocab_size(), 800);
  auto ids = tok.encode("Discharge Date: 2020-01-02", true, true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok.decode(ids), "Discharge Date: 2020-01-02");
  EXPECT_EQ(tok.checksum().size(), 16u);
}

TEST(Tokenizer, IdsEqualTransformersLlamaTokenizer) {
  Tokenizer tok(demo_model());
  std::vector<std::string> texts = {"",
                                    " ",
                                    "\n",
                                    "a\n\nb",
                                    "  leading and   runs of   spaces  ",
                                    "tabs\tand\r\nCRLF",
                                    "digits 1234567890 and 3.14159, BP 120/80",
                                    "unicode: café naïve 中文 😀 Ω≈ç√",
                                    "Ends with newline\n",
                                    "SOB x3d; pt c/o CP. Rx: metoprolol 25 mg PO BID.",
                                    "<s> literal markers </s> are plain text here"};
  for (auto& e : synthesize_notes({25, 99, 2})) texts.push_back(e.note), texts.push_back(e.answer);
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& t : texts) {
    auto ids = tok.encode(t);
    cases.push_back({{"text", t}, {"ids", ids}});
    if (t.find('<') == std::string::npos) {
      EXPECT_EQ(tok.decode(ids), t);  // exact inverse
    }
  }
  const std::string ours = tmp("ours.json");
  write_file_atomic(ours, cases.dump());
  const std::string cmd = std::string(ASC_PYTHON) + " " + ASC_SOURCE_DIR +
                          "/tests/oracle/check_tokenizer.py " + demo_model() + " " + ours + " 1>&2";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

// The word cache must never change an id: every demo note, its answers, and random strings
// built from spaces, newlines, tabs, digits, unicode and special-token fragments.
TEST(Tokenizer, WordCacheGivesTheUncachedIds) {
  // Also a model trained on space-heavy text, whose vocabulary has whitespace-only pieces
  // ("▁▁", "▁▁▁▁") that can span a split point if the splitting were wrong.
  std::vector<std::string> spacey;
  for (auto& e : synthesize_notes({300, 23, 1})) {
    std::string t;
    for (char c : e.note) t += c == ' ' ? std::string("  ") : std::string(1, c);
    spacey.push_back(t + "    indented  \n      more");
  }
  const std::string spacey_model = tmp("spacey.model");
  train_tokenizer(spacey, {800, 0, "bpe"}, spacey_model);
  Tokenizer tok2(spacey_model);
  ASSERT_GT(tok2.encode_uncached("a  b").size(), 0u);
  Tokenizer tok(demo_model());
  ASSERT_TRUE(tok.word_cache_enabled()) << "the demo model meets the cache's conditions";
  ASSERT_TRUE(tok2.word_cache_enabled());
  std::vector<std::string> texts = spacey;
  for (auto& e : synthesize_notes({200, 5, 2})) texts.push_back(e.note), texts.push_back(e.answer);
  const std::vector<std::string> alphabet = {"a",
                                             "b",
                                             "the",
                                             " ",
                                             " ",
                                             "  ",
                                             "\n",
                                             "\t",
                                             "1",
                                             "23",
                                             "\xc3\xa9",
                                             "\xe4\xb8\xad",
                                             "<s>",
                                             "</s>",
                                             "<",
                                             "/",
                                             "SOB",
                                             "mg",
                                             "\xe2\x96\x81",
                                             "    "};  // a literal U+2581, a wide gap
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string t;
    const int n = int(rng() % 12);
    for (int k = 0; k < n; ++k) t += alphabet[rng() % alphabet.size()];
    texts.push_back(t);
  }
  for (const Tokenizer* tk : {&tok, &tok2})
    for (int pass = 0; pass < 2; ++pass)  // the second pass is served from the cache
      for (const auto& t : texts)
        ASSERT_EQ(tk->encode(t), tk->encode_uncached(t)) << tk->path() << " text: [" << t << "]";
}

TEST(Tokenizer, BadModelFilesAreNamed) {
  try {
    Tokenizer t("/nonexistent/tok.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("/nonexistent/tok.model: tokenizer model not found"));
  }
  const std::string junk = tmp("junk.model");
  write_file_atomic(junk, "definitely not a protobuf \x01\x02\x03");
  try {
    Tokenizer t(junk);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.message(), HasSubstr(junk + ": not a SentencePiece model"));
  }
}
