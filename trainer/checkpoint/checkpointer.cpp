#include "checkpoint/checkpointer.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "checkpoint/hf_io.h"
#include "checkpoint/manifest.h"
#include "comm/objects.h"
#include "common/error.h"
#include "common/fs.h"
#include "provenance/provenance.h"

namespace fs = std::filesystem;

namespace asc {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

// A save being written by a background thread.
struct Checkpointer::Pending {
  ShardedSave s;
  std::vector<StateSlice> copy;  // the state as of the saved step (shares the staging buffers)
  ShardReportInfo report;
  std::atomic<bool> written{false};
  std::thread writer;
  double t0 = 0;
  ~Pending() {  // an error unwinding the loop: the write finishes, nothing is committed
    if (writer.joinable()) writer.join();
  }
};

Checkpointer::Checkpointer(const Recipe& recipe, const LlamaConfig& config,
                           comm::Communicator* comm, bool has_checkpoints, int async_write_delay_ms,
                           std::string fault_spec)
    : recipe_(recipe),
      config_(config),
      comm_(comm),
      rank_(comm ? comm->rank() : 0),
      world_(comm ? comm->size() : 1),
      delay_ms_(async_write_delay_ms),
      fault_spec_(std::move(fault_spec)),
      run_dir_(recipe.checkpoint.dir),
      resuming_(has_checkpoints) {}

Checkpointer::~Checkpointer() = default;

int64_t Checkpointer::resume(SavedState& opt, const NamedTensors& params, int64_t total_steps) {
  if (!resuming_) return 0;
  const Recipe& r = recipe_;
  std::string latest = read_latest(run_dir_);  // what it names, if anything: the message only
  if (latest.empty()) latest = "(none)";
  if (r.checkpoint.resume != ResumePolicy::kAuto)
    ASC_FAIL_HINT("continue it with checkpoint.resume=auto, or choose a new checkpoint.dir",
                  "{}: run directory {} already holds checkpoints (latest: {})",
                  r.where("checkpoint.dir"), run_dir_, run_dir_ + "/" + latest);
  check_resume_compatible(r, run_dir_ + "/recipe.yaml", rank_ == 0);
  // The newest checkpoint whose files match its manifest (a damaged one is skipped, named):
  // rank 0 verifies and tells the others, so all take the same one and hash it once; an error
  // there reaches every rank.
  const std::string step_dir =
      comm::on_root(comm_, [&] { return newest_complete_checkpoint(run_dir_); });
  if (comm_) comm_->barrier();  // every rank has its answer before rank 0 moves `latest`
  if (rank_ == 0) {             // `latest` names the one resumed (it may have named a damaged one)
    std::error_code ec;
    if (fs::is_directory(fs::symlink_status(run_dir_ + "/latest", ec))) {  // damage: kept aside
      const std::string aside = fmt::format("{}/latest.damaged.{}", run_dir_, ::getpid());
      fs::rename(run_dir_ + "/latest", aside);
      fmt::print(stderr, "warning: {}/latest was a directory; moved to {}\n", run_dir_, aside);
    }
    write_file_atomic(run_dir_ + "/latest", fs::path(step_dir).filename().string() + "\n");
  }
  int64_t first_step = 0;
  try {
    first_step = nlohmann::json::parse(read_file(step_dir + "/trainer_state.json"))
                     .at("step")
                     .get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}/trainer_state.json: no readable step: {}", step_dir, e.what());
  }
  if (rank_ == 0) {
    try {
      drop_metrics_after(run_dir_ + "/metrics.jsonl", first_step);
    } catch (const std::exception& e) {  // the metrics are not worth stopping the others for
      fmt::print(stderr, "warning: {}/metrics.jsonl not trimmed: {}\n", run_dir_, e.what());
    }
  }
  const double t_load = now_s();
  resumed_dir_ = step_dir;
  CheckpointReader reader(step_dir);
  opt.load_state_from(reader, params);
  if (rank_ == 0)
    fmt::print(stderr, "resuming {} at step {} of {}\n", step_dir, first_step, total_steps);
  fmt::print(stderr, "rank {}: read {} bytes of checkpoint state in {:.3f} s\n", rank_,
             reader.bytes_read(), now_s() - t_load);
  return first_step;
}

void Checkpointer::begin_run(int64_t first_step) {
  if (rank_ == 0) {
    fs::create_directories(run_dir_);
    if (first_step == 0) {
      write_file_atomic(run_dir_ + "/recipe.yaml", recipe_to_yaml(recipe_));
      // A run that died before its first checkpoint starts over: so do its metrics.
      fs::remove(run_dir_ + "/metrics.jsonl");
    }
    // Read once here: no I/O error at a save on one rank only.
    recipe_text_ = read_file(run_dir_ + "/recipe.yaml");
    // What provenance follows (trainer/provenance/provenance.h): the corpus and the checkpoint
    // model.init_from started from, recorded in every checkpoint's trainer_state.json.
    record_provenance(first_step);
  }
}

// A fresh run records its corpus and init_from now; a resumed one keeps what its checkpoint
// recorded (init_from may name a run whose `latest` has moved on since), warning when the corpus
// is no longer the one recorded.
void Checkpointer::record_provenance(int64_t first_step) {
  try {
    if (first_step > 0) {
      const auto state = nlohmann::json::parse(read_file(resumed_dir_ + "/trainer_state.json"));
      provenance_ = state.value("provenance", nlohmann::json());
    }
    if (!provenance_.is_object()) {
      provenance_ = provenance_record(recipe_, recipe_.model.init_from.empty()
                                                   ? ""
                                                   : resolve_model_dir(recipe_.model.init_from));
    } else if (recipe_.data.corpus != "demo" &&
               provenance_record(recipe_, "")["corpus"] != provenance_["corpus"]) {
      fmt::print(stderr,
                 "warning: {} is not the corpus this run started on ({}); `asclepius provenance` "
                 "will refuse the run\n",
                 recipe_.data.corpus, provenance_["corpus"].dump());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "warning: no provenance record for {}: {}\n", run_dir_, e.what());
  }
}

ShardedSave Checkpointer::describe(int64_t step, double loss, const SavedState& opt) const {
  const Recipe& r = recipe_;
  ShardedSave s;
  s.run_dir = run_dir_, s.step = step, s.optimizer_step = opt.steps(), s.config = config_;
  s.state_json = nlohmann::json({{"step", step},
                                 {"samples", step * r.train.global_batch_size},
                                 {"loss", std::isfinite(loss) ? nlohmann::json(loss) : nullptr},
                                 {"world_size", r.world_size},
                                 {"parallel_mode", name(r.parallel.mode)},
                                 {"dtype", name(r.train.dtype)},
                                 {"provenance", provenance_}})
                     .dump() +
                 "\n";
  s.info.samples = step * r.train.global_batch_size, s.info.world_size = r.world_size;
  s.info.parallel_mode = name(r.parallel.mode), s.info.dtype = name(r.train.dtype);
  s.recipe_yaml = recipe_text_;
  s.info.recipe_xxh64 = xxh64_hex(recipe_text_);
  s.data_seed = uint64_t(r.train.seed);
  s.bf16_params = r.train.dtype == DType::kBf16;
  s.keep_last = r.checkpoint.keep_last;
  s.timeout_s = r.parallel.timeout_s;  // without progress: a long write is waited for
  s.fault_spec = fault_spec_;
  return s;
}

// Async saves copy the state (training changes the originals from now on) into staging buffers
// kept from save to save: fresh memory would be page-faulted in at every save, which costs more
// than the copy itself.
void Checkpointer::allocate_staging(const std::vector<StateSlice>& mine) {
  if (staging_.size() == mine.size()) return;
  staging_.clear();
  for (const StateSlice& sl : mine)
    staging_.push_back({sl.name, sl.shape, sl.begin, sl.end,  // on the host, for the writer
                        at::zeros(sl.master.sizes(), at::kFloat),
                        at::zeros(sl.exp_avg.sizes(), at::kFloat),
                        at::zeros(sl.exp_avg_sq.sizes(), at::kFloat)});
}

void Checkpointer::prepare_async(const SavedState& opt, const NamedTensors& params) {
  allocate_staging(opt.state_slices(params));
}

void Checkpointer::save(int64_t step, double loss, const SavedState& opt,
                        const NamedTensors& params, bool async) {
  finish();  // one save in flight at a time
  const double t0 = now_s();
  ShardedSave s = describe(step, loss, opt);
  const std::vector<StateSlice> mine = opt.state_slices(params);
  int64_t bytes = 0;
  for (const auto& sl : mine) bytes += (sl.end - sl.begin) * (s.bf16_params ? 14 : 12);
  if (!async) {
    save_sharded_checkpoint(s, mine, comm_);
    if (rank_ == 0)
      fmt::print(stderr, "saved {}/{} in {:.3f} s (rank 0 wrote {} bytes of state)\n", run_dir_,
                 step_dir_name(step), now_s() - t0, bytes);
    return;
  }
  begin_sharded_checkpoint(s, comm_);
  pending_ = std::make_unique<Pending>();
  pending_->s = s, pending_->t0 = t0;
  allocate_staging(mine);
  for (size_t i = 0; i < mine.size(); ++i) {
    staging_[i].master.copy_(mine[i].master);
    staging_[i].exp_avg.copy_(mine[i].exp_avg);
    staging_[i].exp_avg_sq.copy_(mine[i].exp_avg_sq);
  }
  pending_->copy = staging_;  // shares the buffers; the next save waits for this write first
  Pending* p = pending_.get();
  p->writer = std::thread([p, rank = rank_, world = world_, delay_ms = delay_ms_] {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    p->report = write_shard(p->s, p->copy, rank, world);
    p->copy.clear();
    p->written = true;
  });
  if (rank_ == 0)
    fmt::print(stderr,
               "saving {}/{} in the background: training paused {:.3f} s to copy {} bytes\n",
               run_dir_, step_dir_name(step), now_s() - t0, bytes);
}

bool Checkpointer::writing() const {
  return pending_ && !pending_->written;
}

void Checkpointer::commit_if_written(bool all_ranks_written) {
  if (pending_ && all_ranks_written) commit_pending();
}

void Checkpointer::finish() {
  commit_pending();
}

// Waits for this rank's write, then commits with the others (who may still be writing: the
// commit waits while their files change, commit_sharded_checkpoint).
void Checkpointer::commit_pending() {
  if (!pending_) return;
  pending_->writer.join();
  commit_sharded_checkpoint(pending_->s, pending_->report, comm_);
  if (rank_ == 0)
    fmt::print(stderr, "saved {}/{} in the background ({:.3f} s from the save to the commit)\n",
               run_dir_, step_dir_name(pending_->s.step), now_s() - pending_->t0);
  pending_.reset();
}

int64_t drop_metrics_after(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return 0;
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
  if (dropped == 0) return 0;
  write_file_atomic(path, kept);
  fmt::print(stderr, "note: {}: dropped {} line(s) after step {} (to be redone)\n", path, dropped,
             step);
  return dropped;
}

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
  static const std::set<std::string> harmless = {
      "train.threads",   "train.cache_host_memory", "train.check_memory", "train.max_bad_steps",
      "train.optimizer", "train.loss_chunk_rows",   "train.device",       "train.tf32"};
  // A key the saved recipe lacks (added by a later version) counts as its default. So a new key
  // that changes what is trained must default to what earlier versions did.
  const YAML::Node defaults = YAML::Load(recipe_to_yaml(Recipe{}));
  for (const std::string& key : recipe_keys()) {
    const std::string a = value(now, key), b = value(saved, key);
    if (a == b) continue;
    if (b.empty() && a == value(defaults, key)) continue;
    const bool free = harmless.count(key) || key.rfind("logging.", 0) == 0 ||
                      key.rfind("checkpoint.", 0) == 0 || key.rfind("parallel.", 0) == 0 ||
                      key.rfind("eval.", 0) == 0;
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

}  // namespace asc
