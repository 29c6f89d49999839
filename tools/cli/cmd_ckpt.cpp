// `asclepius ckpt inspect RUN_OR_STEP_DIR`: a checkpoint's manifest as JSON, and whether its
// files match it and hold what its config.json implies (the loaders' own checks).
#include <iostream>
#include <memory>

#include "checkpoint/hf_io.h"
#include "checkpoint/manifest.h"
#include "cli/commands.h"
#include "common/error.h"

namespace asc::cli {

void add_ckpt(CLI::App& app) {
  auto* cmd = app.add_subcommand("ckpt", "Training checkpoints");
  cmd->require_subcommand(1);
  auto* inspect = cmd->add_subcommand(
      "inspect", "Print a checkpoint's manifest as JSON and verify its files (exit 1 if damaged)");
  auto dir = std::make_shared<std::string>();
  inspect->add_option("dir", *dir, "Run directory (follows latest) or step directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  inspect->callback([dir] {
    const std::string step = resolve_model_dir(*dir);
    std::cout << manifest_json(step);
    const std::string problem = verify_checkpoint(step);
    if (!problem.empty()) ASC_FAIL("{}", problem);
    // What train and export check when they read it: config.json, every tensor it implies at
    // its shape, and the slice table (each tensor tiled, every slice inside its file).
    WeightReader check(step, read_hf_config(step));
    std::cerr << step << ": every file matches the manifest; the tensors match config.json\n";
  });
}

}  // namespace asc::cli
