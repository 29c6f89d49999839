// judge.h — upstream's GPT-4 evaluation as files (no network, no libtorch):
//   export: answer files (JSON Lines from `asclepius generate`, one per model or several models
//     per file) → OpenAI-compatible batch requests (chat completions, temperature 0), one per
//     (note, question), the candidates shuffled into anonymous agents A, B, C, ... by a seeded
//     order that a sidecar file records (upstream's eval/gpt4_evaluate.py, its prompt and rubric);
//   import: the judge's responses → scores per model and per task type (mean, distribution,
//     count); a response that is not exactly one score 1-4 per agent on its first line is listed,
//     never guessed.
// Candidates are upstream's: every field whose name contains "answer" ("<model>_answer" → model
// "<model>"; the dataset's own "answer" → "reference").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace asc {

struct JudgeExportOptions {
  std::vector<std::string> inputs;  // answer files (.jsonl), the same lines in the same order
  std::string out;                  // requests .jsonl; the agents' order goes to <out>.agents.jsonl
  std::string prompt = "asclepius-gpt4";  // a built-in judge prompt (data/judge/) or a file
  std::string judge_model = "gpt-4-0314";
  int64_t max_tokens = 2048;
  uint64_t seed = 0;
};
struct JudgeExportReport {
  int64_t requests = 0;
  std::vector<std::string> models;  // in column order
};
JudgeExportReport judge_export(const JudgeExportOptions& o);

struct ScoreStats {
  int64_t count = 0;
  double mean = 0;
  int64_t distribution[4] = {0, 0, 0, 0};  // scores 1..4
};
struct JudgeImportReport {
  std::map<std::string, ScoreStats> per_model;
  std::map<std::string, std::map<std::string, ScoreStats>> per_task;  // task -> model -> stats
  std::vector<std::pair<std::string, std::string>> unparsed;          // custom_id, why
  int64_t scored = 0;
};
// `requests`: the export's .jsonl (its .agents.jsonl beside it); `responses`: one or more
// JSON Lines files, each line an OpenAI batch output line ({"custom_id", "response": {"body":
// {"choices": [{"message": {"content"}}]}}}) or {"custom_id", "content"}. Throws asc::Error
// naming ids that are unknown, duplicated or missing.
JudgeImportReport judge_import(const std::string& requests,
                               const std::vector<std::string>& responses);
// Scores as JSON ({"models": {m: {mean, count, distribution}}, "tasks": {...}, "unparsed": [...]})
// and as a table for people.
std::string judge_report_json(const JudgeImportReport& r);
std::string judge_report_table(const JudgeImportReport& r);

// Parses a judge's reply: the first line's whitespace-separated tokens (quotes stripped) must
// be exactly n integers 1..4. Returns "" and fills scores, or why not.
std::string parse_judge_scores(const std::string& content, size_t n, std::vector<int>* scores);

}  // namespace asc
