// cmd_synth_notes.cpp — `asclepius synth-notes --count N --seed S --out DIR`: demo data in the
// released Asclepius layout (train.csv, heldout.csv).
#include <cstdint>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/error.h"
#include "data/synth_notes.h"

namespace asc::cli {

void add_synth_notes(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "synth-notes",
      "Write synthetic discharge summaries with instruction/answer pairs (demo data)");
  struct Opts {
    int64_t count = 1000, seed = 0, qpn = 1, heldout_every = 10;
    std::string out;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--count", o->count, "Number of notes")
      ->check(CLI::Range(int64_t(1), int64_t(100000000)));
  cmd->add_option("--seed", o->seed, "Seed (the output is a function of it)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--questions-per-note", o->qpn,
                  "Instruction/answer pairs per note, distinct task types")
      ->check(CLI::Range(1, 8));
  cmd->add_option("--heldout-every", o->heldout_every, "Every Nth note goes to heldout.csv")
      ->check(CLI::Range(int64_t(2), int64_t(1000000)));
  cmd->add_option("--out", o->out, "Output directory (train.csv, heldout.csv)")->required();
  cmd->add_flag("--force", o->force, "Replace train.csv and heldout.csv already in --out");
  cmd->callback([=] {
    check_output_dir("--out", o->out, {});
    for (const char* f : {"train.csv", "heldout.csv"})
      if (std::filesystem::exists(std::filesystem::path(o->out) / f) && !o->force)
        ASC_FAIL_HINT("choose a new directory, or pass --force to replace them",
                      "--out {}: already holds {}", o->out, f);
    auto ex = synthesize_notes({o->count, uint64_t(o->seed), o->qpn});
    auto s = write_synth_splits(ex, o->out, o->heldout_every);
    std::cout << "wrote " << s.train_rows << " rows to " << o->out << "/train.csv and "
              << s.heldout_rows << " rows to " << o->out << "/heldout.csv (" << o->count
              << " notes, " << asclepius_task_types().size() << " task types)\n";
  });
}

}  // namespace asc::cli
