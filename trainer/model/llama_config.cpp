#include "model/llama_config.h"

#include <cmath>
#include <cstdint>

#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/strings.h"

namespace asc {

int64_t LlamaConfig::num_parameters_no_embedding() const {
  const int64_t d = hidden_size, kv = num_key_value_heads * head_dim();
  const int64_t attn = d * d * 2 + d * kv * 2;  // q, o + k, v
  const int64_t mlp = 3 * d * intermediate_size;
  const int64_t per_layer = attn + mlp + 2 * d;  // + two RMSNorm weights
  return num_hidden_layers * per_layer + d /* final norm */ + vocab_size * d /* lm head */;
}

int64_t LlamaConfig::num_parameters() const {
  int64_t n = num_parameters_no_embedding() + vocab_size * hidden_size;
  if (tie_word_embeddings) n -= vocab_size * hidden_size;
  return n;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> llama_parameter_shapes(
    const LlamaConfig& c) {
  const int64_t D = c.hidden_size, E = c.head_dim(), I = c.intermediate_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out = {
      {"model.embed_tokens.weight", {c.vocab_size, D}}};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    out.push_back({l + "self_attn.q_proj.weight", {c.num_attention_heads * E, D}});
    out.push_back({l + "self_attn.k_proj.weight", {c.num_key_value_heads * E, D}});
    out.push_back({l + "self_attn.v_proj.weight", {c.num_key_value_heads * E, D}});
    out.push_back({l + "self_attn.o_proj.weight", {D, c.num_attention_heads * E}});
    out.push_back({l + "mlp.gate_proj.weight", {I, D}});
    out.push_back({l + "mlp.up_proj.weight", {I, D}});
    out.push_back({l + "mlp.down_proj.weight", {D, I}});
    out.push_back({l + "input_layernorm.weight", {D}});
    out.push_back({l + "post_attention_layernorm.weight", {D}});
  }
  out.push_back({"model.norm.weight", {D}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, D}});
  return out;
}

std::vector<int64_t> LlamaConfig::end_token_ids() const {
  return eos_token_ids.empty() ? std::vector<int64_t>{eos_token_id} : eos_token_ids;
}

double LlamaConfig::train_flops_per_token(int64_t seq_len) const {
  return 6.0 * double(num_parameters_no_embedding()) +
         12.0 * double(num_hidden_layers) * double(hidden_size) * double(seq_len);
}

void LlamaConfig::validate(const std::function<std::string(const char*)>& where) const {
  auto in_range = [&](int64_t v, const char* name, int64_t hi) {
    if (v <= 0 || v > hi)
      ASC_FAIL("{}: model.{} = {} is out of range (1..{})", where(name), name, v, hi);
  };
  constexpr int64_t kDim = int64_t(1) << 24;
  in_range(vocab_size, "vocab_size", kDim);
  in_range(hidden_size, "hidden_size", kDim);
  in_range(intermediate_size, "intermediate_size", kDim);
  in_range(num_hidden_layers, "num_hidden_layers", 4096);
  in_range(num_attention_heads, "num_attention_heads", 4096);
  in_range(num_key_value_heads, "num_key_value_heads", 4096);
  in_range(max_position_embeddings, "max_position_embeddings", kDim);
  if (hidden_size % num_attention_heads != 0)
    ASC_FAIL("{}: model.hidden_size ({}) is not divisible by model.num_attention_heads ({})",
             where("hidden_size,num_attention_heads"), hidden_size, num_attention_heads);
  if (head_dim() % 2 != 0)
    ASC_FAIL("{}: head dimension hidden_size/num_attention_heads = {} must be even for rotary",
             where("hidden_size,num_attention_heads"), head_dim());
  if (num_attention_heads % num_key_value_heads != 0)
    ASC_FAIL(
        "{}: model.num_attention_heads ({}) is not divisible by model.num_key_value_heads ({})",
        where("num_key_value_heads,num_attention_heads"), num_attention_heads, num_key_value_heads);
  if (!(rms_norm_eps > 0)) ASC_FAIL("{}: model.rms_norm_eps must be > 0", where("rms_norm_eps"));
  if (!(rope_theta > 0)) ASC_FAIL("{}: model.rope_theta must be > 0", where("rope_theta"));
  if (pad_token_id && (*pad_token_id < 0 || *pad_token_id >= vocab_size))
    ASC_FAIL("{}: pad_token_id {} is outside the vocabulary (0..{})", where("pad_token_id"),
             *pad_token_id, vocab_size - 1);
  if (sliding_window && *sliding_window <= 0)
    ASC_FAIL("{}: sliding_window must be positive or null", where("sliding_window"));
  if (rope_scaling) {
    const RopeScaling& s = *rope_scaling;
    // NaN fails every comparison: each rule is written so that it refuses NaN too.
    if (!(s.factor > 0) || !std::isfinite(s.factor))
      ASC_FAIL("{}: rope_scaling.factor must be a finite number > 0 (got {})",
               where("rope_scaling"), s.factor);
    if (!(s.low_freq_factor > 0) || !std::isfinite(s.low_freq_factor))
      ASC_FAIL("{}: rope_scaling.low_freq_factor must be a finite number > 0 (got {})",
               where("rope_scaling"), s.low_freq_factor);
    if (!(s.high_freq_factor > s.low_freq_factor) || !std::isfinite(s.high_freq_factor))
      ASC_FAIL(
          "{}: rope_scaling.high_freq_factor ({}) must be finite and greater than "
          "rope_scaling.low_freq_factor ({})",
          where("rope_scaling"), s.high_freq_factor, s.low_freq_factor);
    if (s.original_max_position_embeddings <= 0 || s.original_max_position_embeddings > kDim)
      ASC_FAIL("{}: rope_scaling.original_max_position_embeddings = {} is out of range (1..{})",
               where("rope_scaling"), s.original_max_position_embeddings, kDim);
  }
  if (!eos_token_ids.empty() && eos_token_ids.front() != eos_token_id)
    ASC_FAIL("{}: eos_token_id {} is not the first of eos_token_ids ({})", where("eos_token_id"),
             eos_token_id, fmt::join(eos_token_ids, ", "));
}

namespace {
LlamaConfig make(int64_t d, int64_t layers, int64_t heads, int64_t kv, int64_t inter, int64_t vocab,
                 double theta, int64_t max_pos, double eps) {
  LlamaConfig c;
  c.hidden_size = d, c.num_hidden_layers = layers, c.num_attention_heads = heads;
  c.num_key_value_heads = kv, c.intermediate_size = inter, c.vocab_size = vocab;
  c.rope_theta = theta, c.max_position_embeddings = max_pos, c.rms_norm_eps = eps;
  return c;
}

const std::map<std::string, LlamaConfig>& presets() {
  static const std::map<std::string, LlamaConfig> p = [] {
    std::map<std::string, LlamaConfig> m;
    m["llama-7b"] = make(4096, 32, 32, 32, 11008, 32000, 1e4, 2048, 1e-6);
    m["llama-13b"] = make(5120, 40, 40, 40, 13824, 32000, 1e4, 2048, 1e-6);
    m["llama2-7b"] = make(4096, 32, 32, 32, 11008, 32000, 1e4, 4096, 1e-5);
    m["llama2-13b"] = make(5120, 40, 40, 40, 13824, 32000, 1e4, 4096, 1e-5);
    // Llama 3 8B (Meta-Llama-3-8B config.json) and Llama 3.1 8B: the same tensors; 3.1 reaches
    // 131072 positions with the llama3 rotary scaling.
    auto llama3 = make(4096, 32, 32, 8, 14336, 128256, 5e5, 8192, 1e-5);
    llama3.bos_token_id = 128000, llama3.eos_token_id = 128001;
    m["llama3-8b"] = llama3;
    auto llama31 = llama3;
    llama31.max_position_embeddings = 131072;
    llama31.rope_scaling = RopeScaling{8.0, 1.0, 4.0, 8192};
    m["llama3.1-8b"] = llama31;
    // Mistral 7B v0.3 (v0.2's architecture with a 32768-piece vocabulary; no sliding window).
    // mistral-7b is the same model under its older name.
    auto mistral = make(4096, 32, 32, 8, 14336, 32768, 1e6, 32768, 1e-5);
    mistral.model_type = "mistral";
    m["mistral-7b"] = mistral;
    m["mistral-7b-v0.3"] = mistral;
    // TinyLlama 1.1B's shapes (TinyLlama/TinyLlama-1.1B config.json): 1,100,048,384 parameters;
    // the largest model trained on a CPU here (tools/scale/tinyllama_1b.sh).
    m["tinyllama-1.1b"] = make(2048, 22, 32, 4, 5632, 32000, 1e4, 2048, 1e-5);
    // CPU-sized members of the family for demos and tests.
    m["tiny"] = make(64, 2, 4, 4, 176, 256, 1e4, 512, 1e-5);
    m["tiny-gqa"] = make(64, 2, 4, 2, 176, 256, 1e4, 512, 1e-5);
    m["small"] = make(512, 8, 8, 8, 1376, 32000, 1e4, 2048, 1e-5);  // benchmark size
    return m;
  }();
  return p;
}
}  // namespace

std::vector<std::string> llama_preset_names() {
  std::vector<std::string> names;
  for (const auto& [k, _] : presets()) names.push_back(k);
  return names;
}

LlamaConfig llama_preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string near = closest_match(name, llama_preset_names());
    ASC_FAIL_HINT(near.empty() ? "" : "did you mean " + near + "?",
                  "unknown model preset '{}' (known: {})", name,
                  fmt::join(llama_preset_names(), ", "));
  }
  return it->second;
}

namespace {
// config.json's rope_scaling (not null): Llama 3.1's "llama3" scaling, or "default" (none).
std::optional<RopeScaling> rope_scaling_from_json(const nlohmann::json& rs,
                                                  const std::string& where) {
  if (!rs.is_object())
    ASC_FAIL("{}: rope_scaling must be an object or null, got {}", where, rs.dump());
  // transformers reads "rope_type", falling back to the older spelling "type".
  const char* type_key = rs.contains("rope_type") ? "rope_type" : "type";
  if (!rs.contains(type_key))
    ASC_FAIL_HINT("Llama 3.1 writes \"rope_type\": \"llama3\"",
                  "{}: rope_scaling {} has no rope_type", where, rs.dump());
  if (!rs[type_key].is_string())
    ASC_FAIL("{}: rope_scaling.{} must be a string, got {}", where, type_key, rs[type_key].dump());
  const std::string type = rs[type_key].get<std::string>();
  if (type == "default") return std::nullopt;  // transformers: plain rotary
  if (type != "llama3")
    ASC_FAIL_HINT("only Llama 3.1's rotary scaling (rope_type llama3) is implemented",
                  "{}: rope_scaling.{} '{}' is not supported", where, type_key, type);
  auto number = [&](const char* key) {
    if (!rs.contains(key) || rs[key].is_null())
      ASC_FAIL("{}: rope_scaling (rope_type llama3) is missing field '{}'", where, key);
    if (!rs[key].is_number())
      ASC_FAIL("{}: rope_scaling.{} must be a number, got {}", where, key, rs[key].dump());
    return rs[key].get<double>();
  };
  RopeScaling s;
  s.factor = number("factor");
  s.low_freq_factor = number("low_freq_factor");
  s.high_freq_factor = number("high_freq_factor");
  const char* omp = "original_max_position_embeddings";
  number(omp);  // present and a number
  if (!rs[omp].is_number_integer())
    ASC_FAIL("{}: rope_scaling.{} must be an integer, got {}", where, omp, rs[omp].dump());
  s.original_max_position_embeddings = rs[omp].get<int64_t>();
  return s;
}
}  // namespace

LlamaConfig llama_config_from_hf_json(const nlohmann::json& j, const std::string& where) {
  LlamaConfig c;
  std::optional<int64_t> head_dim;
  try {
    c.model_type = j.value("model_type", std::string("llama"));
    if (c.model_type != "llama" && c.model_type != "mistral")
      ASC_FAIL("{}: model_type '{}' is not a LLaMA-family model (llama, mistral)", where,
               c.model_type);
    // Integers are checked as integers: get<int64_t>() of 1e300 would be undefined behaviour.
    auto opt_int = [&](const char* key) -> std::optional<int64_t> {
      if (!j.contains(key) || j[key].is_null()) return std::nullopt;
      if (!j[key].is_number_integer())
        ASC_FAIL("{}: field '{}' must be an integer, got {}", where, key, j[key].dump());
      return j[key].get<int64_t>();
    };
    auto req_int = [&](const char* key) {
      auto v = opt_int(key);
      if (!v) ASC_FAIL("{}: missing field '{}'", where, key);
      return *v;
    };
    auto num = [&](const char* key, double dflt) {
      if (!j.contains(key) || j[key].is_null()) return dflt;
      if (!j[key].is_number())
        ASC_FAIL("{}: field '{}' must be a number, got {}", where, key, j[key].dump());
      return j[key].get<double>();
    };
    c.vocab_size = req_int("vocab_size");
    c.hidden_size = req_int("hidden_size");
    c.intermediate_size = req_int("intermediate_size");
    c.num_hidden_layers = req_int("num_hidden_layers");
    c.num_attention_heads = req_int("num_attention_heads");
    c.num_key_value_heads = opt_int("num_key_value_heads").value_or(c.num_attention_heads);
    c.max_position_embeddings = opt_int("max_position_embeddings").value_or(2048);
    c.rms_norm_eps = num("rms_norm_eps", 1e-6);
    c.rope_theta = num("rope_theta", 10000.0);
    c.tie_word_embeddings = j.value("tie_word_embeddings", false);
    c.bos_token_id = opt_int("bos_token_id").value_or(c.bos_token_id);
    if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
      // Llama 3: several end ids; the first is the eos id, generation stops on any.
      const auto& list = j["eos_token_id"];
      if (list.empty()) ASC_FAIL("{}: eos_token_id is an empty list", where);
      for (const auto& v : list) {
        if (!v.is_number_integer())
          ASC_FAIL("{}: eos_token_id {} must hold integers, got {}", where, list.dump(), v.dump());
        c.eos_token_ids.push_back(v.get<int64_t>());
      }
      c.eos_token_id = c.eos_token_ids.front();
    } else {
      c.eos_token_id = opt_int("eos_token_id").value_or(c.eos_token_id);
    }
    c.pad_token_id = opt_int("pad_token_id");
    c.sliding_window = opt_int("sliding_window");
    // Newer transformers write "dtype", older "torch_dtype"; read both.
    if (j.contains("asclepius_tokenizer_xxh64") && j["asclepius_tokenizer_xxh64"].is_string())
      c.tokenizer_xxh64 = j["asclepius_tokenizer_xxh64"].get<std::string>();
    if (j.contains("asclepius_prompt_template") && j["asclepius_prompt_template"].is_object()) {
      const auto& p = j["asclepius_prompt_template"];
      auto str = [&](const char* k) {
        if (!p.contains(k) || !p[k].is_string())
          ASC_FAIL("{}: asclepius_prompt_template.{} is missing or not a string", where, k);
        return p[k].get<std::string>();
      };
      c.prompt_template = str("name");
      c.prompt_template_xxh64 = str("xxh64");
      c.prompt_template_text = str("text");
    }
    for (const char* k : {"dtype", "torch_dtype"})
      if (j.contains(k) && j[k].is_string()) c.torch_dtype = j[k].get<std::string>();
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
      c.rope_scaling = rope_scaling_from_json(j["rope_scaling"], where);
    if (j.value("attention_bias", false) || j.value("mlp_bias", false))
      ASC_FAIL("{}: attention_bias / mlp_bias are not supported (LLaMA has no biases)", where);
    if (j.contains("hidden_act") && j["hidden_act"] != "silu")
      ASC_FAIL("{}: hidden_act {} is not supported (only silu)", where, j["hidden_act"].dump());
    head_dim = opt_int("head_dim");
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}: malformed config: {}", where, e.what());
  }
  c.validate(where);  // ranges first: a head count of 0 is out of range, not a head_dim mismatch
  if (head_dim && *head_dim != c.head_dim())
    ASC_FAIL("{}: head_dim {} != hidden_size/num_attention_heads ({}) is not supported", where,
             *head_dim, c.head_dim());
  return c;
}

void check_same_tokenizer(const LlamaConfig& model, const std::string& model_where,
                          const std::string& tokenizer_xxh64, const std::string& what) {
  if (model.tokenizer_xxh64.empty() || tokenizer_xxh64.empty() ||
      model.tokenizer_xxh64 == tokenizer_xxh64)
    return;
  ASC_FAIL_HINT("use the tokenizer the model was trained with, and corpora built with it",
                "{} has tokenizer {} but the model ({}) was trained with tokenizer {}", what,
                tokenizer_xxh64, model_where, model.tokenizer_xxh64);
}

nlohmann::json llama_eos_token_id_json(const LlamaConfig& c) {
  return c.eos_token_ids.empty() ? nlohmann::json(c.eos_token_id) : nlohmann::json(c.eos_token_ids);
}

nlohmann::json llama_config_to_hf_json(const LlamaConfig& c) {
  const bool mistral = c.model_type == "mistral";
  nlohmann::json j;
  j["architectures"] = {mistral ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim();
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling)
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling->factor},
        {"low_freq_factor", c.rope_scaling->low_freq_factor},
        {"high_freq_factor", c.rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings}};
  else
    j["rope_scaling"] = nullptr;
  if (!c.tokenizer_xxh64.empty()) j["asclepius_tokenizer_xxh64"] = c.tokenizer_xxh64;
  if (!c.prompt_template_xxh64.empty())
    j["asclepius_prompt_template"] = {{"name", c.prompt_template},
                                      {"xxh64", c.prompt_template_xxh64},
                                      {"text", c.prompt_template_text}};
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["initializer_range"] = 0.02;
  j["attention_dropout"] = 0.0;
  if (!mistral) j["attention_bias"] = false, j["mlp_bias"] = false, j["pretraining_tp"] = 1;
  if (mistral || c.sliding_window)
    j["sliding_window"] = c.sliding_window ? nlohmann::json(*c.sliding_window) : nlohmann::json();
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = llama_eos_token_id_json(c);
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  j["use_cache"] = true;
  j["torch_dtype"] = c.torch_dtype;
  return j;
}

}  // namespace asc
