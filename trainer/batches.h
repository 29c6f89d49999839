// batches.h — the global batches a training step consumes, as micro-batches of tensors.
//
// Samples come in the order of the data sampler (data/sampler.h: a seeded permutation per
// epoch, the tail of an epoch dropped); rank 0 coordinates, rank r of W reads the r-th slice of
// each global batch (its micro-batches are its share of the global batch).
//   pretrain (demo stream or an HDF5 pretrain corpus): rows of data.seq_len tokens, labels =
//     inputs; micro-batches of train.micro_batch_size rows.
//   instruct (an HDF5 instruct corpus): micro-batches of train.micro_batch_size examples, each
//     padded to its longest example (Asclepius); or with data.pack the global batch's examples
//     packed into rows of data.seq_len, micro-batches of train.micro_batch_size rows.
// A Prefetcher builds the next global batch on a background thread during the current step, so
// the sampler's state runs one step ahead of the batches consumed: a resume must record the
// state of the last consumed step.
#pragma once

#include <future>
#include <memory>
#include <vector>

#include "config/recipe.h"
#include "model/llama.h"

namespace asc {

struct MicroBatch {
  at::Tensor input_ids_BT, labels_BT;  // int64; label -100 = no target
  std::unique_ptr<Packing> packing;    // set for packed rows
};
using GlobalBatch = std::vector<MicroBatch>;

class Batches {
 public:
  virtual ~Batches() = default;
  virtual int64_t steps_per_epoch() const = 0;
  // The global batch of `step`; steps are taken in order.
  virtual GlobalBatch global_batch(int64_t step) = 0;
  // Resume: the next global batch is that of `step` (the sample order is seeded per epoch and
  // independent of the world size, so the data state follows from the step alone).
  virtual void start_at(int64_t step) = 0;
};

// Checks the corpus against the recipe and the model (stage, tokenizer checksum, vocabulary,
// sizes) and returns the batches for the run.
std::unique_ptr<Batches> make_batches(const Recipe& r, const LlamaConfig& model);

class Prefetcher {
 public:
  Prefetcher(Batches& batches, int64_t first_step, int64_t total_steps);
  Prefetcher(const Prefetcher&) = delete;  // the background task holds `this`
  Prefetcher& operator=(const Prefetcher&) = delete;
  // The batch of `step` (in order); wait_s = how long the caller waited for it.
  GlobalBatch next(int64_t step, double* wait_s);

 private:
  void launch(int64_t step);
  Batches& batches_;
  int64_t total_;
  std::future<GlobalBatch> pending_;
};

}  // namespace asc
