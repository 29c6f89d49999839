// synth_notes.h — synthetic discharge summaries and instruction/answer pairs for demos and tests
// (`asclepius synth-notes`). Upstream rewrites PMC case reports with a paid LLM; we generate
// notes from a seeded patient model instead: dates, chief complaint, history, hospital course,
// diagnoses, medications with doses and frequencies, follow-up, clinical abbreviations and
// varied wording. Every answer derives from facts placed in its note, so a trained model's
// answers can be scored. Deterministic for a seed. No libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asc {

// The eight Asclepius task types, in the paper's order.
const std::vector<std::string>& asclepius_task_types();

struct SynthExample {
  std::string patient_id, note, question, answer, task;
};

struct SynthOptions {
  int64_t count = 100;  // notes
  uint64_t seed = 0;
  int64_t questions_per_note = 1;  // 1..8, distinct task types per note
};

// Notes with their questions, in order; note i's id is "synth-<seed>-<i>".
std::vector<SynthExample> synthesize_notes(const SynthOptions& o);

// Writes DIR/train.csv and DIR/heldout.csv (every `heldout_every`-th note, at least one) in the
// released layout: columns patient_id, note, question, answer, task; RFC 4180 quoting.
struct SynthSplit {
  int64_t train_rows = 0, heldout_rows = 0;
};
SynthSplit write_synth_splits(const std::vector<SynthExample>& ex, const std::string& dir,
                              int64_t heldout_every = 10);
std::string csv_quote(const std::string& field);

}  // namespace asc
