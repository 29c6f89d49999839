// hf_io.h — Hugging Face LLaMA directories in and out, and the format-1 step checkpoint
// (training now writes format 2, checkpoint/sharded.h; format 1 is still read, and its writer
// is kept for the test that old checkpoints load).
//
// In: config.json + model.safetensors, or shards + model.safetensors.index.json. Pickle .bin
// checkpoints are refused (unpickling runs code) with the one-line conversion to use instead.
// Out: config.json, generation_config.json and safetensors (one model.safetensors, or
// model-0000i-of-0000N.safetensors shards + index), the layout AutoModelForCausalLM loads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "model/llama.h"
#include "checkpoint/state.h"

namespace asc {

LlamaConfig read_hf_config(const std::string& dir);
// A Hugging Face directory's safetensors (one file, or shards through the index), mapped.
struct WeightFiles {
  std::vector<std::shared_ptr<st::SafetensorsFile>> files;
  std::map<std::string, size_t> by_name;  // tensor -> index in files
};
WeightFiles open_weights(const std::string& dir);
class CheckpointReader;
// A model's weights in a directory, read a range at a time (so a rank reads only what it owns):
// a Hugging Face directory (any floating dtype, converted) or one of our training checkpoints
// (format 2: its fp32 master weights; format 1: its safetensors). The constructor checks names
// and shapes against `config`: a missing or unexpected tensor is an error naming it and the file.
class WeightReader {
 public:
  WeightReader(const std::string& dir, const LlamaConfig& config);
  ~WeightReader();
  // Elements [begin, end) of parameter `name`, row-major, as fp32 into `out`.
  void read(const std::string& name, int64_t begin, int64_t end, float* out) const;

 private:
  std::string dir_;
  std::unique_ptr<CheckpointReader> sharded_;
  WeightFiles files_;
};
// Copies every parameter of `model` from the directory (WeightReader's checks).
void load_hf_weights(const std::string& dir, LlamaForCausalLM& model);
// The model's tensors under Hugging Face names.
NamedTensors hf_named_tensors(LlamaForCausalLM& model);
// config.json (torch_dtype set from `dtype`) and generation_config.json, as save_hf_dir writes
// them.
void write_hf_config_files(const std::string& out_dir, LlamaConfig config, at::ScalarType dtype);
// Writes a Hugging Face directory; tensors converted to `dtype`; a new shard starts when the
// current one would exceed max_shard_bytes (a single tensor larger than that gets its own shard).
void save_hf_dir(const std::string& out_dir, LlamaConfig config, const NamedTensors& tensors,
                 at::ScalarType dtype, uint64_t max_shard_bytes = 5'000'000'000ull);

// Format 1, the earlier one-process checkpoint: RUN/step-NNNNNNN/ is a Hugging Face
// directory (fp32 master weights) plus optimizer.safetensors (per parameter NAME.exp_avg and
// NAME.exp_avg_sq, fp32; metadata format=asclepius-adamw-v1, step=N) and trainer_state.json;
// RUN/latest names the newest one and is replaced atomically only after the step directory is
// complete. The layout is the optimizer-independent OptimizerState (checkpoint/state.h).
std::string step_dir_name(int64_t step);
// Whether `name` is a file save_hf_dir or export_hf_parallel writes (config.json,
// generation_config.json, model.safetensors, model-NNNNN-of-NNNNN.safetensors and its index).
bool is_hf_export_file(const std::string& name);
// The manifest (checkpoint/manifest.h, sizes and XXH64 of every file) is written last, before
// the directory is renamed into place; then `latest` advances; then, with keep_last > 0, older
// step directories beyond the newest keep_last are removed (never the one `latest` names).
void save_step_checkpoint(const std::string& run_dir, int64_t step, const LlamaConfig& config,
                          const OptimizerState& opt_state, const std::string& state_json,
                          const CheckpointInfo& info = {}, int64_t keep_last = 0);
// checkpoint.keep_last: removes all but the newest keep_last step directories (0: keeps all),
// never `saved`. Called once `latest` names the new save, so a directory that cannot be removed
// is a warning, not a failed save: the run goes on.
void remove_old_checkpoints(const std::string& run_dir, int64_t keep_last,
                            const std::string& saved);
// For resuming: the newest step directory of the run whose files match its manifest. Damaged
// or incomplete ones are skipped with a warning naming the file; fails when none is complete.
std::string newest_complete_checkpoint(const std::string& run_dir);
void save_optimizer_moments(const std::string& path, const OptimizerState& s);
// Reads a step directory's master weights and moments for `params` (names and shapes checked),
// as CPU fp32 tensors.
OptimizerState load_optimizer_state(const std::string& step_dir, const NamedTensors& params);
// A run directory (follows `latest`), a step directory, or a Hugging Face directory -> the
// directory holding config.json and the weights.
std::string resolve_model_dir(const std::string& path);

}  // namespace asc
