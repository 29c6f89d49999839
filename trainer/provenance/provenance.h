// provenance.h — which notes trained which steps and checkpoints (docs/provenance.md), derived
// from the corpus's per-note ids and content hashes and the deterministic epoch plan
// (data/sampler.h step_place, data/demo_corpus.h epoch_order): nothing is logged per step.
//
// A run records, in every checkpoint's trainer_state.json under "provenance", the corpus it
// trained on (absolute path and fingerprint) and, for model.init_from, the checkpoint it started
// from (absolute path, step and the XXH64 of its manifest.pb), so a stage-two run's checkpoints
// name the stage-one checkpoint whose notes they inherit. A run recorded before this existed is
// read from its recipe.yaml (unverified; said so in the output).
//
// Counting: loop step s (1-based) reads the global batch step_place(s) of the epoch order; a
// pretraining sample is the window of data.seq_len tokens [w·L, (w+1)·L) of the token stream,
// and every note with a token in it counts (a window spans notes); an instruct sample is one
// example, whose note counts. A checkpoint of step S has seen steps 1..S of its run and, through
// model.init_from, everything the checkpoint it started from had seen. Every rank's slice is part
// of the global batch, so the world size (also a change at a resume) does not matter. No
// libtorch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/recipe.h"

namespace asc {

// What a run records (trainer_state.json "provenance"): corpus (data.corpus; "demo" has none)
// and the resolved model.init_from directory ("" when none).
nlohmann::json provenance_record(const Recipe& r, const std::string& init_from_dir);

struct LedgerLink;  // one run of the chain (provenance.cpp)

// The chain of a run: the run itself, then the run whose checkpoint it started from, and so on.
class Ledger {
 public:
  // `run`: a run directory (or a step directory of one: its run is used). Opens every corpus
  // of the chain and checks it against what the run recorded.
  explicit Ledger(const std::string& run);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // The steps and checkpoints of every run of the chain whose batches held note `id` (its id or
  // a duplicate's). Throws when no corpus of the chain knows the id.
  nlohmann::json note(const std::string& id) const;
  // The notes of loop step n of the run (1 <= n <= its newest checkpoint's step).
  nlohmann::json step(int64_t n) const;
  // Every note checkpoint `dir` (a step directory of a run of the chain, or its name inside the
  // run) has seen, by run of the chain.
  nlohmann::json checkpoint(const std::string& dir) const;
  // Every existing checkpoint of the chain that saw any of `ids`, with the ids it saw.
  nlohmann::json exclude(const std::unordered_set<std::string>& ids) const;

 private:
  std::vector<std::unique_ptr<LedgerLink>> links_;  // [0] the run, then its init_from chain
};

// The readable form of what the Ledger returned.
std::string provenance_text(const nlohmann::json& result);

}  // namespace asc
