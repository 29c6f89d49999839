#include "eval/validator.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "comm/objects.h"
#include "common/error.h"
#include "data/tokenizer.h"
#include "eval/perplexity.h"

namespace asc {

Validator::Validator(const Recipe& r, const LlamaConfig& model, int rank, int world)
    : micro_batch_(r.train.micro_batch_size),
      every_steps_(r.eval.every_steps),
      loss_chunk_rows_(r.train.loss_chunk_rows) {
  corpus_ = std::make_unique<Corpus>(r.eval.corpus);
  const CorpusInfo& info = corpus_->info();
  if (!r.data.tokenizer.empty()) {
    Tokenizer tok(r.data.tokenizer);
    if (tok.checksum() != info.tokenizer_checksum)
      ASC_FAIL_HINT("build the held-out corpus with the training tokenizer",
                    "{}: {} was built with tokenizer {} but data.tokenizer {} is {}",
                    r.where("eval.corpus"), r.eval.corpus, info.tokenizer_checksum,
                    r.data.tokenizer, tok.checksum());
  }
  check_same_tokenizer(model, "this run", info.tokenizer_checksum,
                       r.where("eval.corpus") + ": corpus " + r.eval.corpus);
  if (info.vocab_size > model.vocab_size)
    ASC_FAIL("{}: {} was built with a {}-token vocabulary but the model has {}",
             r.where("eval.corpus"), r.eval.corpus, info.vocab_size, model.vocab_size);
  corpus_->check_token_ids(model.vocab_size);
  const int64_t seq = std::min(r.data.seq_len, model.max_position_embeddings);
  const int64_t max = r.eval.max_batches > 0 ? r.eval.max_batches * r.train.global_batch_size : 0;
  const auto all = eval_sequences(*corpus_, seq, max);
  // Contiguous shares: the first (n mod W) ranks take one sequence more.
  const int64_t n = int64_t(all.size()), W = world;
  const int64_t base = n / W, extra = n % W;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  const int64_t count = base + (rank < extra ? 1 : 0);
  mine_.assign(all.begin() + begin, all.begin() + begin + count);
  total_ = n;
  per_rank_max_ = base + (extra > 0 ? 1 : 0);
}

Validator::~Validator() = default;

std::unique_ptr<Validator> Validator::open(const Recipe& r, const LlamaConfig& model,
                                           comm::Communicator* comm) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  std::unique_ptr<Validator> v;
  std::string error;
  try {
    v = std::make_unique<Validator>(r, model, rank, world);
  } catch (const std::exception& e) {
    if (!comm) throw;
    error = e.what();
  }
  comm::agree_on_error(comm, "opening eval.corpus", error, r.parallel.timeout_s);
  if (comm) {
    at::Tensor n = at::tensor({v->total_, -v->total_}, at::kLong);
    comm->all_reduce(n, {comm::ReduceOp::kMax})->wait();
    if (n[0].item<int64_t>() != -n[1].item<int64_t>())
      ASC_FAIL_HINT("give every node the same eval.corpus file",
                    "{}: the ranks see different held-out corpora under {} ({} to {} sequences)",
                    r.where("eval.corpus"), r.eval.corpus, -n[1].item<int64_t>(),
                    n[0].item<int64_t>());
  }
  return v;
}

bool Validator::due(int64_t step, int64_t total_steps) const {
  return step == total_steps || (every_steps_ > 0 && step % every_steps_ == 0);
}

Validator::Result Validator::run(LlamaForCausalLM& model, ParallelEngine& engine,
                                 comm::Communicator* comm) {
  torch::NoGradGuard no_grad;
  const at::Device dev = model->head_weight().device();
  double loss_sum = 0;
  int64_t tokens = 0;
  const int64_t passes = (per_rank_max_ + micro_batch_ - 1) / micro_batch_;
  for (int64_t p = 0; p < passes; ++p) {
    // Past the end of this rank's share: one padding row with no target (the others' passes
    // still need this rank's part of each fsdp gather).
    const size_t b0 = std::min(size_t(p * micro_batch_), mine_.size());
    const size_t b1 = std::min(b0 + size_t(micro_batch_), mine_.size());
    const EvalBatch batch = read_eval_batch(*corpus_, mine_, b0, b1);
    at::Tensor ids = batch.ids_BT, labels = batch.labels_BT;
    tokens += count_targets(labels);
    ids = ids.to(dev), labels = labels.to(dev);
    engine.begin_forward_only();
    const at::Tensor sum = loss_chunk_rows_ > 0
                               ? model->loss_sum(ids, labels, nullptr, loss_chunk_rows_)
                               : causal_lm_loss_sum(model(ids), labels);
    engine.end_forward_only();
    loss_sum += sum.item<double>();
  }
  Result out;
  double totals[3] = {loss_sum, double(tokens), double(mine_.size())};
  if (comm) {
    at::Tensor t = at::tensor({totals[0], totals[1], totals[2]}, at::kDouble);
    comm->all_reduce(t)->wait();
    for (int k = 0; k < 3; ++k) totals[k] = t[k].item<double>();
  }
  out.tokens = int64_t(totals[1]), out.sequences = int64_t(totals[2]);
  ASC_CHECK(out.tokens > 0, "eval.corpus: no target token in the evaluated sequences");
  out.loss = totals[0] / totals[1];
  return out;
}

}  // namespace asc
