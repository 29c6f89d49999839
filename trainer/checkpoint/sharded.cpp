#include "checkpoint/sharded.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <map>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf_io.h"
#include "checkpoint/safetensors.h"
#include "comm/communicator.h"
#include "comm/objects.h"
#include "common/error.h"
#include "common/fs.h"

namespace fs = std::filesystem;

namespace asc {

namespace {

std::string slice_name(const std::string& kind, const std::string& name, int64_t b, int64_t e) {
  return fmt::format("{}:{}:{}:{}", kind, name, b, e);
}

// Writes this rank's shard; returns its report (file and slices with absolute byte ranges).
// The byte ranges and the file's hash come from what is written: the framed header, then the
// tensors' bytes in order.
ShardReportInfo write_shard_file(const ShardedSave& s, const std::vector<StateSlice>& mine,
                                 const fs::path& dir, int rank, int world) {
  const std::string file = fmt::format("shard-{:05d}-of-{:05d}.safetensors", rank, world);
  std::vector<at::Tensor> keep;  // contiguous CPU copies, alive until written
  std::vector<st::TensorRef> refs;
  ShardReportInfo rep;
  nlohmann::json shapes = nlohmann::json::object();
  auto add = [&](const std::string& kind, const StateSlice& sl, at::Tensor t) {
    keep.push_back(t.detach().to(at::kCPU).contiguous().reshape({-1}));
    ASC_CHECK(keep.back().numel() == sl.end - sl.begin, "slice {} of {}: {} elements, not {}", kind,
              sl.name, keep.back().numel(), sl.end - sl.begin);
    const st::DType dt = t.scalar_type() == at::kBFloat16 ? st::DType::BF16 : st::DType::F32;
    refs.push_back({slice_name(kind, sl.name, sl.begin, sl.end),
                    dt,
                    {sl.end - sl.begin},
                    keep.back().data_ptr()});
    rep.tensors.back().slices.push_back({file, kind, st::dtype_name(dt), sl.begin, sl.end,
                                         /*offset: below*/ 0, uint64_t(keep.back().nbytes())});
  };
  for (const StateSlice& sl : mine) {
    if (sl.end <= sl.begin) continue;
    shapes[sl.name] = sl.shape;
    rep.tensors.push_back({sl.name, sl.shape, {}});
    add("master", sl, sl.master.to(at::kFloat));
    add("exp_avg", sl, sl.exp_avg.to(at::kFloat));
    add("exp_avg_sq", sl, sl.exp_avg_sq.to(at::kFloat));
    if (s.bf16_params) add("param", sl, sl.master.to(at::kBFloat16));
  }
  const fs::path path = dir / file;
  const std::map<std::string, std::string> meta = {{"format", "asclepius-shard-v1"},
                                                   {"step", std::to_string(s.step)},
                                                   {"rank", std::to_string(rank)},
                                                   {"world_size", std::to_string(world)},
                                                   {"shapes", shapes.dump()}};
  const std::string framed = st::framed_header(refs, meta);
  std::vector<std::pair<const void*, size_t>> pieces = {{framed.data(), framed.size()}};
  uint64_t offset = framed.size();  // the tensors follow in the order they were added
  size_t k = 0;
  for (auto& t : rep.tensors)
    for (auto& sl : t.slices) {
      pieces.push_back({keep[k++].data_ptr(), size_t(sl.length)});
      sl.offset = offset;
      offset += sl.length;
    }
  // The file is these pieces (a safetensors file, the page cache bypassed: common/fs.h); their
  // checksum is computed from memory on a second thread while they are written.
  auto hash = std::async(std::launch::async, [&pieces] { return xxh64_hex_pieces(pieces); });
  try {
    AtomicFile out(path.string(), /*direct=*/true);
    for (const auto& [data, n] : pieces) out.write(data, n);
    out.commit();
  } catch (...) {
    hash.wait();
    throw;
  }
  rep.file = {file, offset, hash.get()};
  return rep;
}

}  // namespace

namespace {
struct SavePaths {
  fs::path run, dir, tmp;
  std::string name, what;
};
// What the ranks of a save are seen doing, through the shared file system: the sizes and
// modification times of this save's files (step_name and its .partial) and the names in the
// run's other step directories (keep_last removing one). Errors (a file removed while listed)
// are skipped. Probed every few seconds while a rank waits (comm::Deadline).
int64_t step_dirs_activity(const fs::path& run, const std::string& step_name) {
  uint64_t h = 0;
  auto mix = [&h](const std::string& s) {
    for (const char c : s) h = h * 131u + uint64_t(c);
  };
  std::error_code ec;
  for (fs::directory_iterator d(run, ec), end; !ec && d != end; d.increment(ec)) {
    const std::string name = d->path().filename().string();
    if (name.rfind("step-", 0) != 0) continue;
    mix(name);
    const bool ours = name == step_name || name == step_name + ".partial";
    std::error_code e2;
    for (fs::directory_iterator f(d->path(), e2), fend; !e2 && f != fend; f.increment(e2)) {
      mix(f->path().filename().string());
      if (!ours) continue;
      std::error_code e3;
      const uint64_t size = f->is_regular_file(e3) ? f->file_size(e3) : 0;
      const auto mtime = f->last_write_time(e3).time_since_epoch().count();
      h = h * 1000003u + size * 31u + uint64_t(mtime) + 1;
    }
  }
  return int64_t(h);
}

SavePaths paths_of(const ShardedSave& s) {
  SavePaths p;
  p.run = fs::path(s.run_dir);
  p.name = step_dir_name(s.step);
  p.dir = p.run / p.name, p.tmp = p.run / (p.name + ".partial");
  p.what = fmt::format("checkpoint of step {} ({})", s.step, p.dir.string());
  return p;
}
}  // namespace

void begin_sharded_checkpoint(const ShardedSave& s, comm::Communicator* comm) {
  const int rank = comm ? comm->rank() : 0;
  const SavePaths p = paths_of(s);
  // Rank 0 prepares the temporary directory (and removes those crashes left behind).
  std::string error;
  if (rank == 0) {
    try {
      fs::create_directories(p.run);
      if (read_latest(s.run_dir) == p.dir.filename().string())
        ASC_FAIL("refusing to overwrite {}, which 'latest' names", p.dir.string());
      for (const auto& e : fs::directory_iterator(p.run))
        if (e.is_directory() && e.path().extension() == ".partial") fs::remove_all(e.path());
      fs::create_directories(p.tmp);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  comm::agree_on_error(comm, p.what, error, s.timeout_s,
                       [run = p.run, name = p.name] { return step_dirs_activity(run, name); });
}

ShardReportInfo write_shard(const ShardedSave& s, const std::vector<StateSlice>& mine, int rank,
                            int world) {
  save_fault_point(s.fault_spec, "shard", rank, s.step);
  ShardReportInfo report;
  try {
    report = write_shard_file(s, mine, paths_of(s).tmp, rank, world);
  } catch (const std::exception& e) {
    report = ShardReportInfo{};
    report.error = e.what();
  }
  return report;
}

void save_sharded_checkpoint(const ShardedSave& s, const std::vector<StateSlice>& mine,
                             comm::Communicator* comm) {
  begin_sharded_checkpoint(s, comm);
  const ShardReportInfo report =
      write_shard(s, mine, comm ? comm->rank() : 0, comm ? comm->size() : 1);
  commit_sharded_checkpoint(s, report, comm);
}

void commit_sharded_checkpoint(const ShardedSave& s, const ShardReportInfo& report,
                               comm::Communicator* comm) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const SavePaths p = paths_of(s);
  const fs::path &run = p.run, &dir = p.dir, &tmp = p.tmp;
  const std::string &name = p.name, &what = p.what;
  std::string error;
  save_fault_point(s.fault_spec, "report", rank, s.step);
  const auto progress = [run, name] { return step_dirs_activity(run, name); };
  const auto reports =
      comm::all_gather_strings(comm, serialize_report(report), s.timeout_s, progress);
  std::string failed;
  std::vector<ShardReportInfo> parsed;
  for (size_t r = 0; r < reports.size(); ++r) {
    parsed.push_back(parse_report(reports[r]));
    if (!parsed.back().error.empty())
      failed += fmt::format("{}rank {}: {}", failed.empty() ? "" : "; ", r, parsed.back().error);
  }
  if (!failed.empty()) ASC_FAIL("{} failed: {}", what, failed);

  // Rank 0 writes its files and the manifest, renames the directory, moves `latest`.
  error.clear();
  if (rank == 0) {
    try {
      write_file_atomic((tmp / "config.json").string(),
                        llama_config_to_hf_json(s.config).dump(2) + "\n");
      const nlohmann::json gen = {{"bos_token_id", s.config.bos_token_id},
                                  {"eos_token_id", llama_eos_token_id_json(s.config)},
                                  {"_from_model_config", true}};
      write_file_atomic((tmp / "generation_config.json").string(), gen.dump(2) + "\n");
      write_file_atomic((tmp / "trainer_state.json").string(), s.state_json);
      if (!s.recipe_yaml.empty()) write_file_atomic((tmp / "recipe.yaml").string(), s.recipe_yaml);
      save_fault_point(s.fault_spec, "manifest", rank, s.step);
      ShardedManifest m;
      m.info = s.info;
      m.info.step = s.step;
      m.info.world_size = world;
      m.optimizer_step = s.optimizer_step;
      m.data_seed = s.data_seed;
      for (const char* f :
           {"config.json", "generation_config.json", "trainer_state.json", "recipe.yaml"})
        if (fs::exists(tmp / f)) m.files.push_back(file_info((tmp / f).string()));
      std::map<std::string, size_t> merged;
      for (const auto& rep : parsed) {
        m.files.push_back(rep.file);
        for (const auto& t : rep.tensors) {
          auto [it, fresh] = merged.emplace(t.name, m.tensors.size());
          if (fresh) m.tensors.push_back({t.name, t.shape, {}});
          auto& dst = m.tensors[it->second].slices;
          dst.insert(dst.end(), t.slices.begin(), t.slices.end());
        }
      }
      std::vector<std::string> kinds = {"master", "exp_avg", "exp_avg_sq"};
      if (s.bf16_params) kinds.push_back("param");
      write_sharded_manifest(tmp.string(), m, kinds);
      save_fault_point(s.fault_spec, "rename", rank, s.step);
      fs::remove_all(dir);
      fs::rename(tmp, dir);
      fsync_dir(s.run_dir);
      save_fault_point(s.fault_spec, "latest", rank, s.step);
      write_file_atomic((run / "latest").string(), name + "\n");
      remove_old_checkpoints(s.run_dir, s.keep_last, dir.string());
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  save_fault_point(s.fault_spec, "done", rank, s.step);
  comm::agree_on_error(comm, what, error, s.timeout_s, progress);
}

bool is_sharded_checkpoint(const std::string& dir) {
  ShardedManifest m;
  return read_sharded_manifest(dir, &m);
}

CheckpointReader::CheckpointReader(const std::string& step_dir) : dir_(step_dir) {
  require_known_manifest_format(step_dir);
  ShardedManifest m;
  if (read_sharded_manifest(step_dir, &m)) {
    format_ = 2;
    if (const auto named = step_of_dir_name(step_dir); named && m.info.step != *named)
      ASC_FAIL_HINT("read it under its own name, or use the run's other checkpoints",
                    "{}: holds the checkpoint of step {} (copied or renamed?)", step_dir,
                    m.info.step);
    optimizer_step_ = m.optimizer_step;
    for (const auto& t : m.tensors) {
      Tensor& x = tensors_[t.name];
      x.shape = t.shape;
      for (const auto& s : t.slices) {
        ASC_CHECK(is_plain_file_name(s.file), "{}/{}: slice file '{}' leaves the directory",
                  step_dir, kManifestFile, s.file);
        x.by_kind[s.kind].push_back({s.file, s.dtype, s.begin, s.end, s.offset});
      }
    }
  } else {  // format 1: a Hugging Face directory (+ optimizer.safetensors in a step directory)
    format_ = 1;
    WeightFiles w = open_weights(step_dir);
    auto add = [&](const st::SafetensorsFile& f, const st::TensorInfo& t, const std::string& name,
                   const std::string& kind) {
      Tensor& x = tensors_[name];
      if (kind == "master") x.shape = t.shape;
      x.by_kind[kind].push_back({fs::path(f.path()).filename().string(), st::dtype_name(t.dtype), 0,
                                 int64_t(t.numel()), f.data_offset() + t.begin});
    };
    for (const auto& [name, i] : w.by_name) add(*w.files[i], w.files[i]->at(name), name, "master");
    const fs::path op = fs::path(step_dir) / "optimizer.safetensors";
    if (fs::exists(op)) {
      auto f = st::SafetensorsFile::open(op.string());
      for (const auto& t : f->tensors())
        for (const std::string suffix : {".exp_avg_sq", ".exp_avg"})
          if (t.name.size() > suffix.size() &&
              t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            add(*f, t, t.name.substr(0, t.name.size() - suffix.size()), suffix.substr(1));
            break;
          }
      const auto it = f->metadata().find("step");
      try {
        optimizer_step_ = it == f->metadata().end() ? 0 : std::stoll(it->second);
      } catch (const std::exception&) {
        ASC_FAIL("{}: metadata 'step' is not a number", op.string());
      }
    }
  }
  for (auto& [name, t] : tensors_)
    for (auto& [kind, v] : t.by_kind)
      std::sort(v.begin(), v.end(),
                [](const Slice& a, const Slice& b) { return a.begin < b.begin; });
  check_slices();
}

// Each kind of each tensor is tiled by its slices: [0, numel) in order, no gap, no overlap, every
// slice a known dtype and inside its file. (Reads then never go past a file or leave a hole.)
void CheckpointReader::check_slices() const {
  std::map<std::string, uint64_t> sizes;
  auto size_of = [&](const std::string& file) {
    auto it = sizes.find(file);
    if (it != sizes.end()) return it->second;
    std::error_code ec;
    const uint64_t n = fs::file_size(fs::path(dir_) / file, ec);
    if (ec) ASC_FAIL("{}/{}: missing or unreadable ({})", dir_, file, ec.message());
    return sizes[file] = n;
  };
  for (const auto& [name, t] : tensors_) {
    int64_t numel = 1;
    for (const int64_t d : t.shape) {
      if (d < 0 || (d > 0 && numel > std::numeric_limits<int64_t>::max() / d))
        ASC_FAIL("{}: '{}' has shape [{}]", dir_, name, fmt::join(t.shape, ", "));
      numel *= d;
    }
    for (const auto& [kind, v] : t.by_kind) {
      int64_t at = 0;
      for (const Slice& s : v) {
        if (s.begin != at || s.end < s.begin)
          ASC_FAIL("{}: {} of '{}' has {} at element {}", dir_, kind, name,
                   s.begin < at ? "overlapping slices" : "a gap", std::min(s.begin, at));
        const uint64_t es = s.dtype == "BF16" ? 2 : s.dtype == "F32" ? 4 : 0;
        if (es == 0)
          ASC_FAIL("{}: {} of '{}' stored as {} (expected F32 or BF16)", dir_, kind, name, s.dtype);
        const uint64_t n = uint64_t(s.end - s.begin), size = size_of(s.file);
        const uint64_t bytes = n <= size / es ? n * es : UINT64_MAX;  // no wrap-around
        if (s.offset > size || bytes > size - s.offset)
          ASC_FAIL("{}/{}: {} of '{}' (bytes {} + {}) lies past the end of the file ({} bytes)",
                   dir_, s.file, kind, name, s.offset, bytes, size);
        at = s.end;
      }
      if (at != numel)
        ASC_FAIL("{}: {} of '{}' covers {} of its {} elements", dir_, kind, name, at, numel);
    }
  }
}

CheckpointReader::~CheckpointReader() {
  for (auto& [f, fd] : fds_) ::close(fd);
}

const std::vector<int64_t>& CheckpointReader::shape(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) ASC_FAIL("{}: no tensor '{}' in the checkpoint", dir_, name);
  return it->second.shape;
}

void CheckpointReader::check_shape(const std::string& name, const at::Tensor& like) const {
  const auto& sh = shape(name);
  if (std::vector<int64_t>(like.sizes().begin(), like.sizes().end()) != sh)
    ASC_FAIL("{}: '{}' has shape [{}] in the checkpoint, the model's is [{}]", dir_, name,
             fmt::join(sh, ", "), fmt::join(like.sizes(), ", "));
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& [n, t] : tensors_) out.push_back(n);
  return out;
}

int CheckpointReader::fd(const std::string& file) const {
  auto it = fds_.find(file);
  if (it != fds_.end()) return it->second;
  const std::string p = (fs::path(dir_) / file).string();
  const int f = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) ASC_FAIL("{}: cannot open: {}", p, std::strerror(errno));
  fds_[file] = f;
  return f;
}

void CheckpointReader::read(const std::string& name, const std::string& kind, int64_t begin,
                            int64_t end, float* out) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) ASC_FAIL("{}: no tensor '{}' in the checkpoint", dir_, name);
  auto k = it->second.by_kind.find(kind);
  if (k == it->second.by_kind.end())
    ASC_FAIL("{}: no {} for '{}' (a model directory, not a training checkpoint?)", dir_, kind,
             name);
  int64_t covered = 0;
  std::vector<uint16_t> half;
  for (const Slice& s : k->second) {
    const int64_t lo = std::max(begin, s.begin), hi = std::min(end, s.end);
    if (lo >= hi) continue;
    const bool bf16 = s.dtype == "BF16";
    ASC_CHECK(bf16 || s.dtype == "F32", "{}: {} of '{}' stored as {} (expected F32 or BF16)", dir_,
              kind, name, s.dtype);
    const size_t es = bf16 ? 2 : 4, n = size_t(hi - lo) * es;
    char* dst = reinterpret_cast<char*>(out + (lo - begin));
    if (bf16) half.resize(size_t(hi - lo)), dst = reinterpret_cast<char*>(half.data());
    const off_t off = off_t(s.offset + uint64_t(lo - s.begin) * es);
    for (size_t done = 0; done < n;) {
      const ssize_t got = ::pread(fd(s.file), dst + done, n - done, off + off_t(done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0)
        ASC_FAIL("{}/{}: read failed at byte {} ({} of '{}'): {}", dir_, s.file, off + off_t(done),
                 kind, name, std::strerror(errno));
      if (got == 0)
        ASC_FAIL("{}/{}: short read at byte {} ({} of '{}'): the file is truncated", dir_, s.file,
                 off + off_t(done), kind, name);
      done += size_t(got);
    }
    if (bf16)
      for (int64_t i = 0; i < hi - lo; ++i) {
        const uint32_t bits = uint32_t(half[size_t(i)]) << 16;
        std::memcpy(out + (lo - begin) + i, &bits, 4);
      }
    bytes_read_ += n;
    covered += hi - lo;
  }
  if (covered != end - begin)
    ASC_FAIL("{}: elements [{}, {}) of {} of '{}' are not all in the checkpoint ({} found)", dir_,
             begin, end, kind, name, covered);
}

at::Tensor CheckpointReader::read_full(const std::string& name, const std::string& kind) const {
  const auto& sh = shape(name);
  at::Tensor t = at::empty(sh, at::kFloat);
  read(name, kind, 0, t.numel(), t.data_ptr<float>());
  return t;
}

}  // namespace asc
