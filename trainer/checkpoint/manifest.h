// manifest.h — the manifest that makes a step directory a complete checkpoint
// (proto/checkpoint_manifest.proto): every file's size and XXH64, written last, before the
// directory is renamed into place and `latest` is advanced. No libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asc {

struct CheckpointInfo {
  int64_t step = 0, samples = 0, world_size = 1;
  std::string parallel_mode = "none", dtype = "fp32", recipe_xxh64;
};

constexpr const char* kManifestFile = "manifest.pb";

std::string xxh64_hex(const std::string& bytes);
std::string xxh64_file(const std::string& path);  // streams the file
// Hashes every regular file in `dir` (but the manifest) and writes dir/manifest.pb atomically.
void write_manifest(const std::string& dir, const CheckpointInfo& info);
// "" when `dir` holds a manifest and every file it lists with that size and hash; otherwise the
// first problem, naming the file.
std::string verify_checkpoint(const std::string& dir);
// The manifest as JSON (asclepius ckpt inspect).
std::string manifest_json(const std::string& dir);
// The step directories of a run, newest first.
std::vector<std::string> step_dirs_newest_first(const std::string& run_dir);

}  // namespace asc
