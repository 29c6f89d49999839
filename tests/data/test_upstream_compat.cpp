// Upstream's collator quirks, reproduced when asked (corpus build --upstream-compat; training
// hides BOS through collate_padded's hidden id): input ids, labels and attention masks equal,
// element for element, what upstream's preprocess + DataCollatorForSupervisedDataset compute with
// transformers on the same records — with LlamaTokenizer (upstream main, prompt `asclepius`) and
// with Llama 3's tokenizer.json (the llama3_mistral branch, prompt `asclepius-space`), including
// examples cut at max_len. Also: the default build differs from upstream exactly by the one
// prompt token, and templates are checked.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "data/collate.h"
#include "data/corpus.h"
#include "data/synth_notes.h"
#include "data/tokenizer.h"

using namespace asc;
using testing::HasSubstr;
namespace fs = std::filesystem;

namespace {
std::string dir() {
  static const std::string d = [] {
    auto p = fs::temp_directory_path() / ("asc_compat_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p.string();
  }();
  return d;
}

// Records as JSON Lines (note, question, answer), some with newlines to strip.
std::string records(std::vector<SynthExample>* out, bool crlf = true) {
  *out = synthesize_notes({24, 17, 1});
  (*out)[3].note = "\n\n" + (*out)[3].note + "\n";
  if (crlf) (*out)[5].answer += "\r\n";  // upstream strips "\n" only: the "\r" stays
  std::string jsonl;
  for (const auto& e : *out)
    jsonl +=
        nlohmann::json{{"note", e.note}, {"question", e.question}, {"answer", e.answer}}.dump() +
        "\n";
  const std::string path = dir() + "/records.jsonl";
  write_file_atomic(path, jsonl);
  return path;
}

std::string demo_tokenizer(const std::vector<SynthExample>& ex) {
  std::vector<std::string> notes;
  for (const auto& e : ex) notes.push_back(e.note + "\n" + e.answer);
  const std::string p = dir() + "/tok.model";
  if (!fs::exists(p)) train_tokenizer(notes, {600, 0, "bpe"}, p);
  return p;
}

std::string fixture(const std::string& rel) {
  return (fs::path(ASC_PYTHON).parent_path().parent_path() / "share" / "asclepius-fixtures" / rel)
      .string();
}

// Our rows for consecutive groups of `group` documents, as training collates them.
nlohmann::json our_rows(const Corpus& c, int32_t pad, bool hide_bos, int group) {
  nlohmann::json groups = nlohmann::json::array();
  const auto& off = c.doc_offsets();
  const int64_t docs = int64_t(off.size()) - 1;
  for (int64_t g = 0; g + group <= docs; g += group) {
    std::vector<Example> ex(static_cast<size_t>(group));
    for (int k = 0; k < group; ++k) {
      const int64_t b = off[size_t(g + k)], n = off[size_t(g + k + 1)] - b;
      ex[size_t(k)].ids.resize(size_t(n));
      ex[size_t(k)].mask.resize(size_t(n));
      c.read_tokens(b, n, ex[size_t(k)].ids.data());
      c.read_loss_mask(b, n, ex[size_t(k)].mask.data());
    }
    const Rows r = collate_padded(ex, pad, hide_bos ? pad : -1);
    nlohmann::json rows = nlohmann::json::array();
    for (int64_t i = 0; i < r.rows; ++i) {
      nlohmann::json ids = nlohmann::json::array(), labels = ids, attn = ids;
      for (int64_t t = 0; t < r.len; ++t) {
        const size_t at = size_t(i * r.len + t);
        ids.push_back(r.ids[at]);
        labels.push_back(r.labels[at]);
        attn.push_back(r.segments[at] == 1 && r.visible[at] ? 1 : 0);  // keys others may see
      }
      rows.push_back({{"ids", ids}, {"labels", labels}, {"attention", attn}});
    }
    groups.push_back(rows);
  }
  return {{"group", group}, {"rows", groups}};
}

int run_oracle(const std::string& mode, const std::string& tok, const std::string& prompt,
               int64_t max_len, const std::string& recs, const nlohmann::json& ours) {
  const std::string out = dir() + "/ours_" + mode + std::to_string(max_len) + ".json";
  write_file_atomic(out, ours.dump());
  const std::string cmd = std::string(ASC_PYTHON) + " " + ASC_SOURCE_DIR +
                          "/tests/oracle/check_upstream_collator.py " + mode + " " + tok + " " +
                          std::string(ASC_SOURCE_DIR) + "/data/prompts/" + prompt + ".txt " +
                          std::to_string(max_len) + " " + recs + " " + out + " 1>&2";
  return std::system(cmd.c_str());
}

std::string build(const std::string& recs, const std::string& tok, const std::string& prompt,
                  int64_t max_len, bool compat, const std::string& name) {
  CorpusBuildOptions o;
  o.inputs = {recs};
  o.tokenizer = tok;
  o.stage = "instruct";
  o.prompt_template = prompt;
  o.upstream_compat = compat;
  o.max_len = max_len;
  o.out = dir() + "/" + name + ".h5";
  build_corpus(o);
  return o.out;
}
}  // namespace

TEST(UpstreamCompat, SentencePieceRowsEqualUpstreamCollator) {
  std::vector<SynthExample> ex;
  const std::string recs = records(&ex);
  const std::string tok = demo_tokenizer(ex);
  for (int64_t max_len : {2048, 160}) {  // 160: most examples cut from the right, answers too
    SCOPED_TRACE(max_len);
    Corpus c(build(recs, tok, "asclepius", max_len, true, "spm" + std::to_string(max_len)));
    EXPECT_TRUE(c.info().upstream_compat);
    EXPECT_EQ(c.info().prompt_template, "asclepius");
    if (max_len == 160) EXPECT_GT(c.info().truncated, 12);
    EXPECT_EQ(run_oracle("slow", tok, "asclepius", max_len, recs, our_rows(c, 1, true, 4)), 0);
  }
}

TEST(UpstreamCompat, Llama3TokenizerJsonRowsEqualUpstreamCollator) {
  std::vector<SynthExample> ex;
  const std::string recs = records(&ex);
  const std::string tok = fixture("llama3.2");
  for (int64_t max_len : {2048, 200}) {
    SCOPED_TRACE(max_len);
    Corpus c(build(recs, tok, "asclepius-space", max_len, true, "l3" + std::to_string(max_len)));
    EXPECT_EQ(c.info().prompt_template, "asclepius-space");
    EXPECT_EQ(
        run_oracle("fast", tok, "asclepius-space", max_len, recs, our_rows(c, 128000, true, 3)), 0);
  }
}

TEST(UpstreamCompat, DefaultBuildDiffersByTheOnePromptToken) {
  std::vector<SynthExample> ex;
  const std::string recs = records(&ex, /*crlf=*/false);
  const std::string tok = demo_tokenizer(ex);
  Corpus ours(build(recs, tok, "asclepius", 2048, false, "default"));
  Corpus up(build(recs, tok, "asclepius", 2048, true, "compat"));
  EXPECT_FALSE(ours.info().upstream_compat);
  ASSERT_EQ(ours.doc_offsets(), up.doc_offsets());  // the same tokens
  const int64_t n = ours.info().num_tokens;
  std::vector<uint8_t> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  ours.read_loss_mask(0, n, a.data());
  up.read_loss_mask(0, n, b.data());
  for (size_t d = 0; d + 1 < ours.doc_offsets().size(); ++d) {
    int64_t ca = 0, cb = 0;
    for (int64_t t = ours.doc_offsets()[d]; t < ours.doc_offsets()[d + 1]; ++t)
      ca += a[size_t(t)], cb += b[size_t(t)];
    EXPECT_EQ(cb, ca + 1) << "document " << d << ": upstream's loss covers one more token";
  }
}

TEST(UpstreamCompat, PromptTemplatesAreCheckedAndRecorded) {
  EXPECT_EQ(PromptTemplate::builtin("asclepius")
                .text.substr(PromptTemplate::builtin("asclepius").text.size() - 18),
            "[Instruction End]\n");
  EXPECT_EQ(PromptTemplate::builtin("asclepius-space")
                .text.substr(PromptTemplate::builtin("asclepius-space").text.size() - 19),
            "[Instruction End] \n");
  EXPECT_NE(PromptTemplate::builtin("asclepius").xxh64,
            PromptTemplate::builtin("asclepius-space").xxh64);
  // The default corpus of old (no attribute) reads as the default template: see corpus.cpp.
  const std::string bad = dir() + "/bad_prompt.txt";
  write_file_atomic(bad, "Note: {note}\nAnswer:");
  try {
    PromptTemplate::resolve(bad, "--prompt-template");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds 0 {question} placeholders"));
    EXPECT_THAT(e.what(), HasSubstr("--prompt-template"));
  }
  try {
    PromptTemplate::resolve("asclepius-spaces", "data.prompt_template");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("did you mean asclepius-space?"));
  }
  // A user's file: question before note is fine.
  const std::string mine = dir() + "/mine.txt";
  write_file_atomic(mine, "Q: {question}\nN: {note}\nA:");
  const auto t = PromptTemplate::resolve(mine, "--prompt-template");
  EXPECT_EQ(t.render("\nthe note\n", "why?"), "Q: why?\nN: the note\nA:");
}

// Upstream's answer filters (make_instruction_dataset.py): a row is dropped when its note,
// question or answer mentions one of the phrases (any case), or its answer ends with "?".
TEST(UpstreamCompat, AnswerFiltersDropWhatUpstreamDrops) {
  std::vector<SynthExample> ex = synthesize_notes({12, 3, 1});
  ex[1].answer = "As an AI Language model I cannot say.";  // answer, mixed case
  ex[2].question = "What does THE MODEL of care say?";     // question
  ex[3].note += "\nThe NER model output was reviewed.";    // note
  ex[4].answer = "Was it the left leg?  \n";               // ends with "?" (trailing space)
  ex[5].answer = "The model? No: the left leg.";           // phrase and "?" inside: phrase
  ex[6].answer = "Sepsis (is it?) was ruled out.";         // "?" inside only: kept
  std::string jsonl;
  for (const auto& e : ex)
    jsonl +=
        nlohmann::json{{"note", e.note}, {"question", e.question}, {"answer", e.answer}}.dump() +
        "\n";
  const std::string recs = dir() + "/filters.jsonl";
  write_file_atomic(recs, jsonl);
  std::vector<SynthExample> tok_ex;
  records(&tok_ex);
  CorpusBuildOptions o;
  o.inputs = {recs};
  o.tokenizer = demo_tokenizer(tok_ex);
  o.stage = "instruct";
  o.upstream_filters = true;
  o.out = dir() + "/filtered.h5";
  const auto rep = build_corpus(o);
  EXPECT_EQ(rep.filtered_self_reference, 4);   // rows 1, 2, 3, 5
  EXPECT_EQ(rep.filtered_question_answer, 1);  // row 4
  EXPECT_EQ(Corpus(o.out).info().num_docs, 12 - 5);
  o.upstream_filters = false;
  o.out = dir() + "/unfiltered.h5";
  EXPECT_EQ(Corpus((build_corpus(o), o.out)).info().num_docs, 12);
}
