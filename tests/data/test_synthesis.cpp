// The data pipeline's text side (data/synthesis.h): Python str.format filling and its refusals,
// the built-in prompts' placeholders, tasks files, the seeded example draw of question
// bootstrapping, reply tidying and upstream's answer filter. Prompts filled character for
// character as upstream's Python renders them: tests/oracle/check_synthesize.py.
#include <fstream>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/synthesis.h"

using namespace asc;
using testing::HasSubstr;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}
std::string temp_file(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}
}  // namespace

TEST(Synthesis, FillIsPythonFormatInOnePass) {
  SynthPrompt p{"t", "A {note} {{x}} B {question}}}", ""};
  // A value holding a placeholder stays as written; {{ and }} are literal braces.
  EXPECT_EQ(p.fill({{"note", "{question}"}, {"question", "q"}}), "A {question} {x} B q}");
}

TEST(Synthesis, TemplateFieldsRefuseWhatPythonRefuses) {
  EXPECT_EQ(template_fields("{a} {{b}} {c}", "w"), (std::vector<std::string>{"a", "c"}));
  EXPECT_THAT(error_of([] { template_fields("x } y", "w"); }), HasSubstr("a lone '}'"));
  EXPECT_THAT(error_of([] { template_fields("x { y", "w"); }), HasSubstr("never closed"));
  EXPECT_THAT(error_of([] { template_fields("{0}", "w"); }), HasSubstr("not a plain name"));
  EXPECT_THAT(error_of([] { template_fields("{x!r}", "w"); }), HasSubstr("not a plain name"));
}

TEST(Synthesis, BuiltInPromptsHoldTheirStagesPlaceholders) {
  EXPECT_NO_THROW(SynthPrompt::resolve("upstream", "notes", {"pmc"}, "--prompt"));
  EXPECT_NO_THROW(
      SynthPrompt::resolve("upstream", "questions", {"task", "note", "samples"}, "--prompt"));
  EXPECT_NO_THROW(SynthPrompt::resolve("upstream", "answers", {"note", "question"}, "--prompt"));
  EXPECT_NO_THROW(SynthPrompt::resolve("llama3", "chat", {"prompt"}, "--chat-template"));
  EXPECT_NO_THROW(SynthPrompt::resolve("mistral", "chat", {"prompt"}, "--chat-template"));
  // Upstream's prompts end without a newline; the answer prompt keeps its trailing space.
  const auto a = SynthPrompt::resolve("upstream", "answers", {"note", "question"}, "--prompt");
  EXPECT_EQ(a.text.substr(a.text.size() - 9), "Response:");
  EXPECT_THAT(a.text, HasSubstr("using the given information. \n"));
}

TEST(Synthesis, PromptFilesMissingOrAddingAPlaceholderAreRefusedByName) {
  const auto missing = temp_file("q_missing.txt", "Task {task}, note {note}.");
  EXPECT_THAT(error_of([&] {
                SynthPrompt::resolve(missing, "questions", {"task", "note", "samples"}, "--prompt");
              }),
              HasSubstr("has no {samples} placeholder"));
  const auto extra = temp_file("a_extra.txt", "{note} {question} {answer}");
  EXPECT_THAT(error_of([&] {
                SynthPrompt::resolve(extra, "answers", {"note", "question"}, "--prompt");
              }),
              HasSubstr("unknown placeholder {answer}"));
  EXPECT_THAT(error_of([] { SynthPrompt::resolve("upstrem", "notes", {"pmc"}, "--prompt"); }),
              HasSubstr("neither a built-in notes text (upstream) nor a file"));
}

TEST(Synthesis, UpstreamTasksAreTheEightWithFiveSamplesEach) {
  std::string h;
  const auto tasks = load_synth_tasks("upstream", &h);
  ASSERT_EQ(tasks.size(), 8u);
  EXPECT_EQ(tasks[0].name, "Named Entity Recognition");
  EXPECT_EQ(tasks[7].name, "Question Answering");
  for (const auto& t : tasks) EXPECT_EQ(t.samples.size(), 5u) << t.name;
  EXPECT_EQ(h.size(), 16u);
}

TEST(Synthesis, TasksFilesNeedThreeSamplesAndAHeader) {
  EXPECT_THAT(error_of([] { load_synth_tasks(temp_file("t1.txt", "a question\n")); }),
              HasSubstr("before any '# Task' line"));
  EXPECT_THAT(error_of([] { load_synth_tasks(temp_file("t2.txt", "# T\nq1\nq2\n")); }),
              HasSubstr("task 'T' has 2 example question(s)"));
  EXPECT_EQ(load_synth_tasks(temp_file("t3.txt", "# T\r\nq1\r\n\r\nq2\nq3\n"))[0].samples,
            (std::vector<std::string>{"q1", "q2", "q3"}));
}

TEST(Synthesis, ExamplesAreThreeFixedThenUpToTwoFromThePool) {
  const SynthTask t{"T", {"s0", "s1", "s2", "s3", "s4"}};
  const std::set<std::string> fixed(t.samples.begin(), t.samples.end());
  for (size_t pool_size : {0, 1, 2, 7})
    for (uint64_t seed = 0; seed < 50; ++seed) {
      std::vector<std::string> pool;
      for (size_t i = 0; i < pool_size; ++i) pool.push_back("p" + std::to_string(i));
      const auto ex = draw_examples(t, pool, seed);
      ASSERT_EQ(ex.size(), 3 + std::min<size_t>(2, pool_size));
      EXPECT_EQ(std::set<std::string>(ex.begin(), ex.end()).size(), ex.size());  // distinct
      for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(fixed.count(ex[i]));
      for (size_t i = 3; i < ex.size(); ++i) EXPECT_EQ(ex[i][0], 'p');
      EXPECT_EQ(ex, draw_examples(t, pool, seed));  // seeded
    }
  // Every fixed sample is drawn over many seeds (the draw is not stuck on a prefix).
  std::set<std::string> seen;
  for (uint64_t seed = 0; seed < 200; ++seed)
    for (const auto& e : draw_examples(t, {}, seed)) seen.insert(e);
  EXPECT_EQ(seen, fixed);
}

TEST(Synthesis, RngBelowIsUniformEnough) {
  SynthRng r(42);
  std::vector<int> counts(8);
  for (int i = 0; i < 80000; ++i) ++counts[r.below(8)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);  // > 5 standard deviations (~94)
}

TEST(Synthesis, TidyAndUpstreamFilter) {
  EXPECT_EQ(tidy_reply("\n  What is CAD?\n\n"), "What is CAD?");
  EXPECT_EQ(tidy_reply(" \t\n"), "");
  EXPECT_EQ(upstream_filter_reason("note", "q", "As an AI Language model, no."), "self_reference");
  EXPECT_EQ(upstream_filter_reason("the Clinical Language here", "q", "fine."), "self_reference");
  EXPECT_EQ(upstream_filter_reason("n", "what did THE MODEL say", "fine."), "self_reference");
  EXPECT_EQ(upstream_filter_reason("n", "q", "Could you clarify?"), "question_mark");
  EXPECT_EQ(upstream_filter_reason("n", "q", "Could you clarify?  \n"), "question_mark");
  EXPECT_EQ(upstream_filter_reason("n", "q?", "It is CAD."), "");
}
