// recipe.h — the typed training recipe (YAML) and its one validation pass.
//
// Sections: model, data, train, parallel, checkpoint, logging. Every key has a type, a default
// and a range; unknown keys (with a "did you mean"), duplicate keys, wrong types, values out of
// range and batch arithmetic that does not divide are errors naming the file, the line and the
// full key path. Dotted overrides ("train.lr=1e-4") go through the same setters.
// No libtorch here: the recipe fuzzer and sanitizer builds use this file alone.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/choices.h"
#include "model/llama_config.h"

namespace asc {

struct Recipe {
  struct Model {
    std::string preset;     // one of llama_preset_names(); exclusive with init_from
    std::string init_from;  // Hugging Face directory (config.json + safetensors)
    // Optional overrides of the preset's LlamaConfig fields (Hugging Face names).
    std::optional<int64_t> vocab_size, hidden_size, intermediate_size, num_hidden_layers,
        num_attention_heads, num_key_value_heads, max_position_embeddings;
    std::optional<double> rms_norm_eps, rope_theta;
    std::optional<bool> tie_word_embeddings;
  } model;
  struct Data {
    std::string corpus = "demo";  // "demo": the built-in token stream; else a corpus.h5
    std::string tokenizer;        // tokenizer.model: must be the one that built the corpus
    int64_t seq_len = 128;
    int64_t demo_samples = 4096;  // size of the built-in demo corpus (sequences)
    bool pack = false;            // instruct: pack examples into data.seq_len rows
    // Instruct: the prompt template the corpus must have been built with (a built-in name or a
    // file; data/prompts/README.md). "" = whatever the corpus records.
    std::string prompt_template;
    bool allow_prompt_mismatch = false;  // train on a corpus built with another template
    // Instruct: upstream's collator quirks (docs/data-format.md): the corpus must have been built
    // with `corpus build --upstream-compat`, and no token attends to a BOS (pad = BOS upstream).
    bool upstream_compat = false;
  } data;
  struct Train {
    Stage stage = Stage::kPretrain;
    int64_t global_batch_size = 8;
    int64_t micro_batch_size = 8;
    int64_t max_steps = 0;  // > 0 overrides epochs (as the Hugging Face Trainer does)
    double epochs = 1.0;
    double lr = 2e-5;
    Schedule lr_schedule = Schedule::kCosine;  // cosine | linear | constant (all after warm-up)
    double warmup_ratio = 0.03;
    double weight_decay = 0.0;
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double max_grad_norm = 1.0;  // <= 0 disables clipping
    // How the optimizer steps the engine's flat buffers (optim/flat_adamw.h), in any parallel
    // mode: fused, one pass of our kernel; reference, libtorch ops one parameter at a time. Same
    // results within fp32 rounding, same checkpoint layout.
    OptimizerKind optimizer = OptimizerKind::kFused;
    // Steps whose loss or gradient is NaN/Inf are skipped on every rank together (weights and
    // optimizer state unchanged); more than this many in a row stop the run.
    int64_t max_bad_steps = 5;
    DType dtype = DType::kFp32;  // compute dtype: fp32 | bf16 (bf16 keeps fp32 master weights)
    int64_t seed = 42;
    // cpu | cuda. cuda: each rank trains on the GPU of its local rank (local rank modulo the
    // devices visible); the parallel engine's collectives then go through NCCL.
    DeviceKind device = DeviceKind::kCpu;
    int64_t threads = 0;  // intra-op threads; 0 = libtorch's default
    // > 0: the LM head's cross-entropy this many positions at a time, forward and backward, so
    // the full [tokens, vocab] fp32 logits never exist (kernels/layer_ops.h); 0: all at once.
    int64_t loss_chunk_rows = 0;
    bool cache_host_memory = true;  // reuse freed host memory (common/host_memory.h)
    // Stop a CPU run before it starts when its memory plan exceeds what the node allows each rank
    // (parallel/planner.h); false skips the check where the estimate is known to be wrong.
    bool check_memory = true;
    // TF32 for fp32 matrix products and convolutions on GPUs (cuBLAS, cuDNN), as upstream's
    // `--tf32 True`. No effect on CPUs or on bf16 compute.
    bool tf32 = true;
  } train;
  struct Parallel {
    ParallelMode mode = ParallelMode::kNone;  // none | ddp | zero2 | fsdp
    // Recompute each decoder layer's activations in backward. Unset in the file: on for fsdp,
    // off otherwise (validate() fills it in, so it is always set afterwards).
    std::optional<bool> activation_checkpointing;
    double timeout_s = 600;  // a collective that waits longer ends every rank with a message
  } parallel;
  struct Checkpoint {
    std::string dir = "runs/demo";  // the run directory
    int64_t every_steps = 0;        // 0 = only at the end
    bool at_end = true;             // false: no save when the run completes (benchmarks); a
                                    // stop signal still saves
    // never: a run directory that already holds checkpoints is refused; auto: continue from its
    // newest checkpoint (same world size or not), refusing recipe changes that alter the math.
    ResumePolicy resume = ResumePolicy::kNever;
    int64_t keep_last = 0;  // > 0: keep only the newest N step directories
    // true: the step goes on once the state is copied out; a thread writes it; the checkpoint
    // is committed (and becomes `latest`) at the first step boundary after every rank's write.
    bool async = false;
  } checkpoint;
  // Validation during training (the Hugging Face Trainer's evaluation_strategy "steps", llm.c's
  // val loss): held-out loss and perplexity on eval.corpus every eval.every_steps and at the end.
  struct Eval {
    std::string corpus;       // an HDF5 corpus (pretrain windows or instruct examples); "" = off
    int64_t every_steps = 0;  // > 0: also every this many steps (0: at the end only)
    // > 0: only the first max_batches x train.global_batch_size sequences; 0 = the whole corpus
    int64_t max_batches = 0;
  } eval;
  struct Logging {
    bool tensorboard = false;
    bool progress = true;      // live progress line on rank 0
    double peak_tflops = 0.0;  // for MFU, one device's (MFU = tflops of all ranks / (peak x
                               // ranks)); 0 = 989 on CUDA (H100/H200 dense bf16), none on CPU
    // > 0: libtorch's profiler (CPU ops and CUDA kernels) records steps profile_start_step ..
    // profile_start_step + profile_steps - 1 into <run>/profile/trace-rank<R>.json (Chrome trace)
    int64_t profile_start_step = 0;
    int64_t profile_steps = 1;
  } logging;

  // Where each key was set: "file.yaml:12" or "command line (train.lr=1e-4)". Defaults absent.
  std::map<std::string, std::string> origin;
  std::string source;  // the recipe file

  // Derived by validate(): gradient-accumulation steps per optimizer step.
  int64_t grad_accum_steps = 1;
  int64_t world_size = 1;

  // Preset + overrides (or nullopt when the architecture comes from model.init_from).
  std::optional<LlamaConfig> preset_model_config() const;
  std::string where(const std::string& path) const;  // origin or "<recipe default>"
};

// The largest recipe file load_recipe reads (a recipe is a few kilobytes).
constexpr size_t kMaxRecipeBytes = size_t(1) << 20;
// Loads file, applies overrides ("a.b=value", value parsed as YAML unless it holds a '#': then
// the string itself), validates for world_size data-parallel ranks. Throws asc::Error with
// file:line and key path.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {},
                   int64_t world_size = 1);
// Same from YAML text (used by tests and fuzzers); `name` stands in for the file name.
Recipe load_recipe_text(const std::string& text, const std::string& name,
                        const std::vector<std::string>& overrides = {}, int64_t world_size = 1);
// The fully resolved recipe as YAML (every key, defaults included); loads back to the same.
std::string recipe_to_yaml(const Recipe& r);
// Every valid dotted key.
std::vector<std::string> recipe_keys();

}  // namespace asc
