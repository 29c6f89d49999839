// commands.h — one function per subcommand of `asclepius`; each registers itself on the CLI11
// app and runs when selected. Errors are asc::Error, printed once by main().
#pragma once

#include <CLI/CLI.hpp>

namespace asc::cli {

void add_train(CLI::App& app);
void add_init(CLI::App& app);
void add_export(CLI::App& app);
void add_synth_notes(CLI::App& app);
void add_tokenizer(CLI::App& app);
void add_corpus(CLI::App& app);
void add_plan(CLI::App& app);
void add_ckpt(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);
void add_verify_resume(CLI::App& app);

}  // namespace asc::cli
