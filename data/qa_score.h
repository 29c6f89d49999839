// qa_score.h — scoring generated answers against references: SQuAD exact match and token F1,
// and ROUGE-L, overall and per task (`asclepius eval qa`). No libtorch.
//
// Answer files are JSON Lines, one object per line: `answer` (the reference), `task` (optional;
// missing or null counts as "(none)"), `note` and `question` (carried, not needed here), and the
// prediction in `<model>_answer`. Bad lines (invalid JSON, not an object, a missing or non-string
// field) are skipped and listed with their 1-based line number; empty lines are skipped silently.
//
// Numerics match the Python references the oracle test (tests/oracle/check_qa_score.py) runs:
//  * squad_normalize / exact_match / token_f1: the official SQuAD evaluation (normalize_answer,
//    compute_exact, compute_f1 of the v2.0 script, which equals v1.1 except that an empty token
//    list scores F1 = 1 when both sides are empty and 0 otherwise; v1.1 scores 0 for both empty).
//    Deviations, on non-ASCII text only: lower-casing is ASCII (Python lower-cases every script:
//    "É" vs "é" is a mismatch here); for the \b of the article rule, non-ASCII code points count
//    as word characters except Unicode white space and the punctuation/symbol ranges listed in
//    qa_score.cpp (Latin-1 signs, combining accents, general punctuation, arrows, math, box and
//    dingbats, CJK and full-width punctuation, emoji), where the rule is exact.
//  * rouge_l: the F-measure of `rouge_score` (Google) RougeScorer(['rougeL'], use_stemmer=False),
//    exact for any UTF-8 input.
// Thread-safety: pure functions; nothing shared.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace asc {

// SQuAD normalize_answer: lower-case, drop ASCII punctuation (Python's string.punctuation),
// replace the whole words a/an/the by a space, collapse white space (Python's str.split()).
std::string squad_normalize(const std::string& s);
// 1.0 if the normalized strings are equal, else 0.0.
double exact_match(const std::string& pred, const std::string& ref);
// Bag-of-words F1 (with multiplicity) of the normalized white-space tokens. Empty token lists:
// 1.0 if both are empty, else 0.0.
double token_f1(const std::string& pred, const std::string& ref);
// rouge_score's tokens: lower-case, every character outside [a-z0-9] becomes a separator.
std::vector<std::string> rouge_tokens(const std::string& s);
// ROUGE-L F-measure of the longest common token subsequence: P = lcs/|pred|, R = lcs/|ref|,
// F = 2PR/(P+R); 0.0 when either side has no tokens or nothing is in common. The LCS is
// quadratic, so each side is scored on its first kRougeMaxTokens tokens (the paper's answers are
// at most 400 new tokens); *truncated (when given) says whether a side was cut.
constexpr size_t kRougeMaxTokens = 10000;
double rouge_l(const std::string& pred, const std::string& ref, bool* truncated = nullptr);

// Means over a group of answers, as fractions in [0, 1] (0 when n == 0).
struct QaMeans {
  int64_t n = 0;
  double em = 0, f1 = 0, rouge_l = 0;
};

struct QaBadLine {
  int64_t line = 0;  // 1-based line number in the file
  std::string problem;
};

struct QaScores {
  std::string prediction_field;  // e.g. "asclepius_answer"
  QaMeans overall;
  std::map<std::string, QaMeans> per_task;  // by task name; "(none)" for lines without one
  std::vector<QaBadLine> bad_lines;
  int64_t rouge_truncated = 0;  // answers whose ROUGE-L saw only the first kRougeMaxTokens
};

// The field holding the predictions of JSON Lines text `data` (named `name` in errors):
// "<model_name>_answer" when model_name is set, else the only field ending in "_answer" other
// than "answer" in the first line that is a JSON object. Throws asc::Error naming the file and
// the candidate fields when that field is absent or not unique, or when no line is an object.
std::string pick_prediction_field(const std::string& data, const std::string& name,
                                  const std::string& model_name = {});
// Scores every good line of `data`; bad lines are collected in QaScores::bad_lines.
QaScores score_answers(const std::string& data, const std::string& name,
                       const std::string& model_name = {});
// The same, reading the file at `path` (errors name the path).
QaScores score_answers_file(const std::string& path, const std::string& model_name = {});

// {"overall": {n, em, f1, rouge_l}, "per_task": {task: {...}}, "bad_lines": [{line, problem}],
//  "prediction_field": "..."}; the means are fractions in [0, 1].
std::string qa_scores_json(const QaScores& s);
// An aligned table: task, n, EM, F1, ROUGE-L (percentages), one row per task, then "overall".
std::string format_qa_table(const QaScores& s);

}  // namespace asc
