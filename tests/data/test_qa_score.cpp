// QA scoring (data/qa_score.h): SQuAD normalization, exact match and token F1, ROUGE-L as
// rouge_score computes it, the prediction-field rules of answer files, bad lines by line number,
// and per-task means. Expected values are worked out by hand in the comments.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "data/qa_score.h"

using namespace asc;
using testing::ElementsAre;
using testing::HasSubstr;

namespace {
std::string pick_err(const std::string& data, const std::string& model = {}) {
  try {
    return "<no error: " + pick_prediction_field(data, "ans.jsonl", model) + ">";
  } catch (const Error& e) {
    return e.message();
  }
}
}  // namespace

TEST(QaScore, NormalizeLowersDropsPunctuationArticlesAndSpaces) {
  // lower + punctuation out: "the patients  bp was 12080"; "the" -> " "; spaces collapsed.
  EXPECT_EQ(squad_normalize("The Patient's  BP, was: 120/80!"), "patients bp was 12080");
  EXPECT_EQ(squad_normalize("An apple a DAY"), "apple day");
  EXPECT_EQ(squad_normalize("theater another bathe"), "theater another bathe");  // whole words
  EXPECT_EQ(squad_normalize("the-the"), "thethe");  // punctuation goes before the articles
  EXPECT_EQ(squad_normalize("  x\t\n\r y  "), "x y");
  EXPECT_EQ(squad_normalize("A"), "");
  EXPECT_EQ(squad_normalize(""), "");
  EXPECT_EQ(squad_normalize("!?.,"), "");
}

TEST(QaScore, NormalizeNonAscii) {
  EXPECT_EQ(squad_normalize("th\xC3\xA9 dose"), "th\xC3\xA9 dose");  // "thé": é is a letter
  // Curly quotes are not word characters, so "the" between them is an article (-> " ").
  EXPECT_EQ(squad_normalize("\xE2\x80\x9Cthe\xE2\x80\x9D dose"), "\xE2\x80\x9C \xE2\x80\x9D dose");
  // NO-BREAK SPACE and IDEOGRAPHIC SPACE split words, as Python's str.split() does.
  EXPECT_EQ(squad_normalize("a\xC2\xA0"
                            "b\xE3\x80\x80"
                            "c"),
            "b c");
  EXPECT_EQ(squad_normalize("\xC3\x89"
                            "CHO"),
            "\xC3\x89"
            "cho");  // ASCII-only lower-casing
}

TEST(QaScore, ExactMatch) {
  EXPECT_EQ(exact_match("The cat.", "cat"), 1.0);
  EXPECT_EQ(exact_match("cats", "cat"), 0.0);
  EXPECT_EQ(exact_match("", "the"), 1.0);  // both normalize to ""
  EXPECT_EQ(exact_match("", "x"), 0.0);
}

TEST(QaScore, TokenF1) {
  // pred tokens [cat sat on mat], ref [cat on hat]: 2 shared; P=1/2, R=2/3, F1=4/7.
  EXPECT_DOUBLE_EQ(token_f1("the cat sat on the mat", "a cat on a hat"), 4.0 / 7.0);
  // Multiplicity: [pain pain pain] vs [pain] share 1: P=1/3, R=1, F1=1/2.
  EXPECT_DOUBLE_EQ(token_f1("pain pain pain", "pain"), 0.5);
  // [pain pain] vs [pain pain fever] share 2: P=1, R=2/3, F1=4/5.
  EXPECT_DOUBLE_EQ(token_f1("pain pain", "pain, pain, fever"), 0.8);
  EXPECT_EQ(token_f1("red blue", "green"), 0.0);
  EXPECT_EQ(token_f1("", ""), 1.0);      // both empty
  EXPECT_EQ(token_f1("the", "?"), 1.0);  // both normalize to no tokens
  EXPECT_EQ(token_f1("", "x"), 0.0);
  EXPECT_EQ(token_f1("x", ""), 0.0);
}

TEST(QaScore, RougeTokens) {
  // Lower-cased; everything outside [a-z0-9] separates, so "ñandú" keeps "and", "café" "caf".
  EXPECT_THAT(rouge_tokens("BP: 120/80, mg/dL; \xC3\x91"
                           "and\xC3\xBA caf\xC3\xA9"),
              ElementsAre("bp", "120", "80", "mg", "dl", "and", "caf"));
  EXPECT_THAT(rouge_tokens("\xE2\x84\xAA"
                           "elvin"),
              ElementsAre("kelvin"));  // KELVIN SIGN -> k
  // I WITH DOT ABOVE lower-cases to "i" + U+0307 (a separator).
  EXPECT_THAT(rouge_tokens("\xC4\xB0stanbul"), ElementsAre("i", "stanbul"));
  EXPECT_TRUE(rouge_tokens("").empty());
  EXPECT_TRUE(rouge_tokens("--- \xC3\xA9 !").empty());
}

TEST(QaScore, RougeL) {
  // pred [the patient was given aspirin daily] (6), ref [patient given daily aspirin] (4):
  // LCS "patient given aspirin" = 3, not contiguous; P=1/2, R=3/4, F=0.6.
  EXPECT_DOUBLE_EQ(rouge_l("The patient was given aspirin daily.", "patient given daily aspirin"),
                   0.6);
  // Articles count in ROUGE: [a b] vs [b a] LCS 1: P=R=1/2.
  EXPECT_DOUBLE_EQ(rouge_l("a b", "b a"), 0.5);
  EXPECT_EQ(rouge_l("same words", "Same, WORDS!"), 1.0);
  EXPECT_EQ(rouge_l("\xC3\x89"
                    "cho",
                    "\xC3\xA9"
                    "cho"),
            1.0);  // both tokenize to [cho]
  EXPECT_EQ(rouge_l("red", "blue"), 0.0);
  EXPECT_EQ(rouge_l("", ""), 0.0);  // rouge_score: 0 when either side is empty
  EXPECT_EQ(rouge_l("x", "!!!"), 0.0);
}

TEST(QaScore, PicksTheOnlyPredictionField) {
  const std::string line =
      R"({"note":"n","question":"q","answer":"a","task":"t","llama_answer":"p"})"
      "\n";
  EXPECT_EQ(pick_prediction_field(line, "f"), "llama_answer");
  EXPECT_EQ(pick_prediction_field(line, "f", "llama"), "llama_answer");
  // The first line that is an object decides; a bad first line is passed over.
  EXPECT_EQ(pick_prediction_field("{oops\n\n" + line, "f"), "llama_answer");
}

TEST(QaScore, PredictionFieldErrorsNameFileAndCandidates) {
  const std::string two = R"({"answer":"a","a_answer":"x","b_answer":"y"})";
  EXPECT_THAT(pick_err(two), HasSubstr("ans.jsonl: line 1: several prediction fields: "
                                       "a_answer, b_answer"));
  EXPECT_EQ(pick_err(two, "b"), "<no error: b_answer>");
  EXPECT_THAT(pick_err(two, "c"),
              HasSubstr("ans.jsonl: line 1: no prediction field 'c_answer' (fields ending in "
                        "_answer: a_answer, b_answer)"));
  EXPECT_THAT(pick_err("\n"
                       R"({"answer":"a","question":"q"})"),
              HasSubstr("ans.jsonl: line 2: no prediction field"));
  EXPECT_THAT(pick_err("[1]\nnot json\n"), HasSubstr("ans.jsonl: no line is a JSON object"));
}

TEST(QaScore, BadLinesAreListedWithLineNumbersAndSkipped) {
  const std::string data = R"({"answer":"fever","m_answer":"fever","task":"T"})"
                           "\n"
                           "\n"                   // 2: empty, silent
                           "{bad json\n"          // 3
                           "[1, 2]\n"             // 4
                           R"({"m_answer":"x"})"  // 5: no answer
                           "\n"
                           R"({"answer":"x","m_answer":7})"  // 6: prediction not a string
                           "\n"
                           R"({"answer":"x","m_answer":"x","task":5})"  // 7: task not a string
                           "\n"
                           R"({"answer":"x","m_answer":"x","task":null})"  // 8: good, task "(none)"
                           "\n";
  const QaScores s = score_answers(data, "f.jsonl");
  EXPECT_EQ(s.prediction_field, "m_answer");
  ASSERT_EQ(s.bad_lines.size(), 5u);
  EXPECT_EQ(s.bad_lines[0].line, 3);
  EXPECT_THAT(s.bad_lines[0].problem, HasSubstr("invalid JSON"));
  EXPECT_EQ(s.bad_lines[1].line, 4);
  EXPECT_EQ(s.bad_lines[1].problem, "not a JSON object");
  EXPECT_EQ(s.bad_lines[2].line, 5);
  EXPECT_EQ(s.bad_lines[2].problem, "missing field 'answer'");
  EXPECT_EQ(s.bad_lines[3].line, 6);
  EXPECT_EQ(s.bad_lines[3].problem, "field 'm_answer' is not a string");
  EXPECT_EQ(s.bad_lines[4].line, 7);
  EXPECT_EQ(s.bad_lines[4].problem, "field 'task' is not a string");
  EXPECT_EQ(s.overall.n, 2);
  ASSERT_EQ(s.per_task.count("(none)"), 1u);
  EXPECT_EQ(s.per_task.at("(none)").n, 1);
}

TEST(QaScore, PerTaskAndOverallMeans) {
  const std::string data = R"({"answer":"fever","p_answer":"Fever","task":"A"})"
                           "\n"  // 1, 1, 1
                           R"({"answer":"fever","p_answer":"fever cough","task":"A"})"
                           "\n"  // EM 0; F1 and ROUGE-L: P=1/2, R=1 -> 2/3
                           R"({"answer":"x","p_answer":"","task":"B"})"
                           "\n"  // 0, 0, 0
                           R"({"answer":"Cough.","p_answer":"cough"})"
                           "\n";  // 1, 1, 1, task "(none)"
  const QaScores s = score_answers(data, "f.jsonl");
  EXPECT_TRUE(s.bad_lines.empty());
  ASSERT_EQ(s.per_task.size(), 3u);
  const QaMeans& a = s.per_task.at("A");
  EXPECT_EQ(a.n, 2);
  EXPECT_DOUBLE_EQ(a.em, 0.5);
  EXPECT_DOUBLE_EQ(a.f1, 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(a.rouge_l, 5.0 / 6.0);
  EXPECT_EQ(s.per_task.at("B").n, 1);
  EXPECT_EQ(s.per_task.at("B").f1, 0.0);
  EXPECT_EQ(s.per_task.at("(none)").em, 1.0);
  EXPECT_EQ(s.overall.n, 4);
  EXPECT_DOUBLE_EQ(s.overall.em, 0.5);
  EXPECT_DOUBLE_EQ(s.overall.f1, 2.0 / 3.0);  // (1 + 2/3 + 0 + 1) / 4
  EXPECT_DOUBLE_EQ(s.overall.rouge_l, 2.0 / 3.0);

  const auto j = nlohmann::json::parse(qa_scores_json(s));
  EXPECT_EQ(j["prediction_field"], "p_answer");
  EXPECT_EQ(j["overall"]["n"], 4);
  EXPECT_DOUBLE_EQ(j["per_task"]["A"]["f1"].get<double>(), 5.0 / 6.0);
  EXPECT_TRUE(j["bad_lines"].empty());

  const std::string table = format_qa_table(s);
  EXPECT_THAT(table, HasSubstr("task          n      EM      F1  ROUGE-L\n"));
  EXPECT_THAT(table, HasSubstr("A             2   50.00   83.33    83.33\n"));
  EXPECT_THAT(table, HasSubstr("overall       4   50.00   66.67    66.67\n"));
}

TEST(QaScore, MissingFileNamesIt) {
  try {
    score_answers_file("/nonexistent/answers.jsonl");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("/nonexistent/answers.jsonl"));
  }
}

// Issue 23: the LCS is quadratic, so a 10 MB answer would run for minutes; each side is scored
// on its first kRougeMaxTokens tokens, and the caller is told.
TEST(QaScore, RougeLOfHugeAnswersIsBoundedAndSaysSo) {
  std::string huge;
  for (int i = 0; i < 2000000; ++i) huge += "word ";
  bool cut = false;
  EXPECT_DOUBLE_EQ(rouge_l(huge, huge, &cut), 1.0);  // the first 10,000 tokens of each agree
  EXPECT_TRUE(cut);
  EXPECT_NEAR(rouge_l("word x", huge, &cut), 2.0 * 0.5 * (1.0 / 10000) / (0.5 + 1.0 / 10000),
              1e-12);
  EXPECT_TRUE(cut);
  EXPECT_DOUBLE_EQ(rouge_l("a b c", "a c", &cut), 0.8);
  EXPECT_FALSE(cut);
  const QaScores s =
      score_answers(nlohmann::json({{"answer", "a"}, {"m_answer", huge}}).dump() + "\n" +
                        nlohmann::json({{"answer", "a"}, {"m_answer", "a"}}).dump() + "\n",
                    "f.jsonl");
  EXPECT_EQ(s.rouge_truncated, 1);
  EXPECT_EQ(s.overall.n, 2);
}
