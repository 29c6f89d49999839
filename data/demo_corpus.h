// demo_corpus.h — the built-in demo token stream (data.corpus: demo), so the trainer runs on a
// fresh machine with no files. Sequences come from a fixed random "grammar": every token has 4
// possible successors, chosen per position by a hash of (seed, sample, position). A model can
// learn it (entropy floor ln 4 ≈ 1.386 nats/token) and the loss visibly falls from ln(vocab).
// Deterministic: sample i is a pure function of (seed, vocab, seq_len, i). No libtorch.
#pragma once

#include <cstdint>
#include <vector>

namespace asc {

class DemoCorpus {
 public:
  DemoCorpus(int64_t vocab_size, int64_t seq_len, int64_t num_samples, uint64_t seed);
  int64_t size() const { return num_samples_; }
  int64_t seq_len() const { return seq_len_; }
  // Writes seq_len tokens of sample i into out.
  void sample(int64_t i, int64_t* out) const;

 private:
  int64_t vocab_, seq_len_, num_samples_;
  uint64_t seed_;
  std::vector<int32_t> successors_;  // vocab × 4
};

// Order of samples in an epoch: a permutation seeded by (seed, epoch).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace asc
