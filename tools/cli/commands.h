// commands.h — one function per subcommand of `asclepius`; each registers itself on the CLI11
// app and runs when selected. Errors are asc::Error, printed once by main().
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace asc::cli {

void add_train(CLI::App& app);
void add_init(CLI::App& app);
void add_export(CLI::App& app);
void add_synth_notes(CLI::App& app);
void add_synthesize(CLI::App& app);
void add_tokenizer(CLI::App& app);
void add_corpus(CLI::App& app);
void add_plan(CLI::App& app);
void add_ckpt(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);
void add_judge(CLI::App& app);
void add_judge_run(CLI::App& judge);  // `judge run`, under add_judge
void add_provenance(CLI::App& app);

// export and init: an existing, non-empty output directory is refused, or with `force` cleared
// of an earlier Hugging Face export's files only (cmd_export.cpp).
void clear_earlier_export(const std::string& out, bool force);
void add_verify_resume(CLI::App& app);

}  // namespace asc::cli
