#include "checkpoint/manifest.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
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
  if (!read_manifest(dir, &m)) return fmt::format("{}/{}: unreadable", dir, kManifestFile);
  if (m.files_size() == 0) return fmt::format("{}/{}: lists no files", dir, kManifestFile);
  for (const auto& f : m.files()) {
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
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok())
    ASC_FAIL("{}: cannot print the manifest as JSON", dir);
  return out;
}

std::vector<std::string> step_dirs_newest_first(const std::string& run_dir) {
  std::vector<std::string> out;
  if (!fs::is_directory(run_dir)) return out;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.size() == 12 && n.rfind("step-", 0) == 0 &&
        n.find_first_not_of("0123456789", 5) == std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace asc
