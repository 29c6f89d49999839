// train.cpp — build model, optimizer, data and run directory; loop (step, log, save); finish.
#include "train.h"

#include <chrono>
#include <filesystem>
#include <future>

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include "checkpoint/hf_io.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/host_memory.h"
#include "common/stop_signal.h"
#include "data/corpus.h"
#include "data/demo_corpus.h"
#include "data/sampler.h"
#include "data/tokenizer.h"
#include "metrics/metrics.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

namespace asc {
namespace {

// Global batches of seq_len-token samples, epoch after epoch, each epoch a fresh seeded
// permutation of the samples; the remainder of an epoch that does not fill a global batch is
// dropped (as the HF Trainer does). Labels = inputs (shifted inside the loss).
class Batches {
 public:
  virtual ~Batches() = default;
  virtual int64_t num_samples() const = 0;
  virtual void sample(int64_t i, int64_t* out) const = 0;  // seq_len tokens

  explicit Batches(const Recipe& r)
      : seq_len_(r.data.seq_len),
        global_(r.train.global_batch_size),
        seed_(uint64_t(r.train.seed)) {}
  int64_t steps_per_epoch() const { return num_samples() / global_; }
  // The global batch of `step`: steps are taken in order, so the sampler's next batch.
  at::Tensor global_batch(int64_t step) {  // [G, T] int64
    ASC_CHECK(step == next_step_, "batches are taken in order: asked for step {}, next is {}", step,
              next_step_);
    ++next_step_;
    const std::vector<int64_t> ids = sampler_->next_local_batch();
    auto batch = at::empty({int64_t(ids.size()), seq_len_}, at::kLong);
    for (size_t j = 0; j < ids.size(); ++j) sample(ids[j], batch[int64_t(j)].data_ptr<int64_t>());
    return batch;
  }

 protected:
  // Called by the derived constructor once num_samples() works: one process is its own
  // coordinator (a LocalChannel); multi-rank runs will pass the MPI channel here.
  void start(const Recipe& r, const std::string& what) {
    if (num_samples() < global_)
      ASC_FAIL("{}: {} holds {} samples of {} tokens, fewer than train.global_batch_size ({})",
               r.where("data.corpus"), what, num_samples(), seq_len_, global_);
    sampler_ = std::make_unique<ShardedSampler>(channel_, seed_, global_,
                                                [this] { return num_samples(); });
  }
  int64_t seq_len_, global_;
  uint64_t seed_;

 private:
  LocalChannel channel_;
  std::unique_ptr<ShardedSampler> sampler_;
  int64_t next_step_ = 0;
};

class DemoBatches final : public Batches {
 public:
  DemoBatches(const Recipe& r, int64_t vocab)
      : Batches(r), corpus_(vocab, r.data.seq_len, r.data.demo_samples, uint64_t(r.train.seed)) {
    start(r, "the demo corpus (data.demo_samples)");
  }
  int64_t num_samples() const override { return corpus_.size(); }
  void sample(int64_t i, int64_t* out) const override { corpus_.sample(i, out); }

 private:
  DemoCorpus corpus_;
};

// A pretraining corpus: consecutive seq_len windows of the token stream.
class CorpusBatches final : public Batches {
 public:
  CorpusBatches(const Recipe& r, const LlamaConfig& model) : Batches(r), corpus_(r.data.corpus) {
    const auto& info = corpus_.info();
    if (info.stage != "pretrain")
      ASC_FAIL(
          "{}: {} is an {} corpus; instruction tuning (train.stage: instruct) is not "
          "implemented yet",
          r.where("data.corpus"), r.data.corpus, info.stage);
    if (!r.data.tokenizer.empty()) {
      Tokenizer tok(r.data.tokenizer);
      if (tok.checksum() != info.tokenizer_checksum)
        ASC_FAIL_HINT(
            "rebuild the corpus with this tokenizer, or point data.tokenizer at the one used",
            "{}: {} was built with tokenizer {} but data.tokenizer {} is {}",
            r.where("data.tokenizer"), r.data.corpus, info.tokenizer_checksum, r.data.tokenizer,
            tok.checksum());
    }
    if (info.vocab_size > model.vocab_size)
      ASC_FAIL("{}: {} was built with a {}-token vocabulary but the model has {}",
               r.where("data.corpus"), r.data.corpus, info.vocab_size, model.vocab_size);
    corpus_.check_token_ids(model.vocab_size);
    start(r, r.data.corpus);
    buf_.resize(size_t(seq_len_));
  }
  int64_t num_samples() const override { return corpus_.num_windows(seq_len_); }
  void sample(int64_t i, int64_t* out) const override {
    corpus_.read_tokens(i * seq_len_, seq_len_, buf_.data());
    std::copy(buf_.begin(), buf_.end(), out);
  }

 private:
  Corpus corpus_;
  mutable std::vector<int32_t> buf_;
};

// Prepares the next global batch on a background thread while the current step computes. Only
// that thread touches the corpus (the HDF5 library is not thread-safe); an error there (a
// corrupted chunk, say) reaches the loop through the future, named as usual.
class Prefetcher {
 public:
  Prefetcher(Batches& batches, int64_t total_steps) : batches_(batches), total_(total_steps) {
    if (total_ > 0) launch(0);
  }
  // The batch of `step` (steps are taken in order); wait_s = how long the loop waited for it.
  at::Tensor next(int64_t step, double* wait_s) {
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor batch = pending_.get();
    *wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step + 1 < total_) launch(step + 1);
    return batch;
  }

 private:
  void launch(int64_t step) {
    pending_ = std::async(std::launch::async, [this, step] { return batches_.global_batch(step); });
  }
  Batches& batches_;
  int64_t total_;
  std::future<at::Tensor> pending_;
};

LlamaForCausalLM build_model(const Recipe& r) {
  LlamaConfig config =
      r.model.init_from.empty() ? *r.preset_model_config() : read_hf_config(r.model.init_from);
  if (r.data.seq_len > config.max_position_embeddings)
    ASC_FAIL("{}: data.seq_len ({}) exceeds max_position_embeddings ({}) of the model",
             r.where("data.seq_len"), r.data.seq_len, config.max_position_embeddings);
  torch::manual_seed(uint64_t(r.train.seed));
  LlamaForCausalLM model(config);
  model->init_weights();
  if (!r.model.init_from.empty()) load_hf_weights(r.model.init_from, model);
  return model;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

double accumulate_gradients(LlamaForCausalLM& model, AdamW& opt, const at::Tensor& ids,
                            const at::Tensor& labels, int64_t micro) {
  const int64_t targets = count_targets(labels);
  ASC_CHECK(targets > 0, "a global batch without target tokens (all labels -100)");
  double loss_sum = 0;
  for (int64_t a = 0; a * micro < ids.size(0); ++a) {
    at::Tensor loss = causal_lm_loss_sum(model(ids.slice(0, a * micro, (a + 1) * micro)),
                                         labels.slice(0, a * micro, (a + 1) * micro)) /
                      double(targets);
    loss.backward();
    opt.accumulate_grads();
    loss_sum += loss.item<double>();
  }
  return loss_sum;
}

TrainResult train(const Recipe& r) {
  if (r.world_size != 1)
    ASC_FAIL("multi-rank training (parallel.mode {}) is not implemented yet; run one process",
             r.parallel.mode);
  if (r.train.threads > 0) at::set_num_threads(int(r.train.threads));
  if (r.train.cache_host_memory && !cache_host_memory())
    fmt::print(stderr, "warning: the C library refused the host-memory cache settings\n");

  // --- model, compute dtype, optimizer ------------------------------------------------------
  LlamaForCausalLM model = build_model(r);
  const LlamaConfig& config = model->config();
  NamedTensors named = hf_named_tensors(model);
  std::vector<std::string> names;
  std::vector<at::Tensor> params, master;
  for (auto& [n, p] : named) names.push_back(n), master.push_back(p.detach().clone());
  const bool bf16 = r.train.dtype == "bf16";
  if (bf16) model->to(torch::kBFloat16);
  for (auto& p : model->named_parameters()) params.push_back(p.value());
  AdamW opt(names, params, {r.train.beta1, r.train.beta2, r.train.eps, r.train.weight_decay},
            bf16 ? master : std::vector<at::Tensor>{});
  master.clear();

  // --- data and schedule --------------------------------------------------------------------
  std::unique_ptr<Batches> batches;
  if (r.data.corpus == "demo")
    batches = std::make_unique<DemoBatches>(r, config.vocab_size);
  else
    batches = std::make_unique<CorpusBatches>(r, config);
  Batches& data = *batches;
  const int64_t total_steps =
      r.train.max_steps > 0 ? r.train.max_steps
                            : int64_t(std::ceil(r.train.epochs * double(data.steps_per_epoch())));
  LrSchedule sched{r.train.lr_schedule, r.train.lr,
                   warmup_steps_from_ratio(total_steps, r.train.warmup_ratio), total_steps};

  // --- run directory --------------------------------------------------------------------------
  const std::string run_dir = r.checkpoint.dir;
  if (std::filesystem::exists(run_dir + "/latest"))
    ASC_FAIL_HINT(
        "choose a new checkpoint.dir or remove the old run (resume is not implemented yet)",
        "{}: run directory {} already holds checkpoints (latest: {})", r.where("checkpoint.dir"),
        run_dir, resolve_model_dir(run_dir));
  std::filesystem::create_directories(run_dir);
  write_file_atomic(run_dir + "/recipe.yaml", recipe_to_yaml(r));
  MetricsLogger metrics(run_dir, r.logging.tensorboard, r.logging.progress);
  const double flops_per_token = config.train_flops_per_token(r.data.seq_len);
  const double peak_tflops = r.logging.peak_tflops;  // 0: unknown on CPU

  auto save = [&](int64_t step, double loss) {
    std::string state = fmt::format(
        "{{\"step\": {}, \"samples\": {}, \"loss\": {}, \"world_size\": 1, \"dtype\": \"{}\"}}\n",
        step, step * r.train.global_batch_size, loss, r.train.dtype);
    save_step_checkpoint(
        run_dir, step, config,
        [&] {
          NamedTensors m;
          for (size_t i = 0; i < names.size(); ++i) m.emplace_back(names[i], opt.master()[i]);
          return m;
        }(),
        state);
  };

  // --- the loop -----------------------------------------------------------------------------
  TrainResult result;
  result.run_dir = run_dir;
  const int64_t micro = r.train.micro_batch_size;
  const double t_start = now_s();
  install_stop_signals();
  int64_t tokens_seen = 0;
  Prefetcher prefetch(data, total_steps);
  for (int64_t k = 0; k < total_steps; ++k) {
    const double t0 = now_s();
    double data_wait_s = 0;
    at::Tensor batch = prefetch.next(k, &data_wait_s);  // labels = inputs (shifted in the loss)
    const double loss_sum = accumulate_gradients(model, opt, batch, batch, micro);
    const int64_t targets = count_targets(batch);
    const double gnorm = opt.grad_norm();
    const double lr = sched.lr_at(k);
    opt.step(lr, clip_factor(gnorm, r.train.max_grad_norm));
    opt.zero_grad();

    const double dt = now_s() - t0;
    tokens_seen += targets;
    StepMetrics m;
    m.step = k + 1, m.total_steps = total_steps, m.loss = loss_sum, m.lr = lr, m.grad_norm = gnorm;
    m.tokens_per_s = double(batch.numel()) / dt;
    m.tflops = flops_per_token * m.tokens_per_s / 1e12;
    m.mfu = peak_tflops > 0 ? m.tflops / peak_tflops : -1;
    m.tokens = tokens_seen, m.elapsed_s = now_s() - t_start;
    m.step_s = dt, m.data_wait_s = data_wait_s;
    metrics.log(m);
    result.losses.push_back(loss_sum);
    result.steps = k + 1;
    if (stop_signal() != 0) break;  // saved below, like the end of the run
    if (r.checkpoint.every_steps > 0 && (k + 1) % r.checkpoint.every_steps == 0 &&
        k + 1 < total_steps)
      save(k + 1, loss_sum);
  }
  metrics.finish();
  result.stopped_by_signal = stop_signal();
  save(result.steps, result.losses.empty() ? 0.0 : result.losses.back());
  return result;
}

}  // namespace asc
