#include "eval/perplexity.h"

#include <algorithm>
#include <vector>

#include <torch/torch.h>

#include "common/error.h"

namespace asc {

EvalBatch read_eval_batch(const Corpus& corpus,
                          const std::vector<std::pair<int64_t, int64_t>>& ranges, size_t begin,
                          size_t end) {
  const CorpusInfo& info = corpus.info();
  const bool instruct = info.stage == "instruct";
  int64_t T = begin < end ? 0 : 2;
  for (size_t i = begin; i < end; ++i) T = std::max(T, ranges[i].second - ranges[i].first);
  const int64_t B = std::max<int64_t>(1, int64_t(end) - int64_t(begin));
  EvalBatch out{torch::full({B, T}, info.pad_id, torch::kInt64),
                torch::full({B, T}, -100, torch::kInt64)};
  auto ia = out.ids_BT.accessor<int64_t, 2>();
  auto la = out.labels_BT.accessor<int64_t, 2>();
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  for (size_t i = begin; i < end; ++i) {
    const auto [b, e] = ranges[i];
    const int64_t row = int64_t(i - begin);
    ids.resize(size_t(e - b));
    corpus.read_tokens(b, e - b, ids.data());
    if (instruct) {
      mask.resize(size_t(e - b));
      corpus.read_loss_mask(b, e - b, mask.data());
    }
    for (int64_t t = 0; t < e - b; ++t) {
      ia[row][t] = ids[size_t(t)];
      if (!instruct || mask[size_t(t)]) la[row][t] = ids[size_t(t)];
    }
  }
  return out;
}

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
  check_same_tokenizer(c, "its config.json", info.tokenizer_checksum, "corpus " + corpus.path());
  if (info.vocab_size > c.vocab_size)
    ASC_FAIL_HINT("evaluate with a corpus built by the model's tokenizer",
                  "corpus {} was tokenised with {} pieces but the model's vocabulary has {}",
                  corpus.path(), info.vocab_size, c.vocab_size);
  ASC_CHECK(o.batch_size >= 1, "--batch-size must be at least 1");
  const int64_t seq = o.seq_len > 0 ? o.seq_len : c.max_position_embeddings;
  if (seq > c.max_position_embeddings)
    ASC_FAIL_HINT(
        fmt::format("use --seq-len {} or less (or leave it out)", c.max_position_embeddings),
        "--seq-len {} exceeds the model's context ({} positions)", seq, c.max_position_embeddings);
  ASC_CHECK(seq >= 2, "--seq-len must be at least 2");

  // Sequences in corpus order, read lazily batch by batch.
  const auto ranges = eval_sequences(corpus, seq, o.max_sequences);
  const auto dev = model->model->embed_tokens->weight.device();
  PerplexityResult r;
  for (size_t i = 0; i < ranges.size(); i += size_t(o.batch_size)) {
    const EvalBatch b =
        read_eval_batch(corpus, ranges, i, std::min(ranges.size(), i + size_t(o.batch_size)));
    auto logits = model->forward(b.ids_BT.to(dev));
    r.loss_sum += causal_lm_loss_sum(logits, b.labels_BT.to(dev)).item<double>();
    r.tokens += count_targets(b.labels_BT);
    r.sequences += b.ids_BT.size(0);
  }
  return r;
}

}  // namespace asc
