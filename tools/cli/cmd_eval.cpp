// `asclepius eval ...`: evaluation of a trained model's outputs, one sibling subcommand each.
//   eval qa --answers FILE [--model-name NAME] [--json OUT]: SQuAD EM / token F1 and ROUGE-L of
//     generated answers (JSON Lines with `answer` and `<model>_answer`), overall and per task;
//     exit 1, after the table, when lines of the file were bad (data/qa_score.h).
//   eval ppl --model DIR --corpus heldout.h5: perplexity of held-out notes (trainer/eval/).
#include <iostream>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/error.h"
#include "common/fs.h"
#include "data/qa_score.h"
#include "eval/perplexity.h"
#include "generate/answer.h"

namespace asc::cli {
namespace {

struct EvalQaArgs {
  std::string answers, model_name, json_out;
};

void run_eval_qa(const EvalQaArgs& a) {
  if (!a.json_out.empty()) check_output_file("--json", a.json_out, {a.answers});
  const QaScores s = score_answers_file(a.answers, a.model_name);
  std::cout << fmt::format("{}: predictions from '{}'\n", a.answers, s.prediction_field)
            << format_qa_table(s);
  if (s.rouge_truncated > 0)
    std::cerr << fmt::format(
        "warning: {} answer(s) longer than {} tokens: ROUGE-L scored their first {} tokens\n",
        s.rouge_truncated, kRougeMaxTokens, kRougeMaxTokens);
  if (!a.json_out.empty()) write_file_atomic(a.json_out, qa_scores_json(s));
  if (s.bad_lines.empty()) return;
  std::string lines;
  for (const auto& b : s.bad_lines) {
    std::cerr << fmt::format("{}:{}: skipped: {}\n", a.answers, b.line, b.problem);
    lines += (lines.empty() ? "" : ", ") + std::to_string(b.line);
  }
  ASC_FAIL_HINT("fix or remove those lines",
                "{}: {} bad line(s) skipped (line {}); scores are over "
                "the {} good lines",
                a.answers, s.bad_lines.size(), lines, s.overall.n);
}

void add_eval_qa(CLI::App* eval) {
  auto* qa = eval->add_subcommand(
      "qa", "Score generated answers: SQuAD exact match and token F1, ROUGE-L, per task");
  auto a = std::make_shared<EvalQaArgs>();
  qa->add_option("--answers", a->answers,
                 "JSON Lines: `answer` (reference), `task`, and the prediction `<model>_answer`")
      ->required()
      ->check(CLI::ExistingFile);
  qa->add_option("--model-name", a->model_name,
                 "Read predictions from NAME_answer (default: the only *_answer field)");
  qa->add_option("--json", a->json_out, "Also write the scores (fractions 0..1) to this JSON file");
  qa->callback([a] { run_eval_qa(*a); });
}

struct EvalPplArgs {
  std::string model, corpus, dtype = "fp32", json_out;
  PerplexityOptions opts;
};

void run_eval_ppl(const EvalPplArgs& a) {
  if (!a.json_out.empty()) check_output_file("--json", a.json_out, {a.corpus, a.model});
  std::string dir;
  auto model =
      load_model_for_inference(a.model, a.dtype == "bf16" ? at::kBFloat16 : at::kFloat, &dir);
  Corpus corpus(a.corpus);
  const PerplexityResult r = corpus_perplexity(model, corpus, a.opts);
  std::cout << fmt::format(
      "{} on {} ({}): perplexity {:.4f}, mean loss {:.4f} over {} tokens "
      "in {} sequences\n",
      dir, a.corpus, corpus.info().stage, r.perplexity(), r.mean_loss(), r.tokens, r.sequences);
  if (!a.json_out.empty()) {
    const nlohmann::json j = {{"model", dir},
                              {"corpus", a.corpus},
                              {"perplexity", r.perplexity()},
                              {"mean_loss", r.mean_loss()},
                              {"tokens", r.tokens},
                              {"sequences", r.sequences}};
    write_file_atomic(a.json_out, j.dump(2) + "\n");
  }
}

void add_eval_ppl(CLI::App* eval) {
  auto* cmd = eval->add_subcommand("ppl", "Perplexity of a model on a held-out HDF5 corpus");
  auto a = std::make_shared<EvalPplArgs>();
  cmd->add_option("--model", a->model, "Run directory, step checkpoint or Hugging Face directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--corpus", a->corpus, "Corpus built by `asclepius corpus build`")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--seq-len", a->opts.seq_len,
                  "Window length for pretrain corpora (default: the model's context)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  cmd->add_option("--batch-size", a->opts.batch_size, "Sequences per forward pass")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-sequences", a->opts.max_sequences, "Evaluate only the first N (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dtype", a->dtype, "Compute dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--json", a->json_out, "Also write the result as JSON");
  cmd->callback([a] { run_eval_ppl(*a); });
}

}  // namespace

void add_eval(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Evaluate model outputs");
  eval->require_subcommand(1);
  add_eval_qa(eval);
  add_eval_ppl(eval);
}

}  // namespace asc::cli
