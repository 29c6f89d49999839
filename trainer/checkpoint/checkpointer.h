// checkpointer.h — everything the training loop does with checkpoints, in one object (the role
// of torchtitan's CheckpointManager):
//   - resume():  whether the run directory already holds checkpoints; if so, the newest complete
//                one (rank 0 verifies it and every rank takes the same answer, or the same
//                error), the check that the recipe still trains the same thing, the metrics of
//                steps about to be redone trimmed, the optimizer state read back;
//   - begin_run(): rank 0 creates the run directory and, on a fresh start, its recipe.yaml;
//   - save():     synchronous, or asynchronous (the state copied into staging buffers kept from
//                save to save, a thread writes this rank's shard, the commit waits for a step
//                boundary where every rank's write is done: commit_if_written());
//   - finish():   commits a save still in flight (end of the run, or before a stop's save).
// Every rank writes its own shard; all agree the save succeeded before rank 0 commits it
// (checkpoint/sharded.h). Destroyed while unwinding an error, it waits for a background write
// and commits nothing, so `latest` never names a half-written checkpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/sharded.h"
#include "comm/communicator.h"
#include "config/recipe.h"
#include "model/llama_config.h"
#include "checkpoint/state.h"

namespace asc {

class Checkpointer {
 public:
  // comm: the host communicator (null: one process). Test hooks: async_write_delay_ms holds
  // background writes back, so training has certainly changed the state before it is written;
  // fault_spec kills this process at a point of a save (save_fault_point, checkpoint/manifest.h).
  // has_checkpoints: run_has_checkpoints(checkpoint.dir), decided once before the model was
  // built (its parameters were filled from the initial weights only when it is false).
  Checkpointer(const Recipe& recipe, const LlamaConfig& config, comm::Communicator* comm,
               bool has_checkpoints, int async_write_delay_ms = 0, std::string fault_spec = {});
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  const std::string& run_dir() const { return run_dir_; }
  // Resuming (has_checkpoints at construction): agrees on the checkpoint, checks the recipe against
  // the run's, trims the metrics and loads `opt`'s state (the optimizer's) from it. Returns the
  // step to continue from (0 when there is nothing to resume). Fails alike on every rank.
  // total_steps: for the log line.
  int64_t resume(SavedState& opt, const NamedTensors& params, int64_t total_steps);
  // After resume(): rank 0 creates the run directory (a fresh start writes its recipe.yaml and
  // drops stale metrics). `first_step`: what resume() returned.
  void begin_run(int64_t first_step);

  // With checkpoint.async: allocates (and touches) the staging buffers once, before training,
  // so the first background save pauses training no longer than the later ones.
  void prepare_async(const SavedState& opt, const NamedTensors& params);
  // Saves the state at `step` (loss: the step's, for trainer_state.json). One save in flight at
  // a time: a save waits for the previous background write and commits it first.
  void save(int64_t step, double loss, const SavedState& opt, const NamedTensors& params,
            bool async);
  // Whether this rank's background write is still running (for the per-step agreement).
  bool writing() const;
  // At a step boundary, once every rank said its write is done: commits the pending save.
  void commit_if_written(bool all_ranks_written);
  // Commits a save still in flight, waiting for the writes as long as a write may take.
  void finish();

 private:
  struct Pending;
  ShardedSave describe(int64_t step, double loss, const SavedState& opt) const;
  void allocate_staging(const std::vector<StateSlice>& mine);
  void commit_pending();
  void record_provenance(int64_t first_step);

  const Recipe& recipe_;
  LlamaConfig config_;
  comm::Communicator* comm_;
  int rank_ = 0, world_ = 1;
  int delay_ms_ = 0;
  std::string fault_spec_;
  std::string run_dir_;
  bool resuming_ = false;
  std::string recipe_text_;           // the run's recipe.yaml, read once by rank 0
  nlohmann::json provenance_;         // trainer_state.json "provenance" (rank 0)
  std::string resumed_dir_;           // the checkpoint resume() took
  std::vector<StateSlice> staging_;   // async saves' host copies, allocated (and touched) once
  std::unique_ptr<Pending> pending_;  // the save being written in the background
};

// Resuming: fails naming the key when the recipe changes what is trained against the run's
// saved recipe (saved_path); logging, checkpointing, the parallel layout and a few harmless
// train keys may change and are noted (talk: print the notes).
void check_resume_compatible(const Recipe& r, const std::string& saved_path, bool talk);

// Drops the lines of metrics.jsonl after `step` (to be redone) and torn lines; rewrites the file
// atomically. Returns the number dropped.
int64_t drop_metrics_after(const std::string& path, int64_t step);

}  // namespace asc
