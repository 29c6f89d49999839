#include "checkpoint/manifest.h"

#include <signal.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <cstdint>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include "checkpoint_manifest.pb.h"
#include "common/error.h"
#include "common/fs.h"

namespace fs = std::filesystem;

namespace asc {

std::string xxh64_hex(const std::string& bytes) {
  return fmt::format("{:016x}", XXH64(bytes.data(), bytes.size(), 0));
}

std::string xxh64_file(const std::string& path) {
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> st(XXH64_createState(),
                                                                &XXH64_freeState);
  XXH64_reset(st.get(), 0);
  std::ifstream in(path, std::ios::binary);
  if (!in) ASC_FAIL("{}: cannot open for reading", path);
  std::vector<char> buf(size_t(8) << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    XXH64_update(st.get(), buf.data(), size_t(in.gcount()));
  }
  if (in.bad()) ASC_FAIL("{}: read error", path);
  return fmt::format("{:016x}", XXH64_digest(st.get()));
}

std::string xxh64_hex_pieces(const std::vector<std::pair<const void*, size_t>>& pieces) {
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> st(XXH64_createState(),
                                                                &XXH64_freeState);
  XXH64_reset(st.get(), 0);
  for (const auto& [p, n] : pieces) XXH64_update(st.get(), p, n);
  return fmt::format("{:016x}", XXH64_digest(st.get()));
}

void write_manifest(const std::string& dir, const CheckpointInfo& info) {
  asclepius::checkpoint::Manifest m;
  m.set_format_version(1);
  m.set_step(info.step);
  m.set_samples(info.samples);
  m.set_world_size(info.world_size);
  m.set_parallel_mode(info.parallel_mode);
  m.set_dtype(info.dtype);
  m.set_recipe_xxh64(info.recipe_xxh64);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != kManifestFile) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto* fe = m.add_files();
    fe->set_name(f.filename().string());
    fe->set_size(fs::file_size(f));
    fe->set_xxh64(xxh64_file(f.string()));
  }
  write_file_atomic((fs::path(dir) / kManifestFile).string(), m.SerializeAsString());
}

namespace {
bool read_manifest(const std::string& dir, asclepius::checkpoint::Manifest* m) {
  const fs::path p = fs::path(dir) / kManifestFile;
  if (!fs::exists(p)) return false;
  return m->ParseFromString(read_file(p.string()));
}
}  // namespace

std::string verify_checkpoint(const std::string& dir) {
  asclepius::checkpoint::Manifest m;
  if (!fs::exists(fs::path(dir) / kManifestFile))
    return fmt::format("{}: no {} (an incomplete or pre-manifest checkpoint)", dir, kManifestFile);
  if (!read_manifest(dir, &m) || m.format_version() == 0)
    return fmt::format("{}/{}: empty or unreadable", dir, kManifestFile);
  if (m.format_version() > kManifestFormatMax)
    return fmt::format(
        "{}/{}: format_version {}; this build reads 1 to {} (written by a newer "
        "asclepius?)",
        dir, kManifestFile, m.format_version(), kManifestFormatMax);
  // A step directory holds its own step: a copied or renamed one would be resumed at another
  // step and then block the save of its own.
  if (const auto named = step_of_dir_name(dir); named && m.step() != *named)
    return fmt::format("{}: holds the checkpoint of step {} (copied or renamed?)", dir, m.step());
  if (m.files_size() == 0) return fmt::format("{}/{}: lists no files", dir, kManifestFile);
  for (const auto& f : m.files()) {
    if (!is_plain_file_name(f.name()))
      return fmt::format("{}/{}: lists '{}', which is not a file of the step directory", dir,
                         kManifestFile, f.name());
    const fs::path p = fs::path(dir) / f.name();
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (ec) return fmt::format("{}: missing (the manifest lists it)", p.string());
    if (size != f.size())
      return fmt::format("{}: {} bytes, the manifest says {}", p.string(), size, f.size());
    const std::string sum = xxh64_file(p.string());
    if (sum != f.xxh64())
      return fmt::format("{}: checksum {} differs from the manifest's {}", p.string(), sum,
                         f.xxh64());
  }
  return "";
}

std::string manifest_json(const std::string& dir) {
  asclepius::checkpoint::Manifest m;
  if (!read_manifest(dir, &m)) ASC_FAIL("{}: no readable {}", dir, kManifestFile);
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;  // begin: 0 is a value, not an absence
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok())
    ASC_FAIL("{}: cannot print the manifest as JSON", dir);
  return out;
}

uint32_t manifest_format_version(const std::string& dir) {
  asclepius::checkpoint::Manifest m;
  return read_manifest(dir, &m) ? m.format_version() : 0;
}

std::optional<int64_t> step_of_dir_name(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "run/step-0000010/"
  const std::string name = p.filename().string();
  if (!is_step_dir_name(name)) return std::nullopt;
  return std::stoll(name.substr(5));
}

void require_known_manifest_format(const std::string& dir) {
  if (fs::exists(fs::path(dir) / kManifestFile) && manifest_format_version(dir) == 0)
    ASC_FAIL_HINT("resume from (or export) an older checkpoint of the run",
                  "{}/{}: empty or unreadable; the checkpoint is damaged", dir, kManifestFile);
  const uint32_t version = manifest_format_version(dir);
  if (version > kManifestFormatMax)
    ASC_FAIL_HINT("read it with the asclepius that wrote it",
                  "{}/{}: format_version {}; this build reads 1 to {}", dir, kManifestFile, version,
                  kManifestFormatMax);
}

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

bool has_latest(const std::string& run_dir) {
  std::error_code ec;  // a symlink loop or a dangling link is there too (and names nothing)
  return fs::symlink_status(fs::path(run_dir) / "latest", ec).type() != fs::file_type::not_found;
}

std::string read_latest(const std::string& run_dir) {
  const fs::path latest = fs::path(run_dir) / "latest";
  std::error_code ec;
  if (!fs::is_regular_file(latest, ec)) return "";  // absent, a directory, a link loop
  std::string name;
  try {
    name = read_file(latest.string());
  } catch (const std::exception&) {  // unreadable: it names nothing
    return "";
  }
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  return name;
}

bool run_has_checkpoints(const std::string& run_dir) {
  return has_latest(run_dir) || !step_dirs_newest_first(run_dir).empty();
}

bool is_step_dir_name(const std::string& name) {
  // 7 to 18 digits: any step an int64 holds, so reading the number never overflows.
  return name.size() >= 12 && name.size() <= 23 && name.rfind("step-", 0) == 0 &&
         name.find_first_not_of("0123456789", 5) == std::string::npos;
}

std::vector<std::string> step_dirs_newest_first(const std::string& run_dir) {
  std::vector<std::string> out;
  std::error_code ec;  // a directory that cannot be listed holds no step directory we can read
  if (!fs::is_directory(run_dir, ec)) return out;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    std::error_code e2;  // an entry that cannot be stat'ed (a link loop) is no step directory
    if (is_step_dir_name(n) && it->is_directory(e2)) out.push_back(it->path().string());
  }
  // By step number (step-10000000 has 8 digits and sorts after step-9999999).
  auto step_of = [](const std::string& p) {
    return std::stoll(fs::path(p).filename().string().substr(5));
  };
  std::sort(out.begin(), out.end(),
            [&](const std::string& a, const std::string& b) { return step_of(a) > step_of(b); });
  return out;
}

// ---- format 2 ------------------------------------------------------------------------------
namespace pb = asclepius::checkpoint;

FileInfo file_info(const std::string& path) {
  return {fs::path(path).filename().string(), uint64_t(fs::file_size(path)), xxh64_file(path)};
}

namespace {
void to_pb(const FileInfo& f, pb::FileEntry* e) {
  e->set_name(f.name);
  e->set_size(f.size);
  e->set_xxh64(f.xxh64);
}
void to_pb(const TensorSlices& t, pb::LogicalTensor* lt) {
  lt->set_name(t.name);
  for (int64_t d : t.shape) lt->add_shape(d);
  for (const auto& s : t.slices) {
    auto* p = lt->add_slices();
    p->set_file(s.file);
    p->set_kind(s.kind);
    p->set_dtype(s.dtype);
    p->set_begin(s.begin);
    p->set_end(s.end);
    p->set_offset(s.offset);
    p->set_length(s.length);
  }
}
TensorSlices from_pb(const pb::LogicalTensor& lt) {
  TensorSlices t;
  t.name = lt.name();
  t.shape.assign(lt.shape().begin(), lt.shape().end());
  for (const auto& p : lt.slices())
    t.slices.push_back({p.file(), p.kind(), p.dtype(), p.begin(), p.end(), p.offset(), p.length()});
  return t;
}
}  // namespace

std::string serialize_report(const ShardReportInfo& r) {
  pb::ShardReport p;
  p.set_error(r.error);
  to_pb(r.file, p.mutable_file());
  for (const auto& t : r.tensors) to_pb(t, p.add_tensors());
  return p.SerializeAsString();
}

ShardReportInfo parse_report(const std::string& bytes) {
  pb::ShardReport p;
  ShardReportInfo r;
  if (!p.ParseFromString(bytes)) {
    r.error = "unreadable report";
    return r;
  }
  r.error = p.error();
  r.file = {p.file().name(), p.file().size(), p.file().xxh64()};
  for (const auto& t : p.tensors()) r.tensors.push_back(from_pb(t));
  return r;
}

void write_sharded_manifest(const std::string& dir, const ShardedManifest& sm,
                            const std::vector<std::string>& kinds) {
  for (const auto& t : sm.tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    for (const auto& kind : kinds) {
      std::vector<std::pair<int64_t, int64_t>> r;
      for (const auto& s : t.slices)
        if (s.kind == kind) r.push_back({s.begin, s.end});
      std::sort(r.begin(), r.end());
      int64_t at = 0;
      for (const auto& [b, e] : r) {
        ASC_CHECK(b == at, "checkpoint: {} of {} has {} at element {}", kind, t.name,
                  b < at ? "overlapping slices" : "a gap", std::min(b, at));
        at = e;
      }
      ASC_CHECK(at == numel, "checkpoint: {} of {} covers {} of {} elements", kind, t.name, at,
                numel);
    }
  }
  pb::Manifest m;
  m.set_format_version(2);
  m.set_step(sm.info.step);
  m.set_samples(sm.info.samples);
  m.set_world_size(sm.info.world_size);
  m.set_parallel_mode(sm.info.parallel_mode);
  m.set_dtype(sm.info.dtype);
  m.set_recipe_xxh64(sm.info.recipe_xxh64);
  m.set_data_seed(sm.data_seed);
  m.set_optimizer_step(sm.optimizer_step);
  for (const auto& f : sm.files) to_pb(f, m.add_files());
  for (const auto& t : sm.tensors) to_pb(t, m.add_tensors());
  write_file_atomic((fs::path(dir) / kManifestFile).string(), m.SerializeAsString());
}

bool read_sharded_manifest(const std::string& dir, ShardedManifest* out) {
  pb::Manifest m;
  if (!read_manifest(dir, &m) || m.format_version() != 2) return false;
  out->info.step = m.step();
  out->info.samples = m.samples();
  out->info.world_size = m.world_size();
  out->info.parallel_mode = m.parallel_mode();
  out->info.dtype = m.dtype();
  out->info.recipe_xxh64 = m.recipe_xxh64();
  out->optimizer_step = m.optimizer_step();
  out->data_seed = m.data_seed();
  out->files.clear();
  for (const auto& f : m.files()) out->files.push_back({f.name(), f.size(), f.xxh64()});
  out->tensors.clear();
  for (const auto& t : m.tensors()) out->tensors.push_back(from_pb(t));
  return true;
}

void save_fault_point(const std::string& s, const char* point, int rank, int64_t step) {
  if (s.empty()) return;
  // "stop:" first: the rank stops (SIGSTOP, a hung or suspended process) instead of dying.
  const bool stop = s.rfind("stop:", 0) == 0;
  const std::string spec = stop ? s.substr(5) : s;
  const auto c1 = spec.find(':');
  if (c1 == std::string::npos || spec.substr(0, c1) != point) return;
  const auto c2 = spec.find(':', c1 + 1);
  if (std::atoi(spec.substr(c1 + 1, c2 - c1 - 1).c_str()) != rank) return;
  if (c2 != std::string::npos && std::atoll(spec.substr(c2 + 1).c_str()) != step) return;
  fmt::print(stderr, "fault injection: rank {} {} at save point '{}' of step {}\n", rank,
             stop ? "stopped" : "killed", point, step);
  std::fflush(stderr);
  ::raise(stop ? SIGSTOP : SIGKILL);
}

}  // namespace asc
