// validator.h — held-out loss during training (the Hugging Face Trainer's evaluation_strategy
// "steps", llm.c's val loss): eval.corpus read as `asclepius eval ppl` reads it (pretrain
// windows of data.seq_len, or instruct examples scored on their answer + EOS), the first
// eval.max_batches x train.global_batch_size sequences (0: all), every eval.every_steps steps
// and after the last one.
//
// Under mpirun each rank scores a contiguous share of those sequences in micro-batches of
// train.micro_batch_size; every rank runs the same number of forward passes (empty ones once its
// share is done, so fsdp's gathers line up), and the loss sums and target counts are all-reduced
// in double. So the result does not depend on the world size beyond float summation order.
// A collective: every rank calls run() at the same steps.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "config/recipe.h"
#include "data/corpus.h"
#include "model/llama.h"
#include "parallel/engine.h"

namespace asc {

class Validator {
 public:
  // Opens eval.corpus and checks it against the model (vocabulary, token ids) and, when the
  // recipe names one, data.tokenizer; rank/world: this rank's share. Not a collective: open().
  Validator(const Recipe& r, const LlamaConfig& model, int rank, int world);
  // The same on every rank of `comm` (null: one process), collectively: an error on any rank
  // (the file missing on one node) fails every rank alike, and so do ranks that see different
  // numbers of held-out sequences (different files under one path), which would otherwise run
  // different numbers of forward passes and hang fsdp's gathers.
  static std::unique_ptr<Validator> open(const Recipe& r, const LlamaConfig& model,
                                         comm::Communicator* comm);
  ~Validator();

  struct Result {
    double loss = 0;     // mean token cross-entropy over every rank's sequences (nats)
    int64_t tokens = 0;  // targets scored, all ranks
    int64_t sequences = 0;
    double perplexity() const { return std::exp(loss); }
  };
  // Whether to validate after (1-based) `step` of `total_steps`.
  bool due(int64_t step, int64_t total_steps) const;
  // Scores the held-out sequences with the model as it is now (no gradients; weights untouched).
  Result run(LlamaForCausalLM& model, ParallelEngine& engine, comm::Communicator* comm);

 private:
  std::unique_ptr<Corpus> corpus_;
  std::vector<std::pair<int64_t, int64_t>> mine_;  // this rank's share of the sequences
  int64_t total_ = 0;                              // sequences over all ranks
  int64_t micro_batch_, every_steps_, loss_chunk_rows_;
  int64_t per_rank_max_ = 0;  // the largest share (sequences): the forward passes every rank runs
};

}  // namespace asc
