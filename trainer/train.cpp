// train.cpp — build model, optimizer, data and run directory; loop (step, log, save); finish.
#include "train.h"

#include <atomic>
#include <chrono>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>
#include <sstream>

#include <sys/resource.h>

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "checkpoint/hf_io.h"
#include "checkpoint/sharded.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/host_memory.h"
#include "common/stop_signal.h"
#include "kernels/cuda_device.h"
#include "kernels/fused_adamw.h"
#include "kernels/layer_kernels.h"
#include "metrics/metrics.h"
#include "model/llama.h"
#include "optim/adamw.h"
#include "optim/flat_adamw.h"
#include "parallel/engine.h"
#include "parallel/unit_function.h"
#include "optim/schedule.h"

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
  if (r.train.device == "cpu") return at::kCPU;
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

bool has_checkpoints(const std::string& run_dir) {
  // A run killed between renaming its first checkpoint and writing `latest` has step
  // directories but no `latest`: it is resumed too, not started over.
  return std::filesystem::exists(run_dir + "/latest") || !step_dirs_newest_first(run_dir).empty();
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

// Resuming at step k after a run that went further (it died before its next checkpoint): the
// metrics of the steps about to be redone are dropped, so each step has one line.
void drop_metrics_after(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return;
  std::istringstream in(read_file(path));
  std::string line, kept;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    int64_t s = -1;
    try {
      s = nlohmann::json::parse(line).at("step").get<int64_t>();
    } catch (const nlohmann::json::exception&) {  // a line torn by the crash
    }
    if (s >= 1 && s <= step)
      kept += line + "\n";
    else
      ++dropped;
  }
  if (dropped == 0) return;
  write_file_atomic(path, kept);
  fmt::print(stderr, "note: {}: dropped {} line(s) after step {} (to be redone)\n", path, dropped,
             step);
}

// The optimizer takes the fp32 model and casts it to the compute dtype itself: the parallel
// engine (any parallel.mode but none) and the fused optimizer re-home the parameters into flat
// buffers (fp32 master + bf16 copy), the reference one keeps fp32 masters taken before the cast.
std::unique_ptr<Optimizer> make_optimizer(const Recipe& r, LlamaForCausalLM& model,
                                          comm::Communicator* comm, const ParamSource& initial) {
  const AdamWOptions o{r.train.beta1, r.train.beta2, r.train.eps, r.train.weight_decay};
  const bool bf16 = r.train.dtype == "bf16";
  if (comm)
    return std::make_unique<ParallelEngine>(model, *comm, r.parallel.mode,
                                            *r.parallel.activation_checkpointing, o,
                                            bf16 ? at::kBFloat16 : at::kFloat, initial);
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

// Test-only fault injection: ASCLEPIUS_FAULT_NAN="STEP:RANK[,STEP:RANK...]" (1-based steps) makes
// that rank's loss NaN at that step.
std::set<std::pair<int64_t, int>> nan_faults() {
  std::set<std::pair<int64_t, int>> out;
  const char* v = std::getenv("ASCLEPIUS_FAULT_NAN");
  if (!v) return out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    long long step = 0;
    int rank = 0;
    if (std::sscanf(item.c_str(), "%lld:%d", &step, &rank) != 2)
      ASC_FAIL("ASCLEPIUS_FAULT_NAN: '{}' is not STEP:RANK", item);
    out.insert({int64_t(step), rank});
  }
  return out;
}

// Resuming: the recipe must not change what is computed. Logging, checkpointing, the parallel
// layout (mode, world size, checkpointing) and threads may change, and are noted.
void check_resume_compatible(const Recipe& r, const std::string& saved_path, bool talk) {
  const YAML::Node now = YAML::Load(recipe_to_yaml(r));
  YAML::Node saved;
  try {
    saved = YAML::LoadFile(saved_path);
  } catch (const YAML::Exception& e) {
    ASC_FAIL("{}: cannot read the resumed run's recipe: {}", saved_path, e.what());
  }
  auto value = [](const YAML::Node& root, const std::string& key) -> std::string {
    const size_t dot = key.find('.');
    const YAML::Node sec = root[key.substr(0, dot)];
    if (!sec || !sec.IsMap()) return "";
    const YAML::Node v = sec[key.substr(dot + 1)];
    if (!v || v.IsNull()) return "";
    return YAML::Dump(v);
  };
  static const std::set<std::string> harmless = {"train.threads",         "train.cache_host_memory",
                                                 "train.max_bad_steps",   "train.optimizer",
                                                 "train.loss_chunk_rows", "train.device"};
  for (const std::string& key : recipe_keys()) {
    const std::string a = value(now, key), b = value(saved, key);
    if (a == b) continue;
    const bool free = harmless.count(key) || key.rfind("logging.", 0) == 0 ||
                      key.rfind("checkpoint.", 0) == 0 || key.rfind("parallel.", 0) == 0;
    if (!free)
      ASC_FAIL_HINT("resume with the run's own value, or start a new run (a new checkpoint.dir)",
                    "{}: {} is {} but the run being resumed used {} ({}); that changes what is "
                    "trained, so the run cannot continue with it",
                    r.where(key), key, a.empty() ? "unset" : a, b.empty() ? "unset" : b,
                    saved_path);
    if (talk && key != "checkpoint.resume")
      fmt::print(stderr, "note: resuming with {} = {} (the run used {})\n", key,
                 a.empty() ? "unset" : a, b.empty() ? "unset" : b);
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

BatchLoss accumulate_gradients(LlamaForCausalLM& model, Optimizer& opt, const GlobalBatch& batch,
                               comm::Communicator* comm, bool inject_nan, int64_t loss_chunk_rows) {
  BatchLoss out;
  for (const auto& m : batch)
    out.targets += count_targets(m.labels_BT), out.tokens += m.input_ids_BT.numel();
  int64_t micro = int64_t(batch.size());
  if (comm) {
    at::Tensor counts = at::tensor({out.targets, out.tokens}, at::kLong);
    at::Tensor most = at::tensor({micro, -micro}, at::kLong);  // max, and -min
    comm->all_reduce(counts)->wait();
    comm->all_reduce(most, {comm::ReduceOp::kMax})->wait();
    out.targets = counts[0].item<int64_t>(), out.tokens = counts[1].item<int64_t>();
    micro = most[0].item<int64_t>();
    // Decided on agreed values, so every rank fails alike instead of one leaving the others.
    ASC_CHECK(most[1].item<int64_t>() < 0, "a rank received no micro-batch for this step");
  }
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
    opt.begin_micro_batch(last);
    at::Tensor loss = (loss_chunk_rows > 0 ? model->loss_sum(ids, labels, packing, loss_chunk_rows)
                                           : causal_lm_loss_sum(model(ids, packing), labels)) /
                      double(out.targets);
    if (inject_nan && i == 0) loss = loss * std::nan("");
    loss.backward();
    opt.accumulate_grads(last);
    out.loss += loss.item<double>();
  }
  if (comm) {
    at::Tensor l = at::full({1}, out.loss, at::kDouble);
    comm->all_reduce(l)->wait();
    out.loss = l.item<double>();
  }
  return out;
}

TrainResult train(const Recipe& r) {
  // From the start: a SIGTERM while the model loads stops the run after its first step (with a
  // checkpoint) instead of killing it.
  install_stop_signals();
  if (r.train.threads > 0) at::set_num_threads(int(r.train.threads));
  if (r.train.cache_host_memory && !cache_host_memory())
    fmt::print(stderr, "warning: the C library refused the host-memory cache settings\n");

  // --- ranks, model, compute dtype, optimizer -----------------------------------------------
  // Every parallel mode runs over the communicator, also at world size 1 (same code path).
  // `comm` (MPI) carries the trainer's own small host exchanges; with train.device cuda the
  // engine's collectives go through `device_comm` (NCCL, on its own stream).
  std::unique_ptr<comm::Communicator> comm, device_comm;
  if (r.parallel.mode != "none") comm = comm::make_mpi_communicator(r.parallel.timeout_s);
  const int rank = comm ? comm->rank() : 0;
  const at::Device device = training_device(r);
  const c10::DeviceGuard device_guard(device);  // our kernels launch on the current device
  if (comm && device.is_cuda()) device_comm = comm::make_nccl_communicator(r.parallel.timeout_s);
  const std::string run_dir = r.checkpoint.dir;
  const bool resuming = has_checkpoints(run_dir);
  torch::manual_seed(uint64_t(r.train.seed));
  LlamaForCausalLM model{nullptr};
  std::unique_ptr<Optimizer> opt;
  if (comm) {
    // The parameters get storage in the engine, each rank only for what it owns (ddp:
    // everything), filled from the initial weights, or (resuming) from the checkpoint below.
    std::string from;
    const LlamaConfig c = initial_config(r, &from);
    {
      DeferParameterStorage defer(device);
      model = LlamaForCausalLM(c);
    }
    const ParamSource zeros = [](const std::string&, int64_t b, int64_t e, float* out) {
      std::fill(out, out + (e - b), 0.0f);
    };
    opt = make_optimizer(r, model, device_comm ? device_comm.get() : comm.get(),
                         resuming ? zeros : initial_weights(r, c, from));
  } else {
    model = initial_model(r);
    model->to(device);
    opt = make_optimizer(r, model, nullptr, {});
  }
  const LlamaConfig& config = model->config();
  CheckpointOnly checkpointing;  // parallel.mode none with activation checkpointing
  if (!comm && *r.parallel.activation_checkpointing)
    model->model->set_layer_runner(make_unit_runner(&checkpointing));

  // --- data and schedule --------------------------------------------------------------------
  std::unique_ptr<Batches> batches = make_batches(r, config);
  Batches& data = *batches;
  const int64_t total_steps =
      r.train.max_steps > 0 ? r.train.max_steps
                            : int64_t(std::ceil(r.train.epochs * double(data.steps_per_epoch())));
  LrSchedule sched{r.train.lr_schedule, r.train.lr,
                   warmup_steps_from_ratio(total_steps, r.train.warmup_ratio), total_steps};

  // --- run directory: new, or resumed (checked by every rank, written by rank 0) -------------
  int64_t first_step = 0;
  if (resuming) {
    std::string latest = std::filesystem::exists(run_dir + "/latest")
                             ? read_file(run_dir + "/latest")
                             : std::string("(none)");
    while (!latest.empty() && std::isspace(static_cast<unsigned char>(latest.back())))
      latest.pop_back();
    if (r.checkpoint.resume != "auto")
      ASC_FAIL_HINT("continue it with checkpoint.resume=auto, or choose a new checkpoint.dir",
                    "{}: run directory {} already holds checkpoints (latest: {})",
                    r.where("checkpoint.dir"), run_dir, run_dir + "/" + latest);
    check_resume_compatible(r, run_dir + "/recipe.yaml", rank == 0);
    // The newest checkpoint whose files match its manifest (a damaged one is skipped, named):
    // rank 0 verifies and tells the others, so all take the same one and hash it once.
    // An error on rank 0 travels with the answer ('!' + message), so every rank fails alike.
    std::string step_dir;
    if (rank == 0) {
      try {
        step_dir = newest_complete_checkpoint(run_dir);
      } catch (const std::exception& e) {
        step_dir = std::string("!") + e.what();
      }
    }
    if (comm) {
      at::Tensor len = at::full({1}, int64_t(step_dir.size()), at::kLong);
      comm->broadcast(len)->wait();
      at::Tensor bytes = at::zeros({len.item<int64_t>()}, at::kByte);
      if (rank == 0) std::memcpy(bytes.data_ptr(), step_dir.data(), step_dir.size());
      comm->broadcast(bytes)->wait();
      step_dir.assign(static_cast<const char*>(bytes.data_ptr()), size_t(bytes.numel()));
      comm->barrier();  // every rank has its answer before rank 0 moves `latest`
    }
    if (!step_dir.empty() && step_dir[0] == '!') throw Error(step_dir.substr(1));
    if (rank == 0)  // `latest` names the one resumed (it may have named a damaged one)
      write_file_atomic(run_dir + "/latest",
                        std::filesystem::path(step_dir).filename().string() + "\n");
    nlohmann::json info;
    try {
      info = nlohmann::json::parse(read_file(step_dir + "/trainer_state.json"));
      first_step = info.at("step").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      ASC_FAIL("{}/trainer_state.json: no readable step: {}", step_dir, e.what());
    }
    if (rank == 0) {
      try {
        drop_metrics_after(run_dir + "/metrics.jsonl", first_step);
      } catch (const std::exception& e) {  // the metrics are not worth stopping the others for
        fmt::print(stderr, "warning: {}/metrics.jsonl not trimmed: {}\n", run_dir, e.what());
      }
    }
    const double t_load = now_s();
    CheckpointReader reader(step_dir);
    opt->load_state_from(reader, hf_named_tensors(model));
    const double load_s = now_s() - t_load;
    data.start_at(first_step);
    if (rank == 0)
      fmt::print(stderr, "resuming {} at step {} of {}\n", step_dir, first_step, total_steps);
    fmt::print(stderr, "rank {}: read {} bytes of checkpoint state in {:.3f} s\n", rank,
               reader.bytes_read(), load_s);
  }
  {
    // What start-up cost this rank: its peak resident memory (getrusage) beside the model state
    // the engine keeps. Test hook: ASCLEPIUS_EXIT_AFTER_STARTUP=1 stops here.
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    const auto* engine = dynamic_cast<const ParallelEngine*>(opt.get());
    fmt::print(stderr, "rank {}: start-up peak resident memory {} MiB (model state kept: {} MiB)\n",
               rank, ru.ru_maxrss / 1024,
               engine ? engine->model_state_bytes().total() >> 20 : int64_t(-1));
    if (const char* v = std::getenv("ASCLEPIUS_EXIT_AFTER_STARTUP"); v && std::string(v) == "1") {
      if (comm) comm->barrier();
      TrainResult out;
      out.rank = rank, out.run_dir = run_dir, out.steps = first_step;
      return out;
    }
  }
  std::unique_ptr<MetricsLogger> metrics;
  if (rank == 0) {
    std::filesystem::create_directories(run_dir);
    if (first_step == 0) {
      write_file_atomic(run_dir + "/recipe.yaml", recipe_to_yaml(r));
      // A run that died before its first checkpoint starts over: so do its metrics.
      std::filesystem::remove(run_dir + "/metrics.jsonl");
    }
    metrics = std::make_unique<MetricsLogger>(run_dir, r.logging.tensorboard, r.logging.progress);
  }
  const std::string recipe_text = rank == 0 ? read_file(run_dir + "/recipe.yaml") : "";
  const double flops_per_token = config.train_flops_per_token(r.data.seq_len);
  // The device's dense bf16 peak for MFU: logging.peak_tflops, else known GPUs' (0: unknown).
  const double peak_tflops = r.logging.peak_tflops > 0 ? r.logging.peak_tflops
                             : device.is_cuda() ? kernels::cuda_peak_bf16_tflops(device.index())
                                                : 0.0;

  // Every rank writes its own part (no gather); all agree the save succeeded before rank 0
  // commits it (checkpoint/sharded.h). With checkpoint.async the state is copied out, a thread
  // writes it, and the commit happens at the first step boundary where every rank's write is
  // done (or before the next save, a stop or the end).
  struct PendingSave {
    ShardedSave s;
    std::vector<StateSlice> copy;  // the state as of the saved step
    ShardReportInfo report;
    std::atomic<bool> written{false};
    std::thread writer;
    double t0 = 0;
    ~PendingSave() {  // an error unwinding the loop: the write finishes, nothing is committed
      if (writer.joinable()) writer.join();
    }
  };
  std::unique_ptr<PendingSave> pending;
  std::vector<StateSlice> staging;  // async saves' copies, allocated (and touched) once
  auto make_staging = [&](const std::vector<StateSlice>& mine) {
    if (staging.size() == mine.size()) return;
    staging.clear();
    for (const StateSlice& sl : mine)
      staging.push_back({sl.name, sl.shape, sl.begin, sl.end,  // on the host, for the writer
                         at::zeros(sl.master.sizes(), at::kFloat),
                         at::zeros(sl.exp_avg.sizes(), at::kFloat),
                         at::zeros(sl.exp_avg_sq.sizes(), at::kFloat)});
  };
  if (r.checkpoint.async && r.checkpoint.every_steps > 0)
    make_staging(opt->state_slices(hf_named_tensors(model)));
  auto describe = [&](int64_t step, double loss) {
    ShardedSave s;
    s.run_dir = run_dir, s.step = step, s.optimizer_step = opt->steps(), s.config = config;
    s.state_json = nlohmann::json({{"step", step},
                                   {"samples", step * r.train.global_batch_size},
                                   {"loss", std::isfinite(loss) ? nlohmann::json(loss) : nullptr},
                                   {"world_size", r.world_size},
                                   {"parallel_mode", r.parallel.mode},
                                   {"dtype", r.train.dtype}})
                       .dump() +
                   "\n";
    s.info.samples = step * r.train.global_batch_size, s.info.world_size = r.world_size;
    s.info.parallel_mode = r.parallel.mode, s.info.dtype = r.train.dtype;
    s.recipe_yaml = recipe_text;  // read once at start-up: no I/O error here on one rank only
    s.info.recipe_xxh64 = xxh64_hex(recipe_text);
    s.data_seed = uint64_t(r.train.seed);
    s.bf16_params = r.train.dtype == "bf16";
    s.keep_last = r.checkpoint.keep_last;
    s.timeout_s = std::max(r.parallel.timeout_s, 6.0 * 3600);  // writing a large model is slow
    return s;
  };
  // all_written: every rank's write is known to be done (agreed this step), so the commit's
  // exchanges wait only parallel.timeout_s; otherwise (next save, stop, end) as long as a write.
  auto finish_pending = [&](bool all_written) {
    if (!pending) return;
    pending->writer.join();
    if (all_written) pending->s.timeout_s = r.parallel.timeout_s;
    commit_sharded_checkpoint(pending->s, pending->report, comm.get());
    if (rank == 0)
      fmt::print(stderr, "saved {}/{} in the background ({:.3f} s from the save to the commit)\n",
                 run_dir, step_dir_name(pending->s.step), now_s() - pending->t0);
    pending.reset();
  };
  const int world = comm ? comm->size() : 1;
  auto save = [&](int64_t step, double loss, bool async) {
    finish_pending(false);  // one save in flight at a time
    const double t0 = now_s();
    ShardedSave s = describe(step, loss);
    const std::vector<StateSlice> mine = opt->state_slices(hf_named_tensors(model));
    int64_t bytes = 0;
    for (const auto& sl : mine) bytes += (sl.end - sl.begin) * (s.bf16_params ? 14 : 12);
    if (!async) {
      save_sharded_checkpoint(s, mine, comm.get());
      if (rank == 0)
        fmt::print(stderr, "saved {}/{} in {:.3f} s (rank 0 wrote {} bytes of state)\n", run_dir,
                   step_dir_name(step), now_s() - t0, bytes);
      return;
    }
    begin_sharded_checkpoint(s, comm.get());
    pending = std::make_unique<PendingSave>();
    pending->s = s, pending->t0 = t0;
    // Copies (training changes the originals from now on) into staging buffers kept from save
    // to save: fresh memory would be page-faulted in at every save, which costs more than the
    // copy itself.
    make_staging(mine);
    for (size_t i = 0; i < mine.size(); ++i) {
      staging[i].master.copy_(mine[i].master);
      staging[i].exp_avg.copy_(mine[i].exp_avg);
      staging[i].exp_avg_sq.copy_(mine[i].exp_avg_sq);
    }
    pending->copy = staging;  // shares the buffers; the next save waits for this write first
    PendingSave* p = pending.get();
    // Test hook: ASCLEPIUS_ASYNC_SAVE_DELAY_MS holds the write back, so training has certainly
    // changed the parameters before the copy is written.
    const char* delay = std::getenv("ASCLEPIUS_ASYNC_SAVE_DELAY_MS");
    const int delay_ms = delay ? std::atoi(delay) : 0;
    p->writer = std::thread([p, rank, world, delay_ms] {
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      p->report = write_shard(p->s, p->copy, rank, world);
      p->copy.clear();
      p->written = true;
    });
    if (rank == 0)
      fmt::print(stderr,
                 "saving {}/{} in the background: training paused {:.3f} s to copy {} "
                 "bytes\n",
                 run_dir, step_dir_name(step), now_s() - t0, bytes);
  };
  // ASCLEPIUS_STOP_AFTER_STEP=N (set alike on every rank; `asclepius verify-resume` uses it)
  // acts as a SIGTERM received during step N.
  const char* stop_env = std::getenv("ASCLEPIUS_STOP_AFTER_STEP");
  const int64_t stop_after = stop_env ? std::atoll(stop_env) : -1;
  // One all-reduce per step: the largest stop signal, and whether any rank's background write
  // is still running (when none is, the pending checkpoint is committed).
  auto any_rank_stopped = [&](int64_t step) -> int {
    const int own = step == stop_after ? SIGTERM : stop_signal();
    const int64_t writing = pending && !pending->written ? 1 : 0;
    int sig = own;
    bool all_written = !writing;
    if (comm) {
      at::Tensor s = at::tensor({int64_t(own), writing}, at::kLong);
      comm->all_reduce(s, {comm::ReduceOp::kMax})->wait();
      sig = int(s[0].item<int64_t>()), all_written = s[1].item<int64_t>() == 0;
    }
    if (pending && all_written) finish_pending(true);
    return sig;
  };

  // --- the loop -----------------------------------------------------------------------------
  TrainResult result;
  result.run_dir = run_dir;
  result.rank = rank;
  const double t_start = now_s();
  int64_t tokens_seen = 0, bad_in_a_row = 0;
  const auto faults = nan_faults();
  int stopped = 0;
  result.steps = first_step;
  if (first_step >= total_steps) return result;  // already complete: nothing to do or save
  Prefetcher prefetch(data, first_step, total_steps);
  for (int64_t k = first_step; k < total_steps; ++k) {
    const double t0 = now_s();
    double data_wait_s = 0;
    const GlobalBatch batch = prefetch.next(k, &data_wait_s);
    const BatchLoss step_loss = accumulate_gradients(
        model, *opt, batch, comm.get(), faults.count({k + 1, rank}) > 0, r.train.loss_chunk_rows);
    const double loss_sum = step_loss.loss;
    const int64_t targets = step_loss.targets;
    const double lr = sched.lr_at(k);
    // Not finite (on any rank: the loss and the norm are global): nothing is updated anywhere.
    const double gnorm =
        std::isfinite(loss_sum) ? opt->clip_and_step(lr, r.train.max_grad_norm) : std::nan("");
    opt->zero_grad();
    if (!std::isfinite(loss_sum) || !std::isfinite(gnorm)) {
      ++result.skipped_steps;
      if (++bad_in_a_row > r.train.max_bad_steps)
        ASC_FAIL_HINT("lower train.lr, check the data, or raise train.max_bad_steps",
                      "step {}: loss {} / gradient norm {} not finite for {} steps in a row "
                      "(train.max_bad_steps: {}); stopping",
                      k + 1, loss_sum, gnorm, bad_in_a_row, r.train.max_bad_steps);
      if (rank == 0)
        fmt::print(stderr,
                   "warning: step {}: loss {} / gradient norm {} not finite; step skipped "
                   "on every rank ({} in a row)\n",
                   k + 1, loss_sum, gnorm, bad_in_a_row);
    } else {
      bad_in_a_row = 0;
    }

    const double dt = now_s() - t0;
    tokens_seen += targets;
    if (metrics) {
      StepMetrics m;
      m.step = k + 1, m.total_steps = total_steps, m.loss = loss_sum, m.lr = lr;
      m.grad_norm = gnorm;
      m.tokens_per_s = double(step_loss.tokens) / dt;
      m.tflops = flops_per_token * m.tokens_per_s / 1e12;
      // tflops counts every rank's tokens; the peak is one device's.
      m.mfu = peak_tflops > 0 ? m.tflops / (peak_tflops * world) : -1;
      if (device.is_cuda())
        m.device_peak_bytes = kernels::cuda_peak_allocated_bytes(device.index());
      m.tokens = tokens_seen, m.elapsed_s = now_s() - t_start;
      m.step_s = dt, m.data_wait_s = data_wait_s;
      metrics->log(m);
    }
    result.losses.push_back(loss_sum);
    result.steps = k + 1;
    if ((stopped = any_rank_stopped(k + 1)) != 0) break;  // saved below, like the end of the run
    if (r.checkpoint.every_steps > 0 && (k + 1) % r.checkpoint.every_steps == 0 &&
        k + 1 < total_steps)
      save(k + 1, loss_sum, r.checkpoint.async);
  }
  if (metrics) metrics->finish();
  result.stopped_by_signal = stopped;
  if (r.checkpoint.at_end || stopped)
    save(result.steps, result.losses.empty() ? 0.0 : result.losses.back(), /*async=*/false);
  else
    finish_pending(false);  // an async save still in flight is committed
  return result;
}

}  // namespace asc
