// perplexity.h — held-out perplexity of a model on an HDF5 corpus (docs/data-format.md).
// Pretrain corpora: the token stream cut into windows of seq_len (the last, shorter window
// included), every token after a window's first a target. Instruct corpora: each example on its
// own, targets where the loss mask is set (answer + EOS), as in training. Inference only.
#pragma once

#include <cmath>
#include <cstdint>

#include "data/corpus.h"
#include "model/llama.h"

namespace asc {

struct PerplexityResult {
  double loss_sum = 0;  // summed token cross-entropy (nats)
  int64_t tokens = 0;   // targets
  int64_t sequences = 0;
  double mean_loss() const { return tokens ? loss_sum / double(tokens) : 0.0; }
  double perplexity() const { return std::exp(mean_loss()); }
};

struct PerplexityOptions {
  int64_t seq_len = 2048;  // capped at the model's context
  int64_t batch_size = 8;
  int64_t max_sequences = 0;  // 0 = all
};

PerplexityResult corpus_perplexity(LlamaForCausalLM& model, const Corpus& corpus,
                                   const PerplexityOptions& o);

}  // namespace asc
