// `asclepius plan RECIPE --world-size N [--gpu-memory-gb G]`: per-rank memory of a recipe.
#include <cstdint>
#include <iostream>
#include <memory>

#include "checkpoint/hf_io.h"
#include "cli/commands.h"
#include "config/recipe.h"
#include "parallel/planner.h"

namespace asc::cli {

void add_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan",
      "Predict per-rank memory (parameters, gradients, optimizer, activations) of a recipe");
  auto recipe = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  auto world = std::make_shared<int64_t>(1);
  auto gpu_gb = std::make_shared<double>(0);
  cmd->add_option("recipe", *recipe, "Recipe YAML file")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", *overrides, "Dotted overrides, e.g. train.micro_batch_size=2");
  cmd->add_option("--world-size", *world, "Data-parallel ranks")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--gpu-memory-gb", *gpu_gb, "Memory per device (GiB) to check the plan against")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([=] {
    Recipe r = load_recipe(*recipe, *overrides, *world);
    // The preset when the recipe names one (with init_from it is the architecture the weights
    // must have); else the architecture in init_from's config.json.
    const MemoryPlanInput in =
        plan_input(r,
                   r.preset_model_config() ? *r.preset_model_config()
                                           : read_hf_config(resolve_model_dir(r.model.init_from)),
                   *world);
    std::cout << format_plan(in, plan_memory(in), *gpu_gb);
  });
}

}  // namespace asc::cli
