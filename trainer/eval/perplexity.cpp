#include "eval/perplexity.h"

#include <algorithm>
#include <vector>

#include <torch/torch.h>

#include "common/error.h"

namespace asc {

namespace {
struct Sequence {
  std::vector<int32_t> ids;
  std::vector<uint8_t> target;  // empty = every token
};

// Pads a batch with the corpus's pad id; labels -100 on padding and non-targets.
void run_batch(LlamaForCausalLM& model, const std::vector<Sequence>& batch, int64_t pad_id,
               PerplexityResult& r) {
  int64_t T = 0;
  for (const auto& s : batch) T = std::max<int64_t>(T, int64_t(s.ids.size()));
  const int64_t B = int64_t(batch.size());
  auto ids = torch::full({B, T}, pad_id, torch::kInt64);
  auto labels = torch::full({B, T}, -100, torch::kInt64);
  auto ia = ids.accessor<int64_t, 2>();
  auto la = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < batch[b].ids.size(); ++t) {
      ia[b][t] = batch[b].ids[t];
      if (batch[b].target.empty() || batch[b].target[t]) la[b][t] = batch[b].ids[t];
    }
  const auto dev = model->model->embed_tokens->weight.device();
  auto logits = model->forward(ids.to(dev));
  r.loss_sum += causal_lm_loss_sum(logits, labels.to(dev)).item<double>();
  r.tokens += count_targets(labels);
  r.sequences += B;
}
}  // namespace

std::vector<std::pair<int64_t, int64_t>> eval_sequences(const Corpus& corpus, int64_t seq,
                                                        int64_t max_sequences) {
  const CorpusInfo& info = corpus.info();
  std::vector<std::pair<int64_t, int64_t>> ranges;  // [begin, end) in the token stream
  const auto& off = corpus.doc_offsets();
  if (info.stage == "instruct") {
    for (size_t d = 0; d + 1 < off.size(); ++d)
      ranges.push_back({off[d], std::min(off[d + 1], off[d] + seq)});
  } else {
    for (int64_t b = 0; b + 1 < info.num_tokens; b += seq)
      ranges.push_back({b, std::min(info.num_tokens, b + seq)});
  }
  if (max_sequences > 0 && int64_t(ranges.size()) > max_sequences)
    ranges.resize(size_t(max_sequences));
  ASC_CHECK(!ranges.empty(), "corpus {} has no sequence to evaluate", corpus.path());
  return ranges;
}

PerplexityResult corpus_perplexity(LlamaForCausalLM& model, const Corpus& corpus,
                                   const PerplexityOptions& o) {
  torch::NoGradGuard no_grad;
  const LlamaConfig& c = model->config();
  const CorpusInfo& info = corpus.info();
  if (info.vocab_size > c.vocab_size)
    ASC_FAIL_HINT("evaluate with a corpus built by the model's tokenizer",
                  "corpus {} was tokenised with {} pieces but the model's vocabulary has {}",
                  corpus.path(), info.vocab_size, c.vocab_size);
  ASC_CHECK(o.batch_size >= 1, "--batch-size must be at least 1");
  const int64_t seq = std::min(o.seq_len, c.max_position_embeddings);
  ASC_CHECK(seq >= 2, "--seq-len must be at least 2");
  const bool instruct = info.stage == "instruct";

  // Sequences in corpus order, read lazily batch by batch.
  const auto ranges = eval_sequences(corpus, seq, o.max_sequences);

  PerplexityResult r;
  std::vector<Sequence> batch;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const auto [b, e] = ranges[i];
    Sequence s;
    s.ids.resize(size_t(e - b));
    corpus.read_tokens(b, e - b, s.ids.data());
    if (instruct) {
      s.target.resize(size_t(e - b));
      corpus.read_loss_mask(b, e - b, s.target.data());
    }
    batch.push_back(std::move(s));
    if (int64_t(batch.size()) == o.batch_size || i + 1 == ranges.size()) {
      run_batch(model, batch, info.pad_id, r);
      batch.clear();
    }
  }
  return r;
}

}  // namespace asc
