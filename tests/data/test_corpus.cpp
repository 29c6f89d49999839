// HDF5 corpus: pretrain documents and instruct masks against an independent reference (h5py +
// transformers); windows; truncation keeps the answer; every bad-input case names file and cause.
#include <gmock/gmock.h>

#include <cstdint>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "data/corpus.h"
#include "data/synth_notes.h"
#include "data/tokenizer.h"

using namespace asc;
using testing::HasSubstr;

namespace {
struct Fixture {
  std::string dir, csv, model;
};
const Fixture& fx() {
  static const Fixture f = [] {
    Fixture x;
    x.dir = (std::filesystem::temp_directory_path() / ("asc_corpus_" + std::to_string(::getpid())))
                .string();
    std::filesystem::create_directories(x.dir);
    auto ex = synthesize_notes({60, 4, 2});
    write_synth_splits(ex, x.dir, 1000000);  // train.csv: 59 notes (the last one is held out)
    x.csv = x.dir + "/train.csv";
    std::vector<std::string> notes;
    for (auto& e : ex) notes.push_back(e.note);
    x.model = x.dir + "/tok.model";
    train_tokenizer(notes, {700, 0, "bpe"}, x.model);
    return x;
  }();
  return f;
}
std::string build(const std::string& stage, int64_t max_len = 2048) {
  CorpusBuildOptions o;
  o.inputs = {fx().csv};
  o.tokenizer = fx().model;
  o.stage = stage;
  o.max_len = max_len;
  o.out = fx().dir + "/" + stage + std::to_string(max_len) + ".h5";
  build_corpus(o);
  return o.out;
}
int oracle(const std::string& corpus) {
  std::string cmd = std::string(ASC_PYTHON) + " " + ASC_SOURCE_DIR +
                    "/tests/oracle/check_corpus.py " + corpus + " " + fx().model + " " + fx().csv +
                    " 1>&2";
  return std::system(cmd.c_str());
}
std::string open_error(const std::string& path) {
  try {
    Corpus c(path);
    c.check_token_ids(c.info().vocab_size);
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}
}  // namespace

TEST(Corpus, PretrainDocumentsEqualTheReference) {
  std::string p = build("pretrain");
  Corpus c(p);
  EXPECT_EQ(c.info().num_docs, 59);  // 118 rows, 59 distinct notes
  EXPECT_EQ(c.info().stage, "pretrain");
  EXPECT_EQ(oracle(p), 0);
  // Windows are consecutive slices of the stream, remainder dropped.
  const int64_t L = 64;
  EXPECT_EQ(c.num_windows(L), c.info().num_tokens / L);
  std::vector<int32_t> all(size_t(c.info().num_tokens)), w(L);
  c.read_tokens(0, c.info().num_tokens, all.data());
  c.read_tokens(5 * L, L, w.data());
  EXPECT_TRUE(std::equal(w.begin(), w.end(), all.begin() + 5 * L));
  EXPECT_EQ(all.front(), 1);
  EXPECT_EQ(all.back(), 2);
}

TEST(Corpus, InstructMasksCoverExactlyAnswerAndEos) {
  std::string p = build("instruct");
  Corpus c(p);
  EXPECT_EQ(c.info().num_docs, 118);
  EXPECT_EQ(c.info().truncated, 0);
  EXPECT_EQ(oracle(p), 0);
}

TEST(Corpus, TooLongExamplesKeepTheAnswerAndCutTheNote) {
  CorpusBuildOptions o;
  o.inputs = {fx().csv};
  o.tokenizer = fx().model;
  o.stage = "instruct";
  o.max_len = 320;
  o.out = fx().dir + "/instruct320.h5";
  auto rep = build_corpus(o);
  Corpus c(o.out);
  Tokenizer tok(fx().model);
  EXPECT_GT(c.info().truncated, 0);
  EXPECT_EQ(c.info().truncated, rep.truncated);
  EXPECT_EQ(c.info().num_docs + rep.dropped_too_long, 118);  // nothing lost silently
  for (int64_t d = 0; d < c.info().num_docs; ++d) {
    const int64_t b = c.doc_offsets()[size_t(d)], n = c.doc_offsets()[size_t(d) + 1] - b;
    EXPECT_LE(n, 320);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    std::vector<uint8_t> m(static_cast<size_t>(n));
    c.read_tokens(b, n, ids.data());
    c.read_loss_mask(b, n, m.data());
    std::vector<int32_t> answer;
    for (int64_t i = 0; i < n; ++i)
      if (m[size_t(i)]) answer.push_back(ids[size_t(i)]);
    ASSERT_FALSE(answer.empty());
    EXPECT_EQ(answer.back(), 2);                                     // EOS is a target
    EXPECT_THAT(tok.decode(ids), HasSubstr("[Instruction End]\n"));  // prompt structure intact
  }
}

TEST(Corpus, BadInputIsNamed) {
  std::string good = build("pretrain");
  const std::string d = fx().dir;
  EXPECT_THAT(open_error(d + "/missing.h5"), HasSubstr("missing.h5: corpus not found"));
  write_file_atomic(d + "/text.h5", "not hdf5 at all");
  EXPECT_THAT(open_error(d + "/text.h5"), HasSubstr("text.h5: not an HDF5 file (or truncated)"));
  // Truncated: the first half of a real corpus.
  std::string bytes = read_file(good);
  write_file_atomic(d + "/trunc.h5", bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(open_error(d + "/trunc.h5"), HasSubstr("trunc.h5: "));
  // Bit flip inside the token data: Fletcher32 catches it on read.
  {
    Corpus c(good);
    std::vector<int32_t> head(64);
    c.read_tokens(0, 64, head.data());
    std::string needle(reinterpret_cast<const char*>(head.data() + 8), 32);
    size_t at = bytes.find(needle);
    ASSERT_NE(at, std::string::npos);
    std::string flipped = bytes;
    flipped[at + 5] = char(flipped[at + 5] ^ 0x10);
    write_file_atomic(d + "/flip.h5", flipped);
  }
  EXPECT_THAT(open_error(d + "/flip.h5"), HasSubstr("flip.h5: reading tokens [0, "));
  EXPECT_THAT(open_error(d + "/flip.h5"), HasSubstr("the corpus is corrupted"));
  // Token ids above a (smaller) model vocabulary.
  Corpus c(good);
  try {
    c.check_token_ids(100);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("is outside the model's vocabulary [0, 100)"));
  }
  // No usable records.
  write_file_atomic(d + "/empty.csv", "note,question\n");
  CorpusBuildOptions o;
  o.inputs = {d + "/empty.csv"};
  o.tokenizer = fx().model;
  o.out = d + "/empty.h5";
  EXPECT_THROW(build_corpus(o), Error);
  EXPECT_FALSE(std::filesystem::exists(d + "/empty.h5"));
  // --max-len below the prompt itself: every example dropped is an error, not an empty file.
  CorpusBuildOptions tiny;
  tiny.inputs = {fx().csv};
  tiny.tokenizer = fx().model;
  tiny.stage = "instruct";
  tiny.max_len = 20;
  tiny.out = d + "/tiny.h5";
  try {
    build_corpus(tiny);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("all 118 examples were longer than --max-len 20"));
  }
  EXPECT_FALSE(std::filesystem::exists(d + "/tiny.h5"));
}
