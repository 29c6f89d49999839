// perplexity.h — held-out perplexity of a model on an HDF5 corpus (docs/data-format.md).
// Pretrain corpora: the token stream cut into windows of seq_len (the last, shorter window
// included), every token after a window's first a target. Instruct corpora: each example on its
// own, targets where the loss mask is set (answer + EOS), as in training. Inference only.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

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
  int64_t seq_len = 0;  // 0: the model's context; more than the context is an error
  int64_t batch_size = 8;
  int64_t max_sequences = 0;  // 0 = all
};

// The sequences an evaluation reads, in corpus order, as [begin, end) ranges of the token stream:
// pretrain windows of seq_len (the last, shorter one included), or instruct examples (cut at
// seq_len). max_sequences > 0 keeps the first that many. Throws when there is none.
std::vector<std::pair<int64_t, int64_t>> eval_sequences(const Corpus& corpus, int64_t seq_len,
                                                        int64_t max_sequences);

// Sequences [begin, end) of `ranges` as one batch, padded with the corpus's pad id: labels are
// the ids, -100 on padding and, in instruct corpora, outside the loss mask. An empty range gives
// one padding row with no target (a forward that only keeps ranks in step).
struct EvalBatch {
  torch::Tensor ids_BT, labels_BT;  // int64
};
EvalBatch read_eval_batch(const Corpus& corpus,
                          const std::vector<std::pair<int64_t, int64_t>>& ranges, size_t begin,
                          size_t end);

PerplexityResult corpus_perplexity(LlamaForCausalLM& model, const Corpus& corpus,
                                   const PerplexityOptions& o);

}  // namespace asc
