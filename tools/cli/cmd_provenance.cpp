// `asclepius provenance RUN (--note ID | --step N | --checkpoint DIR | --exclude IDS) [--json]`:
// which notes trained which steps and checkpoints (docs/provenance.md), derived from the
// corpora's note ids and the epoch plan (trainer/provenance/provenance.h).
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "data/note_ids.h"
#include "provenance/provenance.h"

namespace asc::cli {

void add_provenance(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "provenance",
      "Which notes trained which steps and checkpoints of a run (and its init_from "
      "chain), derived from the corpus's note ids and the epoch plan");
  auto run = std::make_shared<std::string>();
  auto note = std::make_shared<std::string>();
  auto step = std::make_shared<int64_t>(0);
  auto ckpt = std::make_shared<std::string>();
  auto exclude = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("run", *run, "Run directory (checkpoint.dir of `asclepius train`)")->required();
  auto* o_note = cmd->add_option("--note", *note, "The steps and checkpoints that saw note ID");
  auto* o_step = cmd->add_option("--step", *step, "The notes of step N (1-based)");
  auto* o_ckpt = cmd->add_option("--checkpoint", *ckpt,
                                 "Every note checkpoint DIR has seen (through init_from too)");
  auto* o_excl = cmd->add_option("--exclude", *exclude,
                                 "File of note ids: every existing checkpoint that saw any of them")
                     ->check(CLI::ExistingFile);
  cmd->add_flag("--json", *json, "Machine-readable output");
  o_note->excludes(o_step)->excludes(o_ckpt)->excludes(o_excl);
  o_step->excludes(o_ckpt)->excludes(o_excl);
  o_ckpt->excludes(o_excl);
  cmd->callback([=] {
    const int modes = int(o_note->count() > 0) + int(o_step->count() > 0) +
                      int(o_ckpt->count() > 0) + int(o_excl->count() > 0);
    if (modes != 1)
      ASC_FAIL_HINT("e.g. asclepius provenance runs/pre --note 1234",
                    "provenance: give one of --note, --step, --checkpoint, --exclude");
    const Ledger ledger(*run);
    nlohmann::json out;
    if (o_note->count())
      out = ledger.note(*note);
    else if (o_step->count())
      out = ledger.step(*step);
    else if (o_ckpt->count())
      out = ledger.checkpoint(*ckpt);
    else
      out = ledger.exclude(read_id_list(*exclude));
    std::cout << (*json ? out.dump(1) + "\n" : provenance_text(out));
  });
}

}  // namespace asc::cli
