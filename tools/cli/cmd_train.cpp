// cmd_train.cpp — `asclepius train RECIPE [key.path=value ...] [--print-config]`, and
// `asclepius init RECIPE --out DIR`: the model that training would start from, as a Hugging Face
// directory (to evaluate "before training", or to check model.init_from against the preset).
#include <cstdlib>

#include <cstdint>
#include <iostream>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "comm/communicator.h"
#include "checkpoint/hf_io.h"
#include "common/stop_signal.h"
#include "config/recipe.h"
#include "train.h"

namespace asc::cli {
namespace {}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model from a YAML recipe");
  auto recipe = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  auto print_config = std::make_shared<bool>(false);
  cmd->add_option("recipe", *recipe, "Recipe YAML file")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", *overrides,
                  "Dotted overrides, e.g. train.lr=1e-4 train.max_steps=10");
  cmd->add_flag("--print-config", *print_config, "Print the resolved recipe and exit");
  auto world = std::make_shared<int64_t>(0);
  cmd->add_option(
         "--world-size", *world,
         "With --print-config: check the recipe for this many ranks (default: as launched)")
      ->check(CLI::PositiveNumber);
  auto stop_after = std::make_shared<int64_t>(-1);
  cmd->add_option("--stop-after-step", *stop_after,
                  "Stop after this step as if SIGTERM had arrived: every rank saves a checkpoint "
                  "and exits 143 (to rehearse a preemption; verify-resume uses it)")
      ->check(CLI::PositiveNumber);
  cmd->callback([=] {
    if (*world > 0 && !*print_config)
      throw CLI::ValidationError("--world-size",
                                 "only with --print-config (ranks come from the launch)");
    Recipe r = load_recipe(*recipe, *overrides, *world > 0 ? *world : comm::launched_world_size());
    if (*print_config) {
      std::cout << recipe_to_yaml(r);
      return;
    }
    TrainOptions options;
    options.stop_after_step = *stop_after;
    options.hooks = TrainHooks::from_environment();
    TrainResult res = train(r, options);
    if (res.stopped_by_signal) {
      if (res.rank != 0) std::exit(128 + res.stopped_by_signal);
      std::cerr << "stopped by " << signal_name(res.stopped_by_signal) << " after step "
                << res.steps << "; checkpoint saved: " << res.run_dir << "/"
                << step_dir_name(res.steps) << "\n";
      std::exit(128 + res.stopped_by_signal);
    }
    if (res.rank != 0) return;
    if (res.losses.empty()) {  // resumed at its last step: nothing ran, no loss to report
      std::cout << "nothing to train: the run is complete at step " << res.steps
                << "; run directory " << res.run_dir << "\n";
      return;
    }
    std::cout << "trained " << res.steps << " steps";
    if (res.skipped_steps) std::cout << " (" << res.skipped_steps << " skipped: not finite)";
    std::cout << "; final loss " << res.losses.back() << "; run directory " << res.run_dir << "\n";
  });
}

void add_init(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init", "Write the model a recipe's training starts from as a Hugging Face directory");
  auto recipe = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  cmd->add_option("recipe", *recipe, "Recipe YAML file")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", *overrides, "Dotted overrides, as for train");
  auto force = std::make_shared<bool>(false);
  cmd->add_option("--out", *out, "Output directory")->required();
  cmd->add_flag("--force", *force,
                "Replace an earlier model in a non-empty --out (its files only)");
  cmd->callback([=] {
    Recipe r = load_recipe(*recipe, *overrides, 1);  // reads only: --out is checked next
    check_output_dir("--out", *out, {*recipe, r.model.init_from, r.data.corpus, r.data.tokenizer});
    LlamaForCausalLM model = initial_model(r);  // read before anything of --out is removed
    clear_earlier_export(*out, *force);
    save_hf_dir(*out, model->config(), hf_named_tensors(model), at::kFloat);
    std::cout << "wrote the initial model of " << *recipe << " to " << *out << "\n";
  });
}

}  // namespace asc::cli
