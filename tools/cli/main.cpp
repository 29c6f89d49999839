// main.cpp — `asclepius`: one binary, one subcommand per task. The only place that catches
// asc::Error: one clear line on stderr, exit status 1 (2 for command-line usage errors).
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/cuda.h>

#include "comm/communicator.h"
#include <torch/version.h>

#include "asclepius_version.h"
#include "cli/commands.h"
#include "common/error.h"
#include "kernels/fused_adamw.h"
#include "kernels/layer_kernels.h"

namespace {
std::string version_text() {
  return fmt::format(
      "asclepius {} (git {})\n"
      "libtorch {}\n"
      "CUDA: {} (CUDA devices: {}); fused CUDA kernels: {}\n"
      "NCCL backend: {}\n"
      "MPI backend: yes\n",
      ASCLEPIUS_VERSION, ASCLEPIUS_GIT_COMMIT, TORCH_VERSION,
      torch::cuda::is_available() ? "available" : "not available", torch::cuda::device_count(),
      asc::kernels::layer_kernels_built() && asc::kernels::cuda_kernels_built() ? "built"
                                                                                : "not built",
      asc::comm::nccl_backend_built() ? "built" : "not built");
}
}  // namespace

namespace {
// One line per failing rank. Under mpirun the process ends without MPI_Finalize (which would
// wait for ranks still inside a collective); the launcher then stops the others, which say so.
int fail(const char* what) {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!rank) rank = std::getenv("PMI_RANK");
  if (!rank) rank = std::getenv("SLURM_PROCID");
  if (asc::comm::launched_world_size() > 1) {
    fmt::print(stderr, "error (rank {}): {}\n", rank ? rank : "?", what);
    std::fflush(stderr);
    std::fflush(stdout);
    // Ranks that meet the same error (a recipe, say) report it too before the launcher, seeing
    // this exit, stops them.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::_Exit(1);
  }
  fmt::print(stderr, "error: {}\n", what);
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"asclepius — train clinical LLaMA models (Asclepius recipe) from C++"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version_text);
  asc::cli::add_train(app);
  asc::cli::add_init(app);
  asc::cli::add_export(app);
  asc::cli::add_synth_notes(app);
  asc::cli::add_synthesize(app);
  asc::cli::add_tokenizer(app);
  asc::cli::add_corpus(app);
  asc::cli::add_plan(app);
  asc::cli::add_ckpt(app);
  asc::cli::add_eval(app);
  asc::cli::add_generate(app);
  asc::cli::add_judge(app);
  asc::cli::add_provenance(app);
  asc::cli::add_verify_resume(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const asc::Error& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
