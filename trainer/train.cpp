// train.cpp — build model, optimizer, data and run directory; loop (step, log, save); finish.
#include "train.h"

#include <chrono>
#include <filesystem>

#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include "checkpoint/hf_io.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/host_memory.h"
#include "common/stop_signal.h"
#include "metrics/metrics.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "optim/flat_adamw.h"
#include "optim/schedule.h"

namespace asc {
namespace {

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

// The optimizer takes the fp32 model and casts it to the compute dtype itself: the fused one
// re-homes the parameters into flat buffers (fp32 master + bf16 copy), the reference one keeps
// fp32 masters taken before the cast.
std::unique_ptr<Optimizer> make_optimizer(const Recipe& r, LlamaForCausalLM& model) {
  const AdamWOptions o{r.train.beta1, r.train.beta2, r.train.eps, r.train.weight_decay};
  const bool bf16 = r.train.dtype == "bf16";
  NamedTensors named = hf_named_tensors(model);
  if (r.train.optimizer == "fused")
    return std::make_unique<FlatAdamW>(named, o, bf16 ? at::kBFloat16 : at::kFloat);
  std::vector<std::string> names;
  std::vector<at::Tensor> master;
  for (auto& [n, p] : named) {
    names.push_back(n);
    if (bf16) master.push_back(p.detach().clone());
  }
  if (bf16) model->to(torch::kBFloat16);
  std::vector<at::Tensor> params;
  for (auto& p : model->named_parameters()) params.push_back(p.value());
  return std::make_unique<AdamW>(names, params, o, std::move(master));
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

BatchLoss accumulate_gradients(LlamaForCausalLM& model, Optimizer& opt, const GlobalBatch& batch) {
  BatchLoss out;
  for (const auto& m : batch)
    out.targets += count_targets(m.labels_BT), out.tokens += m.input_ids_BT.numel();
  ASC_CHECK(out.targets > 0, "a global batch without target tokens (all labels -100)");
  for (size_t i = 0; i < batch.size(); ++i) {
    const MicroBatch& m = batch[i];
    at::Tensor loss = causal_lm_loss_sum(model(m.input_ids_BT, m.packing.get()), m.labels_BT) /
                      double(out.targets);
    loss.backward();
    opt.accumulate_grads(i + 1 == batch.size());
    out.loss += loss.item<double>();
  }
  return out;
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
  std::unique_ptr<Optimizer> opt = make_optimizer(r, model);

  // --- data and schedule --------------------------------------------------------------------
  std::unique_ptr<Batches> batches = make_batches(r, config);
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
    save_step_checkpoint(run_dir, step, config, opt->state(), state);
  };

  // --- the loop -----------------------------------------------------------------------------
  TrainResult result;
  result.run_dir = run_dir;
  const double t_start = now_s();
  install_stop_signals();
  int64_t tokens_seen = 0;
  Prefetcher prefetch(data, total_steps);
  for (int64_t k = 0; k < total_steps; ++k) {
    const double t0 = now_s();
    double data_wait_s = 0;
    const GlobalBatch batch = prefetch.next(k, &data_wait_s);
    const BatchLoss step_loss = accumulate_gradients(model, *opt, batch);
    const double loss_sum = step_loss.loss;
    const int64_t targets = step_loss.targets;
    const double lr = sched.lr_at(k);
    const double gnorm = opt->clip_and_step(lr, r.train.max_grad_norm);
    opt->zero_grad();

    const double dt = now_s() - t0;
    tokens_seen += targets;
    StepMetrics m;
    m.step = k + 1, m.total_steps = total_steps, m.loss = loss_sum, m.lr = lr, m.grad_norm = gnorm;
    m.tokens_per_s = double(step_loss.tokens) / dt;
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
