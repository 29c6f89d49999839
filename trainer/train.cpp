// train.cpp — build model, optimizer, data and run directory; loop (step, log, save); finish.
#include "train.h"

#include <sys/resource.h>  // getrusage: the start-up memory report

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include <algorithm>

#include <ATen/Parallel.h>         // train.threads
#include <c10/core/DeviceGuard.h>  // our kernels launch on the current device
#include <torch/cuda.h>            // train.device: the GPUs visible

#include "checkpoint/checkpointer.h"  // resume, save, async commit
#include "checkpoint/hf_io.h"         // init_from's weights, Hugging Face names
#include "common/error.h"
#include "common/host_memory.h"   // train.cache_host_memory
#include "data/corpus.h"          // the corpus's tokenizer, recorded in the model
#include "common/stop_signal.h"   // SIGINT/SIGTERM/SIGUSR1 -> a graceful stop
#include "eval/validator.h"       // eval.corpus: held-out loss during training
#include "kernels/cuda_device.h"  // the GPU's peak (MFU) and memory peak
#include "kernels/fused_adamw.h"  // whether the CUDA kernels are built
#include "kernels/layer_kernels.h"
#include "metrics/metrics.h"   // metrics.jsonl, progress line, TensorBoard
#include "metrics/profiler.h"  // logging.profile_*: a Chrome trace of chosen steps
#include "model/llama.h"
#include "optim/flat_adamw.h"  // the optimizer (train.optimizer: fused | reference)
#include "optim/schedule.h"    // the learning-rate schedule
#include "parallel/engine.h"   // parallel.mode none | ddp | zero2 | fsdp
#include "parallel/planner.h"  // the memory plan, checked before anything is allocated
#include "run_control.h"       // stop agreement, non-finite steps

namespace asc {

namespace {

// The architecture a recipe trains: model.init_from's config.json (checked against model.preset
// when both are given), or the preset. `from`: the resolved init_from directory, or empty.
LlamaConfig initial_config(const Recipe& r, std::string* from) {
  // init_from: a Hugging Face directory, or a run / step directory of ours (stage two starts
  // from stage one's newest checkpoint).
  *from = r.model.init_from.empty() ? "" : resolve_model_dir(r.model.init_from);
  LlamaConfig config = from->empty() ? *r.preset_model_config() : read_hf_config(*from);
  if (!from->empty() && !r.model.preset.empty()) {
    // The preset names the architecture the weights must have (and what `plan` assumes).
    const LlamaConfig want = *r.preset_model_config();
    const std::pair<const char*, std::pair<int64_t, int64_t>> fields[] = {
        {"hidden_size", {config.hidden_size, want.hidden_size}},
        {"num_hidden_layers", {config.num_hidden_layers, want.num_hidden_layers}},
        {"num_attention_heads", {config.num_attention_heads, want.num_attention_heads}},
        {"num_key_value_heads", {config.num_key_value_heads, want.num_key_value_heads}},
        {"intermediate_size", {config.intermediate_size, want.intermediate_size}},
        {"vocab_size", {config.vocab_size, want.vocab_size}}};
    for (const auto& [name, v] : fields)
      if (v.first != v.second)
        ASC_FAIL_HINT("point model.init_from at the right model, or fix model.preset",
                      "{}/config.json: {} is {} but model.preset {} ({}) has {}", *from, name,
                      v.first, r.model.preset, r.where("model.preset"), v.second);
  }
  if (r.data.seq_len > config.max_position_embeddings)
    ASC_FAIL("{}: data.seq_len ({}) exceeds max_position_embeddings ({}) of the model",
             r.where("data.seq_len"), r.data.seq_len, config.max_position_embeddings);
  // The model learns the corpus's tokenizer: its config.json records it, and a model already
  // trained with another one (same vocabulary size or not) is refused.
  if (r.data.corpus != "demo" && std::filesystem::exists(r.data.corpus)) {  // (init: not yet)
    const CorpusInfo info = Corpus(r.data.corpus).info();
    check_same_tokenizer(config, *from + "/config.json", info.tokenizer_checksum,
                         r.where("data.corpus") + ": corpus " + r.data.corpus);
    config.tokenizer_xxh64 = info.tokenizer_checksum;
    // Special ids: a preset takes the tokenizer's (Llama 3's BOS is 128000); a base model must
    // already agree with it.
    const auto ends = config.end_token_ids();
    if (from->empty()) {
      config.bos_token_id = info.bos_id, config.eos_token_id = info.eos_id;
      config.eos_token_ids.clear();
    } else if (config.bos_token_id != info.bos_id ||
               std::find(ends.begin(), ends.end(), info.eos_id) == ends.end()) {
      ASC_FAIL_HINT("build the corpus with the base model's own tokenizer",
                    "{}: corpus {} has bos/eos ids {}/{} but {}/config.json has {}/{}",
                    r.where("data.corpus"), r.data.corpus, info.bos_id, info.eos_id, *from,
                    config.bos_token_id, fmt::format("{}", fmt::join(ends, ",")));
    }
    if (info.stage == "instruct") {  // the model answers in this template from now on
      config.prompt_template = info.prompt_template;
      config.prompt_template_xxh64 = info.prompt_template_xxh64;
      config.prompt_template_text = info.prompt_template_text;
    }
  }
  return config;
}

// The initial weights, a range at a time: init_from's (read from its files), or the preset's
// initialisation from train.seed (model/llama.h: the same values for any range split).
ParamSource initial_weights(const Recipe& r, const LlamaConfig& config, const std::string& from) {
  if (!from.empty()) {
    auto files = std::make_shared<WeightReader>(from, config);
    return [files](const std::string& name, int64_t begin, int64_t end, float* out) {
      files->read(name, begin, end, out);
    };
  }
  std::map<std::string, int64_t> numel;
  for (const auto& [name, shape] : llama_parameter_shapes(config)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    numel[name] = n;
  }
  const uint64_t seed = uint64_t(r.train.seed);
  return [config, seed, numel](const std::string& name, int64_t begin, int64_t end, float* out) {
    init_parameter_range(config, seed, name, numel.at(name), begin, end, out);
  };
}

// train.device: the CPU, or the GPU of this process's local rank.
at::Device training_device(const Recipe& r) {
  if (r.train.device == DeviceKind::kCpu) return at::kCPU;
  const int64_t n = int64_t(torch::cuda::device_count());
  if (n == 0)
    ASC_FAIL_HINT("run on a machine with a GPU and a CUDA build, or set train.device: cpu",
                  "{}: train.device is cuda but no CUDA device is visible",
                  r.where("train.device"));
  if (!kernels::cuda_kernels_built() || !kernels::layer_kernels_built())
    ASC_FAIL_HINT("configure the build with nvcc available (the CUDA toolkit)",
                  "{}: train.device is cuda but this build has no CUDA kernels",
                  r.where("train.device"));
  // One GPU per rank: two ranks on one GPU would fail in NCCL's set-up with a vaguer message.
  // Every rank of the node reads the same count, so each stops with this one. Where the launcher
  // binds GPUs per rank (CUDA_VISIBLE_DEVICES, e.g. Slurm's --gpus-per-task), a rank sees only
  // its own and the count says nothing.
  const int64_t local = comm::local_size();
  if (local > n && !std::getenv("CUDA_VISIBLE_DEVICES"))
    ASC_FAIL_HINT(fmt::format("launch at most {} rank(s) per node (mpirun -np {} per node, or "
                              "--ntasks-per-node={}), one GPU each",
                              n, n, n),
                  "{}: train.device is cuda with {} ranks on this node but {} GPU(s) visible",
                  r.where("train.device"), local, n);
  return at::Device(at::kCUDA, c10::DeviceIndex(comm::local_rank() % n));
}

}  // namespace

LlamaForCausalLM initial_model(const Recipe& r) {
  std::string from;
  const LlamaConfig config = initial_config(r, &from);
  const ParamSource weights = initial_weights(r, config, from);
  torch::manual_seed(uint64_t(r.train.seed));
  LlamaForCausalLM model(config);
  model->fill_parameters(weights);
  return model;
}

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

BatchLoss accumulate_gradients(LlamaForCausalLM& model, ParallelEngine& engine,
                               const GlobalBatch& batch, comm::Communicator& comm, bool inject_nan,
                               int64_t loss_chunk_rows) {
  BatchLoss out;
  for (const auto& m : batch)
    out.targets += count_targets(m.labels_BT), out.tokens += m.input_ids_BT.numel();
  int64_t micro = int64_t(batch.size());
  at::Tensor counts = at::tensor({out.targets, out.tokens}, at::kLong);
  at::Tensor most = at::tensor({micro, -micro}, at::kLong);  // max, and -min
  comm.all_reduce(counts)->wait();
  comm.all_reduce(most, {comm::ReduceOp::kMax})->wait();
  out.targets = counts[0].item<int64_t>(), out.tokens = counts[1].item<int64_t>();
  micro = most[0].item<int64_t>();
  // Decided on agreed values, so every rank fails alike instead of one leaving the others.
  ASC_CHECK(most[1].item<int64_t>() < 0, "a rank received no micro-batch for this step");
  ASC_CHECK(out.targets > 0, "a global batch without target tokens (all labels -100)");
  ASC_CHECK(!batch.empty(), "no micro-batch for this step");
  for (int64_t i = 0; i < micro; ++i) {
    const bool last = i + 1 == micro;
    at::Tensor labels, ids;
    const Packing* packing = nullptr;
    if (i < int64_t(batch.size())) {
      ids = batch[size_t(i)].input_ids_BT, labels = batch[size_t(i)].labels_BT;
      packing = batch[size_t(i)].packing.get();
    } else {  // an empty micro-batch: no targets, so no loss and no gradient
      ids = batch[0].input_ids_BT, labels = at::full_like(batch[0].labels_BT, -100);
      packing = batch[0].packing.get();
    }
    const at::Device dev = model->head_weight().device();
    ids = ids.to(dev), labels = labels.to(dev);
    engine.begin_micro_batch(last);
    at::Tensor loss = (loss_chunk_rows > 0 ? model->loss_sum(ids, labels, packing, loss_chunk_rows)
                                           : causal_lm_loss_sum(model(ids, packing), labels)) /
                      double(out.targets);
    if (inject_nan && i == 0) loss = loss * std::nan("");
    loss.backward();
    engine.accumulate_grads(last);
    out.loss += loss.item<double>();
  }
  at::Tensor l = at::full({1}, out.loss, at::kDouble);
  comm.all_reduce(l)->wait();
  return out.loss = l.item<double>(), out;
}

namespace {

// The ranks of the job: `host` carries the trainer's own small exchanges and, on the CPU, the
// engine's collectives; with train.device cuda the engine's go through `device` (NCCL, on its own
// stream). parallel.mode none is a job of one process: `host` is the self communicator (no MPI)
// and carries the engine's collectives on any device.
struct Ranks {
  std::unique_ptr<comm::Communicator> host, device;
  int rank = 0, world = 1;
  comm::Communicator& engine() const { return device ? *device : *host; }
};

Ranks join_ranks(const Recipe& r, const at::Device& device) {
  Ranks out;
  if (r.parallel.mode == ParallelMode::kNone) {
    out.host = comm::make_self_communicator();
    return out;
  }
  out.host = comm::make_mpi_communicator(r.parallel.timeout_s);
  out.rank = out.host->rank(), out.world = out.host->size();
  if (device.is_cuda()) out.device = comm::make_nccl_communicator(r.parallel.timeout_s);
  return out;
}

// The host memory each rank of this node may use (planner.h), the least over all ranks: every
// rank then decides alike whether the run fits, and none waits for one that stopped.
int64_t agreed_host_bytes(comm::Communicator& comm) {
  at::Tensor t = at::tensor({-int64_t(host_bytes_per_rank(comm::local_size()))}, at::kLong);
  comm.all_reduce(t, {comm::ReduceOp::kMax})->wait();
  return -t.item<int64_t>();
}

// The model, the engine that wraps it and the optimizer that steps the engine's buffers. The
// parameters get storage in the engine, each rank only for what it owns (none, ddp:
// everything), filled from the initial weights or, when resuming, left for the checkpoint.
struct Trainee {
  LlamaForCausalLM model{nullptr};
  std::unique_ptr<ParallelEngine> engine;
  std::unique_ptr<FlatAdamW> opt;
  std::unique_ptr<TrainingState> state;  // what the checkpoint saves of the two
  int64_t planned_peak = 0;              // the plan's peak resident memory of this rank
};

Trainee build_trainee(const Recipe& r, const Ranks& ranks, const at::Device& device,
                      bool resuming) {
  Trainee t;
  torch::manual_seed(uint64_t(r.train.seed));
  std::string from;
  const LlamaConfig c = initial_config(r, &from);
  // A run its own memory plan says cannot fit stops here, before allocating, with the numbers.
  const MemoryPlanInput plan = plan_input(r, c, ranks.world);
  check_plan_fits_host(r, plan, comm::local_size(), agreed_host_bytes(*ranks.host));
  t.planned_peak = plan_memory(plan).host_peak();
  if (device.is_cuda())
    check_plan_fits_device(r, plan, kernels::cuda_total_memory_bytes(device.index()));
  {
    DeferParameterStorage defer(device);
    t.model = LlamaForCausalLM(c);
  }
  const ParamSource zeros = [](const std::string&, int64_t b, int64_t e, float* out) {
    std::fill(out, out + (e - b), 0.0f);
  };
  t.engine = std::make_unique<ParallelEngine>(
      t.model, ranks.engine(), r.parallel.mode, *r.parallel.activation_checkpointing,
      r.train.dtype == DType::kBf16 ? at::kBFloat16 : at::kFloat,
      resuming ? zeros : initial_weights(r, c, from));
  t.opt = std::make_unique<FlatAdamW>(
      AdamWOptions{r.train.beta1, r.train.beta2, r.train.eps, r.train.weight_decay},
      r.train.optimizer);
  t.state = std::make_unique<TrainingState>(*t.engine, *t.opt);
  return t;
}

// What start-up cost this rank: its peak resident memory (getrusage) beside the model state the
// engine keeps.
void report_startup_memory(int rank, const ParallelEngine& engine) {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  fmt::print(stderr, "rank {}: start-up peak resident memory {} MiB (model state kept: {} MiB)\n",
             rank, ru.ru_maxrss / 1024, engine.model_state_bytes().total() >> 20);
}

// What the run cost this rank at its end: its peak resident memory (VmHWM) against the plan's.
void report_peak_memory(int rank, int64_t planned) {
  const long long peak = peak_resident_bytes();
  fmt::print(stderr, "rank {}: peak resident memory {} MiB (planned {} MiB, {:+.1f}%)\n", rank,
             peak >> 20, planned >> 20,
             peak > 0 ? 100.0 * double(planned - peak) / double(peak) : 0.0);
}

// One line of metrics per step (rank 0): loss, lr, norm, throughput, MFU, device memory.
class StepLog {
 public:
  StepLog(const Recipe& r, const LlamaConfig& config, const at::Device& device, int world,
          int64_t total_steps)
      : device_(device), world_(world), total_steps_(total_steps), t_start_(now_s()) {
    flops_per_token_ = config.train_flops_per_token(r.data.seq_len);
    // The device's dense bf16 peak for MFU: logging.peak_tflops, else known GPUs' (0: unknown).
    peak_tflops_ = r.logging.peak_tflops > 0 ? r.logging.peak_tflops
                   : device.is_cuda()        ? kernels::cuda_peak_bf16_tflops(device.index())
                                             : 0.0;
  }
  void log(MetricsLogger* metrics, int64_t step, const BatchLoss& b, double lr, double grad_norm,
           double step_s, double data_wait_s, const Validator::Result* eval) {
    tokens_seen_ += b.targets;
    if (!metrics) return;
    StepMetrics m;
    m.step = step, m.total_steps = total_steps_, m.loss = b.loss, m.lr = lr;
    m.grad_norm = grad_norm;
    m.tokens_per_s = double(b.tokens) / step_s;
    m.tflops = flops_per_token_ * m.tokens_per_s / 1e12;
    // tflops counts every rank's tokens; the peak is one device's.
    m.mfu = peak_tflops_ > 0 ? m.tflops / (peak_tflops_ * world_) : -1;
    if (device_.is_cuda())
      m.device_peak_bytes = kernels::cuda_peak_allocated_bytes(device_.index());
    m.tokens = tokens_seen_, m.elapsed_s = now_s() - t_start_;
    m.step_s = step_s, m.data_wait_s = data_wait_s;
    if (eval) m.has_eval = true, m.eval_loss = eval->loss, m.eval_tokens = eval->tokens;
    metrics->log(m);
  }

 private:
  at::Device device_;
  int world_;
  int64_t total_steps_, tokens_seen_ = 0;
  double t_start_, flops_per_token_ = 0, peak_tflops_ = 0;
};

}  // namespace

TrainHooks TrainHooks::from_environment() {
  TrainHooks h;
  if (const char* v = std::getenv("ASCLEPIUS_FAULT_NAN")) {
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
      long long step = 0;
      int rank = 0;
      if (std::sscanf(item.c_str(), "%lld:%d", &step, &rank) != 2)
        ASC_FAIL("ASCLEPIUS_FAULT_NAN: '{}' is not STEP:RANK", item);
      h.nan_at.insert({int64_t(step), rank});
    }
  }
  if (const char* v = std::getenv("ASCLEPIUS_EXIT_AFTER_STARTUP"))
    h.exit_after_startup = std::string(v) == "1";
  if (const char* v = std::getenv("ASCLEPIUS_ASYNC_SAVE_DELAY_MS"))
    h.async_write_delay_ms = std::atoi(v);
  if (const char* v = std::getenv("ASCLEPIUS_FAULT_SAVE")) h.save_fault = v;
  return h;
}

Tf32Scope::Tf32Scope(bool tf32) {
  // The boolean setters keep libtorch's two TF32 states (the legacy flags and the per-backend
  // precision) consistent; setting only the new one makes allowTF32CuBLAS() throw ("mix of the
  // legacy and new APIs"), which cuBLAS calls would hit.
  auto& ctx = at::globalContext();
  matmul_ = ctx.allowTF32CuBLAS();
  conv_ = ctx.allowTF32CuDNN();
  ctx.setAllowTF32CuBLAS(tf32);
  ctx.setAllowTF32CuDNN(tf32);
}

Tf32Scope::~Tf32Scope() {
  auto& ctx = at::globalContext();
  ctx.setAllowTF32CuBLAS(matmul_);
  ctx.setAllowTF32CuDNN(conv_);
}

TrainResult train(const Recipe& r, const TrainOptions& o) {
  // From the start: a SIGTERM while the model loads stops the run after its first step (with a
  // checkpoint) instead of killing it.
  install_stop_signals();
  check_thread_count(r.train.threads, "train.threads");
  if (r.train.threads > 0) at::set_num_threads(int(r.train.threads));
  if (r.train.cache_host_memory && !cache_host_memory())
    fmt::print(stderr, "warning: the C library refused the host-memory cache settings\n");

  // --- ranks, model, optimizer ---------------------------------------------------------------
  const at::Device device = training_device(r);
  const c10::DeviceGuard device_guard(device);  // our kernels launch on the current device
  const Tf32Scope tf32(r.train.tf32);           // fp32 matmuls on GPUs in TF32 (upstream) or IEEE
  const Ranks ranks = join_ranks(r, device);
  comm::Communicator& comm = *ranks.host;
  // Decided once: a resumed run's parameters come from its checkpoint, not the initial weights.
  const bool resuming = run_has_checkpoints(r.checkpoint.dir);
  Trainee trainee = build_trainee(r, ranks, device, resuming);
  LlamaForCausalLM& model = trainee.model;
  ParallelEngine& engine = *trainee.engine;
  TrainingState& state = *trainee.state;
  const NamedTensors params = hf_named_tensors(model);

  // --- data and schedule ---------------------------------------------------------------------
  std::unique_ptr<Batches> data = make_batches(r, model->config());
  const int64_t total_steps =
      r.train.max_steps > 0 ? r.train.max_steps
                            : int64_t(std::ceil(r.train.epochs * double(data->steps_per_epoch())));
  const LrSchedule sched{r.train.lr_schedule, r.train.lr,
                         warmup_steps_from_ratio(total_steps, r.train.warmup_ratio), total_steps};
  std::unique_ptr<Validator> validator;  // eval.corpus, checked before anything is written
  if (!r.eval.corpus.empty()) validator = Validator::open(r, model->config(), &comm);

  // --- resume or start -----------------------------------------------------------------------
  Checkpointer ckpt(r, model->config(), &comm, resuming, o.hooks.async_write_delay_ms,
                    o.hooks.save_fault);
  const int64_t first_step = ckpt.resume(state, params, total_steps);
  if (first_step > 0) data->start_at(first_step);
  report_startup_memory(ranks.rank, engine);
  TrainResult result;
  result.run_dir = ckpt.run_dir(), result.rank = ranks.rank, result.steps = first_step;
  if (o.hooks.exit_after_startup) {
    comm.barrier();
    return result;
  }
  ckpt.begin_run(first_step);
  std::unique_ptr<MetricsLogger> metrics;
  if (ranks.rank == 0)
    metrics =
        std::make_unique<MetricsLogger>(ckpt.run_dir(), r.logging.tensorboard, r.logging.progress);
  if (first_step >= total_steps) return result;  // already complete: nothing to do or save
  if (r.checkpoint.async && r.checkpoint.every_steps > 0) ckpt.prepare_async(state, params);
  RunControl control(&comm, r.train.max_bad_steps, o.stop_after_step);
  StepLog step_log(r, model->config(), device, ranks.world, total_steps);
  StepProfiler profiler(r.logging.profile_start_step, r.logging.profile_steps,
                        fmt::format("{}/profile/trace-rank{}.json", ckpt.run_dir(), ranks.rank),
                        device.is_cuda());

  // --- the loop ------------------------------------------------------------------------------
  Prefetcher prefetch(*data, first_step, total_steps);
  for (int64_t k = first_step; k < total_steps; ++k) {
    const int64_t step = k + 1;
    profiler.before_step(step);
    const double t0 = now_s();
    double data_wait_s = 0;
    const GlobalBatch batch = prefetch.next(k, &data_wait_s);
    const BatchLoss loss =
        accumulate_gradients(model, engine, batch, comm,
                             o.hooks.nan_at.count({step, ranks.rank}) > 0, r.train.loss_chunk_rows);
    const double lr = sched.lr_at(k);
    // Not finite (on any rank: the loss and the norm are global): nothing is updated anywhere.
    const double gnorm = std::isfinite(loss.loss)
                             ? engine.step(*trainee.opt, lr, r.train.max_grad_norm)
                             : std::nan("");
    engine.zero_grad();
    control.account(step, loss.loss, gnorm);
    const double step_s = now_s() - t0;
    profiler.after_step(step);
    std::optional<Validator::Result> eval;
    if (validator && validator->due(step, total_steps)) eval = validator->run(model, engine, &comm);
    step_log.log(metrics.get(), step, loss, lr, gnorm, step_s, data_wait_s,
                 eval ? &*eval : nullptr);
    result.losses.push_back(loss.loss);
    result.steps = step;

    const RunControl::Agreed agreed = control.agree(step, ckpt.writing());
    ckpt.commit_if_written(agreed.all_written);
    if ((result.stopped_by_signal = agreed.stop_signal) != 0) break;  // saved below
    if (r.checkpoint.every_steps > 0 && step % r.checkpoint.every_steps == 0 && step < total_steps)
      ckpt.save(step, loss.loss, state, params, r.checkpoint.async);
  }
  if (metrics) metrics->finish();
  result.skipped_steps = control.skipped_steps();
  if (r.checkpoint.at_end || result.stopped_by_signal)
    ckpt.save(result.steps, result.losses.empty() ? 0.0 : result.losses.back(), state, params,
              /*async=*/false);
  else
    ckpt.finish();  // an async save still in flight is committed
  report_peak_memory(ranks.rank, trainee.planned_peak);
  return result;
}

}  // namespace asc
