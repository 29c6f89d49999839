#include "batches.h"

#include <chrono>
#include <cstdlib>
#include <fstream>

#include <ATen/ATen.h>

#include "common/error.h"
#include "data/collate.h"
#include "data/corpus.h"
#include "data/demo_corpus.h"
#include "data/sampler.h"
#include "data/tokenizer.h"

namespace asc {
namespace {

at::Tensor to_tensor(const std::vector<int64_t>& v, int64_t rows, int64_t len) {
  return at::from_blob(const_cast<int64_t*>(v.data()), {rows, len}, at::kLong).clone();
}

// Owns the sampler; subclasses say how many samples there are and turn sample ids into rows.
class SampledBatches : public Batches {
 public:
  explicit SampledBatches(const Recipe& r)
      : seq_len_(r.data.seq_len),
        global_(r.train.global_batch_size),
        micro_(r.train.micro_batch_size),
        seed_(uint64_t(r.train.seed)),
        channel_(r.world_size > 1 ? &comm::mpi_world_channel() : &local_) {}
  int64_t steps_per_epoch() const override { return sampler_->steps_per_epoch(); }
  void start_at(int64_t step) override {  // the next batch is that of loop step `step + 1`
    const StepPlace at = step_place(step + 1, sampler_->num_samples(), global_);
    sampler_->restore({at.epoch, at.begin});
    next_step_ = step;
  }
  GlobalBatch global_batch(int64_t step) override {
    ASC_CHECK(step == next_step_, "batches are taken in order: asked for step {}, next is {}", step,
              next_step_);
    ++next_step_;
    const std::vector<int64_t> ids = sampler_->next_local_batch();
    if (!trace_.empty()) trace(step + 1, ids);
    return make(ids);
  }

 protected:
  virtual int64_t num_samples() const = 0;
  virtual GlobalBatch make(const std::vector<int64_t>& sample_ids) = 0;
  // Called by the derived constructor once num_samples() works: rank 0 coordinates over the MPI
  // channel (one process is its own coordinator, over a LocalChannel).
  void start(const Recipe& r, const std::string& what) {
    if (num_samples() < global_)
      ASC_FAIL("{}: {} holds {} samples, fewer than train.global_batch_size ({})",
               r.where("data.corpus"), what, num_samples(), global_);
    sampler_ = std::make_unique<ShardedSampler>(*channel_, seed_, global_,
                                                [this] { return num_samples(); });
  }
  // Rows [rows, len] cut into micro-batches of micro_ rows.
  GlobalBatch split(const at::Tensor& ids, const at::Tensor& labels, const Rows* packed) const {
    at::Tensor pos, seg;
    if (packed) {
      pos = to_tensor(packed->positions, packed->rows, packed->len);
      seg = to_tensor(packed->segments, packed->rows, packed->len);
    }
    GlobalBatch out;
    for (int64_t b = 0; b < ids.size(0); b += micro_) {
      MicroBatch m;
      m.input_ids_BT = ids.slice(0, b, b + micro_);
      m.labels_BT = labels.slice(0, b, b + micro_);
      if (packed) {
        m.packing = std::make_unique<Packing>();
        m.packing->position_ids_BT = pos.slice(0, b, b + micro_);
        m.packing->segment_ids_BT = seg.slice(0, b, b + micro_);
      }
      out.push_back(std::move(m));
    }
    return out;
  }
  int64_t seq_len_, global_, micro_;
  uint64_t seed_;

 private:
  // Test hook ASCLEPIUS_TRACE_SAMPLES=PREFIX: each rank appends "STEP: SAMPLE..." (loop step,
  // the sample ids it read) to PREFIX.rankR, so tests can compare what was read with what
  // provenance derives (docs/provenance.md). Changes nothing that is computed.
  void trace(int64_t step, const std::vector<int64_t>& ids) const {
    std::ofstream out(fmt::format("{}.rank{}", trace_, channel_->rank()), std::ios::app);
    out << step << ":";
    for (int64_t i : ids) out << " " << i;
    out << "\n";
  }
  std::string trace_ = [] {
    const char* p = std::getenv("ASCLEPIUS_TRACE_SAMPLES");
    return std::string(p ? p : "");
  }();
  LocalChannel local_;
  ByteChannel* channel_;
  std::unique_ptr<ShardedSampler> sampler_;
  int64_t next_step_ = 0;
};

// Pretraining rows: every sample is seq_len tokens; labels = inputs (shifted in the loss).
class WindowBatches : public SampledBatches {
 public:
  using SampledBatches::SampledBatches;

 protected:
  virtual void window(int64_t i, int64_t* out) const = 0;
  GlobalBatch make(const std::vector<int64_t>& ids) override {
    auto batch = at::empty({int64_t(ids.size()), seq_len_}, at::kLong);
    for (size_t j = 0; j < ids.size(); ++j) window(ids[j], batch[int64_t(j)].data_ptr<int64_t>());
    return split(batch, batch, nullptr);
  }
};

class DemoBatches final : public WindowBatches {
 public:
  DemoBatches(const Recipe& r, int64_t vocab)
      : WindowBatches(r),
        corpus_(vocab, r.data.seq_len, r.data.demo_samples, uint64_t(r.train.seed)) {
    start(r, "the demo corpus (data.demo_samples)");
  }

 protected:
  int64_t num_samples() const override { return corpus_.size(); }
  void window(int64_t i, int64_t* out) const override { corpus_.sample(i, out); }

 private:
  DemoCorpus corpus_;
};

// The recipe's prompt template and upstream_compat against what the instruct corpus records.
void check_instruct_corpus(const Recipe& r, const CorpusInfo& info) {
  if (!r.data.prompt_template.empty() && !r.data.allow_prompt_mismatch) {
    const PromptTemplate want =
        PromptTemplate::resolve(r.data.prompt_template, r.where("data.prompt_template"));
    if (want.xxh64 != info.prompt_template_xxh64)
      ASC_FAIL_HINT("rebuild the corpus with --prompt-template " + r.data.prompt_template +
                        ", or set data.allow_prompt_mismatch: true to train on it anyway",
                    "{}: data.prompt_template {} (xxh64 {}) but {} was built with {} (xxh64 {})",
                    r.where("data.prompt_template"), want.name, want.xxh64, r.data.corpus,
                    info.prompt_template, info.prompt_template_xxh64);
  }
  if (r.data.upstream_compat != info.upstream_compat)
    ASC_FAIL_HINT(r.data.upstream_compat
                      ? "rebuild the corpus with `corpus build --upstream-compat`"
                      : "set data.upstream_compat: true, or rebuild the corpus without it",
                  "{}: data.upstream_compat is {} but {} was built {}",
                  r.where("data.upstream_compat"), r.data.upstream_compat, r.data.corpus,
                  info.upstream_compat ? "with --upstream-compat" : "without --upstream-compat");
}

// Opens and checks an HDF5 corpus for this run.
std::unique_ptr<Corpus> open_corpus(const Recipe& r, const LlamaConfig& model) {
  auto corpus = std::make_unique<Corpus>(r.data.corpus);
  const auto& info = corpus->info();
  if (info.stage != name(r.train.stage))
    ASC_FAIL("{}: {} is a {} corpus but train.stage is {}", r.where("data.corpus"), r.data.corpus,
             info.stage, name(r.train.stage));
  if (!r.data.tokenizer.empty()) {
    Tokenizer tok(r.data.tokenizer);
    if (tok.checksum() != info.tokenizer_checksum)
      ASC_FAIL_HINT(
          "rebuild the corpus with this tokenizer, or point data.tokenizer at the one used",
          "{}: {} was built with tokenizer {} but data.tokenizer {} is {}",
          r.where("data.tokenizer"), r.data.corpus, info.tokenizer_checksum, r.data.tokenizer,
          tok.checksum());
  }
  if (info.stage == "instruct") check_instruct_corpus(r, info);
  if (info.vocab_size > model.vocab_size)
    ASC_FAIL("{}: {} was built with a {}-token vocabulary but the model has {}",
             r.where("data.corpus"), r.data.corpus, info.vocab_size, model.vocab_size);
  corpus->check_token_ids(model.vocab_size);
  return corpus;
}

class CorpusWindowBatches final : public WindowBatches {
 public:
  CorpusWindowBatches(const Recipe& r, const LlamaConfig& model)
      : WindowBatches(r), corpus_(open_corpus(r, model)) {
    start(r, r.data.corpus);
    buf_.resize(size_t(seq_len_));
  }

 protected:
  int64_t num_samples() const override { return corpus_->num_windows(seq_len_); }
  void window(int64_t i, int64_t* out) const override {
    corpus_->read_tokens(i * seq_len_, seq_len_, buf_.data());
    std::copy(buf_.begin(), buf_.end(), out);
  }

 private:
  std::unique_ptr<Corpus> corpus_;
  mutable std::vector<int32_t> buf_;
};

// Instruction examples: padded per micro-batch, or packed into seq_len rows.
class InstructBatches final : public SampledBatches {
 public:
  InstructBatches(const Recipe& r, const LlamaConfig& model)
      : SampledBatches(r),
        corpus_(open_corpus(r, model)),
        pack_(r.data.pack),
        hide_bos_(r.data.upstream_compat),
        pad_id_(int32_t(corpus_->info().pad_id)) {
    const auto& off = corpus_->doc_offsets();
    int64_t longest = 0;
    for (size_t d = 0; d + 1 < off.size(); ++d) longest = std::max(longest, off[d + 1] - off[d]);
    if (longest > seq_len_)
      ASC_FAIL_HINT("rebuild the corpus with --max-len " + std::to_string(seq_len_) +
                        " or raise data.seq_len",
                    "{}: {} holds an example of {} tokens, longer than data.seq_len ({})",
                    r.where("data.seq_len"), r.data.corpus, longest, seq_len_);
    start(r, r.data.corpus);
  }

 protected:
  int64_t num_samples() const override { return corpus_->info().num_docs; }
  GlobalBatch make(const std::vector<int64_t>& ids) override {
    std::vector<Example> ex(ids.size());
    for (size_t j = 0; j < ids.size(); ++j) {
      const int64_t b = corpus_->doc_offsets()[size_t(ids[j])];
      const int64_t n = corpus_->doc_offsets()[size_t(ids[j]) + 1] - b;
      ex[j].ids.resize(size_t(n));
      ex[j].mask.resize(size_t(n));
      corpus_->read_tokens(b, n, ex[j].ids.data());
      corpus_->read_loss_mask(b, n, ex[j].mask.data());
    }
    if (pack_) {
      Rows rows = collate_packed(ex, seq_len_, pad_id_);
      return split(to_tensor(rows.ids, rows.rows, rows.len),
                   to_tensor(rows.labels, rows.rows, rows.len), &rows);
    }
    GlobalBatch out;  // each micro-batch padded to its own longest example
    for (size_t b = 0; b < ex.size(); b += size_t(micro_)) {
      std::vector<Example> part(ex.begin() + long(b),
                                ex.begin() + long(std::min(ex.size(), b + size_t(micro_))));
      // Upstream's collator (data.upstream_compat): pad = BOS and attention_mask = ids != pad, so
      // no token attends to a BOS (Packing::key_visible_BT).
      Rows rows = collate_padded(part, pad_id_, hide_bos_ ? int32_t(corpus_->info().bos_id) : -1);
      MicroBatch m;
      m.input_ids_BT = to_tensor(rows.ids, rows.rows, rows.len);
      m.labels_BT = to_tensor(rows.labels, rows.rows, rows.len);
      if (hide_bos_) {
        m.packing = std::make_unique<Packing>();
        m.packing->position_ids_BT = to_tensor(rows.positions, rows.rows, rows.len);
        m.packing->segment_ids_BT = to_tensor(rows.segments, rows.rows, rows.len);
        m.packing->key_visible_BT = to_tensor(rows.visible, rows.rows, rows.len);
      }
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  std::unique_ptr<Corpus> corpus_;
  bool pack_, hide_bos_;
  int32_t pad_id_;
};

}  // namespace

std::unique_ptr<Batches> make_batches(const Recipe& r, const LlamaConfig& model) {
  if (r.data.corpus == "demo") {
    if (r.train.stage != Stage::kPretrain)
      ASC_FAIL("{}: train.stage {} needs an instruct corpus (data.corpus: corpus.h5)",
               r.where("train.stage"), r.train.stage);
    return std::make_unique<DemoBatches>(r, model.vocab_size);
  }
  if (r.train.stage == Stage::kInstruct) return std::make_unique<InstructBatches>(r, model);
  return std::make_unique<CorpusWindowBatches>(r, model);
}

Prefetcher::Prefetcher(Batches& batches, int64_t first_step, int64_t total_steps)
    : batches_(batches), total_(total_steps) {
  if (first_step < total_) launch(first_step);
}

GlobalBatch Prefetcher::next(int64_t step, double* wait_s) {
  const auto t0 = std::chrono::steady_clock::now();
  GlobalBatch batch = pending_.get();
  *wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (step + 1 < total_) launch(step + 1);
  return batch;
}

void Prefetcher::launch(int64_t step) {
  // Only this thread touches the corpus (the HDF5 library is not thread-safe); an error there (a
  // corrupted chunk, say) reaches the loop through the future, named as usual.
  pending_ = std::async(std::launch::async, [this, step] { return batches_.global_batch(step); });
}

}  // namespace asc
