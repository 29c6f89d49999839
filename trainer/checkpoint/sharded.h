// sharded.h — the training checkpoint as every rank's own shard (format 2), and reading any
// part of any checkpoint back by byte range.
//
// RUN/step-NNNNNNN/
//   shard-0000r-of-0000W.safetensors  rank r's slices: tensors named KIND:NAME:BEGIN:END, 1-D,
//                                     elements [BEGIN, END) of parameter NAME flattened; KIND is
//                                     master, exp_avg, exp_avg_sq (fp32) and, in bf16 runs, param
//                                     (the compute-dtype copy). Metadata: format, step, rank,
//                                     world_size, shapes (JSON: NAME -> global shape).
//   config.json, generation_config.json, trainer_state.json, recipe.yaml   (rank 0)
//   manifest.pb  written last: every file's size and XXH64, and for every logical tensor its
//                global shape and which byte range of which file holds which slice.
// Nothing is gathered: each rank writes what it owns (ddp: an even split of what all hold).
//
// Commit (save_sharded_checkpoint, a collective): rank 0 makes step-N.partial; every rank
// writes and fsyncs its shard and hashes it; all ranks exchange reports (all-gather), so all
// know whether every rank succeeded; rank 0 writes its files and the manifest (temporary name,
// fsync, rename), renames step-N.partial to step-N, fsyncs the run directory, then moves
// `latest` the same way and applies checkpoint.keep_last; a final agreement makes every rank
// fail alike if rank 0 did. A process killed at any point leaves `latest` at a complete
// checkpoint (tested by killing each rank at each point: ASCLEPIUS_FAULT_SAVE).
//
// Reading (CheckpointReader): format 2 through the manifest's byte ranges, format 1 (a Hugging
// Face directory + optimizer.safetensors, earlier versions) through the safetensors headers.
// read() touches only the bytes of the slices overlapping the asked range (pread), so a rank
// resuming at another world size reads only what it now owns.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "checkpoint/manifest.h"
#include "checkpoint/state.h"
#include "model/llama_config.h"

namespace asc {

namespace comm {
class Communicator;
}

struct ShardedSave {
  std::string run_dir;
  int64_t step = 0;            // loop steps (the directory's name)
  int64_t optimizer_step = 0;  // AdamW updates
  LlamaConfig config;
  std::string state_json;   // trainer_state.json
  std::string recipe_yaml;  // the resolved recipe (recipe.yaml in the step directory)
  CheckpointInfo info;      // step, samples, world size, mode, dtype, recipe hash
  uint64_t data_seed = 0;
  bool bf16_params = false;  // also store the bf16 compute copy (kind "param")
  int64_t keep_last = 0;
  // The exchanges' deadline, in time without progress: while the files of the run's step
  // directories change (a rank writing its shard, rank 0 committing, keep_last removing), a
  // waiting rank waits on, however long a large model takes to write; a rank that stops or hangs
  // is named after timeout_s without progress (parallel.timeout_s).
  double timeout_s = 600;
  std::string fault_spec;  // test hook (save_fault_point, checkpoint/manifest.h); "" = none
};

// Collective over `comm` (null: one process). `mine`: this rank's slices; across ranks they must
// cover every element of every parameter exactly once (checked when the manifest is built).
// Throws on every rank, naming the failing ranks and their errors, if any rank failed.
// = begin_sharded_checkpoint + write_shard + commit_sharded_checkpoint.
void save_sharded_checkpoint(const ShardedSave& s, const std::vector<StateSlice>& mine,
                             comm::Communicator* comm);
// The phases, for an asynchronous save: begin (collective: the temporary directory), write
// (this rank's shard; no communication, so it may run on another thread; errors go into the
// report), commit (collective: the reports exchanged, then rank 0's manifest, rename, latest).
void begin_sharded_checkpoint(const ShardedSave& s, comm::Communicator* comm);
ShardReportInfo write_shard(const ShardedSave& s, const std::vector<StateSlice>& mine, int rank,
                            int world);
void commit_sharded_checkpoint(const ShardedSave& s, const ShardReportInfo& mine,
                               comm::Communicator* comm);

class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& step_dir);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& dir() const { return dir_; }
  int format() const { return format_; }
  int64_t optimizer_step() const { return optimizer_step_; }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  const std::vector<int64_t>& shape(const std::string& name) const;
  // Throws naming the directory unless `name` is in the checkpoint with the shape of `like`.
  void check_shape(const std::string& name, const at::Tensor& like) const;
  std::vector<std::string> names() const;
  // Elements [begin, end) of `kind` (master | exp_avg | exp_avg_sq) of parameter `name`,
  // converted to fp32 into `out`. Throws naming the directory when the range is not covered.
  void read(const std::string& name, const std::string& kind, int64_t begin, int64_t end,
            float* out) const;
  at::Tensor read_full(const std::string& name, const std::string& kind) const;  // fp32
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  struct Slice {
    std::string file, dtype;
    int64_t begin = 0, end = 0;
    uint64_t offset = 0;
  };
  struct Tensor {
    std::vector<int64_t> shape;
    std::map<std::string, std::vector<Slice>> by_kind;  // sorted by begin
  };
  int fd(const std::string& file) const;
  void check_slices() const;
  std::string dir_;
  int format_ = 0;
  int64_t optimizer_step_ = 0;
  std::map<std::string, Tensor> tensors_;
  mutable std::map<std::string, int> fds_;
  mutable uint64_t bytes_read_ = 0;
};

// Whether `dir` is a format-2 (sharded) checkpoint.
bool is_sharded_checkpoint(const std::string& dir);

}  // namespace asc
