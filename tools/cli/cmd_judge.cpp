// cmd_judge.cpp — `asclepius judge export|import|run`: upstream's GPT-4 evaluation as files
// (data/judge.h): answer files → OpenAI-compatible batch requests; the judge's responses →
// scores per model and task type.
#include <iostream>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/error.h"
#include "common/fs.h"
#include "data/judge.h"

namespace asc::cli {

void add_judge(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "judge", "Score models' answers with a judge model, as upstream's GPT-4 evaluation");
  cmd->require_subcommand(1);
  auto o = std::make_shared<JudgeExportOptions>();
  auto* ex = cmd->add_subcommand(
      "export", "Answer files -> judge requests (OpenAI batch JSONL, chat completions)");
  ex->add_option("--answers", o->inputs,
                 "Answer files from `asclepius generate --output` (one per model, same input)")
      ->required()
      ->check(CLI::ExistingFile);
  ex->add_option("--out", o->out, "Requests .jsonl (the agents' order goes to <out>.agents.jsonl)")
      ->required();
  ex->add_option("--seed", o->seed, "Seed of the agents' shuffled order");
  ex->add_option("--judge-model", o->judge_model, "The model named in the requests");
  ex->add_option("--judge-prompt", o->prompt,
                 "A built-in judge prompt (asclepius-gpt4: upstream's rubric) or a file");
  ex->add_option("--max-tokens", o->max_tokens, "max_tokens of each request")
      ->check(CLI::PositiveNumber);
  ex->callback([o] {
    check_output_file("--out", o->out, o->inputs);
    check_output_file("--out", o->out + ".agents.jsonl", o->inputs);
    const auto rep = judge_export(*o);
    std::cout << fmt::format("wrote {} requests for {} candidates ({}) to {} and {}.agents.jsonl\n",
                             rep.requests, rep.models.size(), fmt::join(rep.models, ", "), o->out,
                             o->out);
  });

  struct ImportOpts {
    std::string requests, json;
    std::vector<std::string> responses;
  };
  auto io = std::make_shared<ImportOpts>();
  auto* im = cmd->add_subcommand("import", "The judge's responses -> scores per model and task");
  im->add_option("--requests", io->requests, "The requests .jsonl that judge export wrote")
      ->required()
      ->check(CLI::ExistingFile);
  im->add_option("--responses", io->responses,
                 "Responses .jsonl (OpenAI batch output lines, or {custom_id, content})")
      ->required()
      ->check(CLI::ExistingFile);
  im->add_option("--json", io->json, "Also write the scores as JSON here");
  im->callback([io] {
    std::vector<std::string> inputs = io->responses;
    inputs.push_back(io->requests);
    if (!io->json.empty()) check_output_file("--json", io->json, inputs);
    const auto rep = judge_import(io->requests, io->responses);
    if (!io->json.empty()) write_file_atomic(io->json, judge_report_json(rep));
    std::cout << judge_report_table(rep);
  });
  add_judge_run(*cmd);  // cmd_judge_run.cpp (libtorch: the local judge)
}

}  // namespace asc::cli
