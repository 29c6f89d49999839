// main.cpp — `asclepius`: one binary, one subcommand per task. The only place that catches
// asc::Error: one clear line on stderr, exit status 1 (2 for command-line usage errors).
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "asclepius_version.h"
#include "cli/commands.h"
#include "common/error.h"

namespace {
std::string version_text() {
  return fmt::format(
      "asclepius {} (git {})\n"
      "libtorch {}\n"
      "CUDA: {} (devices: {})\n"
      "NCCL: no (not built in yet)\n"
      "MPI: no (not built in yet)\n",
      ASCLEPIUS_VERSION, ASCLEPIUS_GIT_COMMIT, TORCH_VERSION,
      torch::cuda::is_available() ? "available" : "not available", torch::cuda::device_count());
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"asclepius — train clinical LLaMA models (Asclepius recipe) from C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text);
  asc::cli::add_train(app);
  asc::cli::add_export(app);
  asc::cli::add_synth_notes(app);
  asc::cli::add_tokenizer(app);
  asc::cli::add_corpus(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const asc::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
