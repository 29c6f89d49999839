// llama_config.h — the LLaMA decoder family's hyper-parameters, named exactly as Hugging Face's
// LlamaConfig (config.json), the built-in presets, and the arithmetic derived from them
// (parameter counts, training FLOPs per token). No libtorch here: recipes and tools use it too.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace asc {

// Llama 3.1's rotary scaling (config.json rope_scaling with rope_type "llama3"), as transformers'
// _compute_llama3_parameters: frequencies whose wavelength exceeds
// original_max_position_embeddings / low_freq_factor are divided by `factor`, those shorter than
// original_max_position_embeddings / high_freq_factor are kept, and those between are
// interpolated smoothly. The only rope_scaling we run: any other rope_type is refused.
struct RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  bool operator==(const RopeScaling& o) const {
    return factor == o.factor && low_freq_factor == o.low_freq_factor &&
           high_freq_factor == o.high_freq_factor &&
           original_max_position_embeddings == o.original_max_position_embeddings;
  }
};

struct LlamaConfig {
  std::string model_type = "llama";  // "llama" or "mistral" (same tensors, other class name)
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // Unset (null) = plain rotary (LLaMA-1/2, Llama 3, Mistral).
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  // Llama 3 lists several end ids (eos_token_id: [128001, 128008, 128009]): all of them, in
  // order, when config.json gives a list (eos_token_id is then the first); empty when it gives
  // one id. Generation stops on any of them; the list is written back as a list.
  std::vector<int64_t> eos_token_ids;
  // Hugging Face builds the embedding with padding_idx = pad_token_id: that row is zeroed at
  // initialisation and gets no gradient. Unset for LLaMA/Mistral checkpoints.
  std::optional<int64_t> pad_token_id;
  // Mistral v0.1 attends within a 4096-token window; unset (null) = full causal attention.
  std::optional<int64_t> sliding_window;
  std::string torch_dtype = "float32";  // dtype written to / read from config.json
  // XXH64 of the tokenizer the model was trained with (config.json "asclepius_tokenizer_xxh64";
  // "" = not recorded, e.g. a Hugging Face base model): every command that pairs the model with
  // a tokenizer or a corpus checks it.
  std::string tokenizer_xxh64;
  // The prompt template of the instruction tuning that made this model (config.json
  // "asclepius_prompt_template" and "_xxh64"; "" = none recorded): generate uses it and refuses
  // another unless told.
  std::string prompt_template, prompt_template_xxh64, prompt_template_text;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Parameters of the whole model (embedding and head included; the head once when tied).
  int64_t num_parameters() const;
  // Parameters excluding the input embedding (the "N" of 6·N·tokens; the LM head counts).
  int64_t num_parameters_no_embedding() const;
  // Training FLOPs per token at sequence length T: 6·N (N without embedding) + 12·L·d·T.
  double train_flops_per_token(int64_t seq_len) const;
  // Every id that ends a sequence: eos_token_ids when listed, else {eos_token_id}.
  std::vector<int64_t> end_token_ids() const;

  // Throws asc::Error naming the field when the shape arithmetic is impossible or a size is
  // beyond what we can count (each dimension <= 2^24, layers <= 4096). `where(fields)` gives
  // the location to report for the comma-separated fields involved ("recipe.yaml:3").
  void validate(const std::function<std::string(const char* field)>& where) const;
  void validate(const std::string& where) const {
    validate([&](const char*) { return where; });
  }
};

// Throws when the model records a tokenizer and `tokenizer_xxh64` (of a tokenizer, or the one
// a corpus was built with: `what`) is another. Nothing to check when either is unknown ("").
void check_same_tokenizer(const LlamaConfig& model, const std::string& model_where,
                          const std::string& tokenizer_xxh64, const std::string& what);

// Every parameter's Hugging Face name and shape, in the model's order (named_parameters()):
// what a checkpoint or export of this architecture holds, known without building the model.
std::vector<std::pair<std::string, std::vector<int64_t>>> llama_parameter_shapes(
    const LlamaConfig& c);

// Built-in presets: llama-7b, llama-13b, llama2-7b, llama2-13b, llama3-8b, llama3.1-8b,
// mistral-7b (= mistral-7b-v0.3), and CPU-sized tiny / tiny-gqa / small. Throws naming the closest
// preset for an unknown name.
LlamaConfig llama_preset(const std::string& name);
std::vector<std::string> llama_preset_names();

// Hugging Face config.json <-> LlamaConfig. from_hf_json rejects architectures we do not run.
LlamaConfig llama_config_from_hf_json(const nlohmann::json& j, const std::string& where);
nlohmann::json llama_config_to_hf_json(const LlamaConfig& c);
// config.json's / generation_config.json's eos_token_id: the list when the model has one, else
// the id.
nlohmann::json llama_eos_token_id_json(const LlamaConfig& c);

}  // namespace asc
