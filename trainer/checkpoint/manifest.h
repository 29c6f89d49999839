// manifest.h — the manifest that makes a step directory a complete checkpoint
// (proto/checkpoint_manifest.proto): every file's size and XXH64, written last, before the
// directory is renamed into place and `latest` is advanced. No libtorch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace asc {

struct CheckpointInfo {
  int64_t step = 0, samples = 0, world_size = 1;
  std::string parallel_mode = "none", dtype = "fp32", recipe_xxh64;
};

constexpr const char* kManifestFile = "manifest.pb";
constexpr uint32_t kManifestFormatMax = 2;  // the newest manifest format this build reads

std::string xxh64_hex(const std::string& bytes);
std::string xxh64_file(const std::string& path);  // streams the file
// XXH64 of the concatenation of the pieces (a file's bytes hashed from memory as it is written).
std::string xxh64_hex_pieces(const std::vector<std::pair<const void*, size_t>>& pieces);
// Hashes every regular file in `dir` (but the manifest) and writes dir/manifest.pb atomically.
void write_manifest(const std::string& dir, const CheckpointInfo& info);
// "" when `dir` holds a manifest of a format this build reads, of the step its name says, and
// every file it lists (plain names inside `dir`) with that size and hash; otherwise the first
// problem, naming the file. Resuming skips a checkpoint with a problem to an older one.
std::string verify_checkpoint(const std::string& dir);
// The format_version of dir's manifest; 0 when it has none (or an unreadable one).
uint32_t manifest_format_version(const std::string& dir);
// The step a directory's name says ("run/step-0000010" -> 10), if it is a step directory.
std::optional<int64_t> step_of_dir_name(const std::string& dir);
// Throws when dir's manifest is empty or unreadable, or of a format newer than this build reads.
void require_known_manifest_format(const std::string& dir);
// The manifest as JSON (asclepius ckpt inspect).
std::string manifest_json(const std::string& dir);
// The step directories of a run, newest first.
std::vector<std::string> step_dirs_newest_first(const std::string& run_dir);
// Whether `name` names a step directory: "step-" and 7 to 18 digits (step_dir_name).
bool is_step_dir_name(const std::string& name);
// What `latest` in run_dir holds (trimmed), or "" when there is no readable `latest` (absent,
// a directory, a symlink loop). Never throws; no other checks.
std::string read_latest(const std::string& run_dir);
// Whether run_dir has a `latest` entry in any form (a dangling or looping link included).
bool has_latest(const std::string& run_dir);
// Whether run_dir holds checkpoints of a run (a `latest` or a step directory: also a run killed
// between renaming its first step directory and writing `latest`): train resumes it (or
// refuses a fresh start there), and no command writes its outputs into it.
bool run_has_checkpoints(const std::string& run_dir);
// Whether `name` is a file name that stays in its directory (no '/', not "." or "..").
bool is_plain_file_name(const std::string& name);

// ---- format 2 (checkpoint/sharded.h): the manifest's slice table, as plain structs ---------
struct FileInfo {
  std::string name;
  uint64_t size = 0;
  std::string xxh64;
};
FileInfo file_info(const std::string& path);  // size and XXH64 of a file
struct SliceInfo {
  std::string file, kind, dtype;    // kind: param | master | exp_avg | exp_avg_sq
  int64_t begin = 0, end = 0;       // elements of the flattened tensor
  uint64_t offset = 0, length = 0;  // absolute bytes in `file`
};
struct TensorSlices {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<SliceInfo> slices;
};
// One rank's report after writing its shard: an error, or its file and slices.
struct ShardReportInfo {
  std::string error;
  FileInfo file;
  std::vector<TensorSlices> tensors;
};
std::string serialize_report(const ShardReportInfo& r);
ShardReportInfo parse_report(const std::string& bytes);  // unreadable -> error set

struct ShardedManifest {
  CheckpointInfo info;  // info.step: loop steps
  int64_t optimizer_step = 0;
  uint64_t data_seed = 0;
  std::vector<FileInfo> files;
  std::vector<TensorSlices> tensors;  // merged over ranks
};
// Checks that, for every tensor and each of `kinds`, the slices cover [0, numel) exactly once
// (naming the tensor and the gap or overlap), then writes dir/manifest.pb atomically.
void write_sharded_manifest(const std::string& dir, const ShardedManifest& m,
                            const std::vector<std::string>& kinds);
// True and filled when dir/manifest.pb is a format-2 manifest.
bool read_sharded_manifest(const std::string& dir, ShardedManifest* m);

// Test hook: `spec` = "POINT:RANK[:STEP]" (from ASCLEPIUS_FAULT_SAVE, read once by the CLI into
// TrainHooks, passed in ShardedSave::fault_spec) kills this process (SIGKILL) when the save of
// STEP (any step when omitted) reaches POINT on RANK; "stop:POINT:RANK[:STEP]" stops it
// (SIGSTOP) instead. Points: shard, report, manifest, rename, latest, done. Empty: nothing.
void save_fault_point(const std::string& spec, const char* point, int rank, int64_t step);

}  // namespace asc
