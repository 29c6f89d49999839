#include "config/recipe.h"

#include <algorithm>

#include <cstdint>

#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "common/error.h"
#include "common/strings.h"

namespace asc {
namespace {

// One key of the schema: how to set it from a YAML node and how to print its current value.
struct Field {
  std::string path;
  std::string type;  // for messages: "an integer", "a number", ...
  std::function<void(const YAML::Node&, const std::string& where)> set;
  std::function<void(YAML::Emitter&)> emit;
};

// Each closed choice's spellings, in the order messages list them.
template <class E>
const std::vector<std::pair<const char*, E>>& choices();
#define ASC_CHOICES(E, ...)                                                    \
  template <>                                                                  \
  const std::vector<std::pair<const char*, E>>& choices<E>() {                 \
    static const std::vector<std::pair<const char*, E>> table = {__VA_ARGS__}; \
    return table;                                                              \
  }
ASC_CHOICES(Stage, {"pretrain", Stage::kPretrain}, {"instruct", Stage::kInstruct})
ASC_CHOICES(Schedule, {"cosine", Schedule::kCosine}, {"linear", Schedule::kLinear},
            {"constant", Schedule::kConstant})
ASC_CHOICES(OptimizerKind, {"fused", OptimizerKind::kFused},
            {"reference", OptimizerKind::kReference})
ASC_CHOICES(DType, {"fp32", DType::kFp32}, {"bf16", DType::kBf16})
ASC_CHOICES(DeviceKind, {"cpu", DeviceKind::kCpu}, {"cuda", DeviceKind::kCuda})
ASC_CHOICES(ParallelMode, {"none", ParallelMode::kNone}, {"ddp", ParallelMode::kDdp},
            {"zero2", ParallelMode::kZero2}, {"fsdp", ParallelMode::kFsdp})
ASC_CHOICES(ResumePolicy, {"never", ResumePolicy::kNever}, {"auto", ResumePolicy::kAuto})
#undef ASC_CHOICES

template <class E>
const char* choice_name(E v) {
  for (const auto& [n, e] : choices<E>())
    if (e == v) return n;
  return "?";
}

template <class T>
using Check = std::function<const char*(const T&)>;  // nullptr when ok, else the rule broken

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "a boolean (true/false)";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else
    return "a string";
}

template <class T>
T parse_scalar(const YAML::Node& n, const std::string& path, const std::string& where) {
  auto shown = [&]() -> std::string {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "nothing (null)";
    return "'" + n.Scalar() + "'";
  };
  if (!n.IsScalar()) ASC_FAIL("{}: {}: expected {}, got {}", where, path, type_name<T>(), shown());
  if constexpr (std::is_same_v<T, std::string>) {
    return n.Scalar();
  } else {
    try {
      T v = n.as<T>();
      if constexpr (std::is_floating_point_v<T>)
        if (!std::isfinite(v)) throw YAML::Exception(YAML::Mark(), "not finite");
      return v;
    } catch (const YAML::Exception&) {
      ASC_FAIL("{}: {}: expected {}, got {}", where, path, type_name<T>(), shown());
    }
  }
}

class Schema {
 public:
  explicit Schema(Recipe& r) : r_(r) { build(); }

  const Field* find(const std::string& path) const {
    for (const auto& f : fields_)
      if (f.path == path) return &f;
    return nullptr;
  }
  bool is_section(const std::string& path) const {
    for (const auto& f : fields_)
      if (f.path.rfind(path + ".", 0) == 0) return true;
    return false;
  }
  // Keys directly under `prefix` ("" = top level): "train.lr" for prefix "train".
  std::vector<std::string> children(const std::string& prefix) const {
    std::set<std::string> out;
    for (const auto& f : fields_) {
      if (!prefix.empty() && f.path.rfind(prefix + ".", 0) != 0) continue;
      size_t start = prefix.empty() ? 0 : prefix.size() + 1;
      size_t dot = f.path.find('.', start);
      out.insert(f.path.substr(0, dot));
    }
    return {out.begin(), out.end()};
  }
  const std::vector<Field>& fields() const { return fields_; }

  [[noreturn]] void unknown(const std::string& path, const std::string& where) const {
    size_t dot = path.rfind('.');
    std::string parent = dot == std::string::npos ? "" : path.substr(0, dot);
    std::vector<std::string> siblings = children(parent);
    if (parent.empty()) {  // the top level holds the sections (model, data, train, ...)
      for (const auto& f : fields_) {
        const std::string section = f.path.substr(0, f.path.find('.'));
        if (std::find(siblings.begin(), siblings.end(), section) == siblings.end())
          siblings.push_back(section);
      }
    }
    std::string near = closest_match(path, siblings);
    if (near.empty()) {
      std::vector<std::string> all;
      for (const auto& f : fields_) all.push_back(f.path);
      near = closest_match(path, all);
    }
    if (!near.empty()) ASC_FAIL("{}: {}: unknown key; did you mean {}?", where, path, near);
    ASC_FAIL("{}: {}: unknown key (valid here: {})", where, path, fmt::join(siblings, ", "));
  }

 private:
  // One key: parse as T, check the range, store into `ref` (a T or an optional<T>), remember where.
  template <class T, class Dst>
  void add_field(const std::string& path, Dst& ref, Check<T> check,
                 std::function<void(YAML::Emitter&)> emit) {
    Recipe& r = r_;
    fields_.push_back(Field{path, type_name<T>(),
                            [&ref, &r, path, check](const YAML::Node& n, const std::string& where) {
                              T v = parse_scalar<T>(n, path, where);
                              if (check)
                                if (const char* rule = check(v))
                                  ASC_FAIL("{}: {}: {} is out of range ({})", where, path,
                                           n.Scalar(), rule);
                              ref = v;
                              r.origin[path] = where;
                            },
                            std::move(emit)});
  }
  // A closed choice: the YAML string must be one of choices<E>()'s spellings.
  template <class E>
  void add_choice(const std::string& path, E& ref) {
    std::vector<std::string> spellings;
    for (const auto& [n, e] : choices<E>()) spellings.push_back(n);
    const Check<std::string> check = one_of(spellings);
    Recipe& r = r_;
    fields_.push_back(Field{path, type_name<std::string>(),
                            [&ref, &r, path, check](const YAML::Node& n, const std::string& where) {
                              const std::string v = parse_scalar<std::string>(n, path, where);
                              if (const char* rule = check(v))
                                ASC_FAIL("{}: {}: {} is out of range ({})", where, path, n.Scalar(),
                                         rule);
                              for (const auto& [spelling, e] : choices<E>())
                                if (v == spelling) ref = e;
                              r.origin[path] = where;
                            },
                            [&ref](YAML::Emitter& e) { e << std::string(choice_name(ref)); }});
  }
  template <class T>
  void add(const std::string& path, T& ref, Check<T> check = {}) {
    add_field<T>(path, ref, check, [&ref](YAML::Emitter& e) { e << ref; });
  }
  template <class T>
  void add(const std::string& path, std::optional<T>& ref, Check<T> check = {}) {
    add_field<T>(path, ref, check, [&ref](YAML::Emitter& e) {
      if (ref)
        e << *ref;
      else
        e << YAML::Null;
    });
  }
  static Check<std::string> one_of(std::vector<std::string> allowed) {
    // The rule text must outlive the call: keep it in a shared string.
    auto rule =
        std::make_shared<std::string>("one of " + fmt::format("{}", fmt::join(allowed, ", ")));
    return [allowed, rule](const std::string& v) -> const char* {
      for (const auto& a : allowed)
        if (a == v) return nullptr;
      return rule->c_str();
    };
  }
  template <class T>
  static Check<T> positive() {
    return [](const T& v) -> const char* { return v > 0 ? nullptr : "must be > 0"; };
  }
  // 1..hi: keeps products such as micro × ranks × accumulation far from int64 overflow.
  static Check<int64_t> at_most(int64_t hi) {
    auto rule = std::make_shared<std::string>(fmt::format("must be in 1..{}", hi));
    return [hi, rule](const int64_t& v) -> const char* {
      return v >= 1 && v <= hi ? nullptr : rule->c_str();
    };
  }
  template <class T>
  static Check<T> non_negative() {
    return [](const T& v) -> const char* { return v >= 0 ? nullptr : "must be >= 0"; };
  }

  void build() {
    auto& m = r_.model;
    std::vector<std::string> presets = llama_preset_names();
    presets.insert(presets.begin(), "");
    add("model.preset", m.preset, one_of(presets));
    add<std::string>("model.init_from", m.init_from);
    add("model.vocab_size", m.vocab_size, at_most(int64_t(1) << 24));
    add("model.hidden_size", m.hidden_size, at_most(int64_t(1) << 24));
    add("model.intermediate_size", m.intermediate_size, at_most(int64_t(1) << 24));
    add("model.num_hidden_layers", m.num_hidden_layers, at_most(4096));
    add("model.num_attention_heads", m.num_attention_heads, at_most(4096));
    add("model.num_key_value_heads", m.num_key_value_heads, at_most(4096));
    add("model.max_position_embeddings", m.max_position_embeddings, at_most(int64_t(1) << 24));
    add("model.rms_norm_eps", m.rms_norm_eps, positive<double>());
    add("model.rope_theta", m.rope_theta, positive<double>());
    add<bool>("model.tie_word_embeddings", m.tie_word_embeddings);

    auto& d = r_.data;
    add<std::string>("data.corpus", d.corpus, [](const std::string& v) -> const char* {
      return v.empty() ? "must name a corpus ('demo' for the built-in one)" : nullptr;
    });
    add<std::string>("data.tokenizer", d.tokenizer);
    add<int64_t>("data.seq_len", d.seq_len, [](const int64_t& v) -> const char* {
      return v >= 2 ? nullptr : "must be >= 2 (one input and one target)";
    });
    add("data.demo_samples", d.demo_samples, positive<int64_t>());
    add<bool>("data.pack", d.pack);
    add<std::string>("data.prompt_template", d.prompt_template);
    add<bool>("data.allow_prompt_mismatch", d.allow_prompt_mismatch);
    add<bool>("data.upstream_compat", d.upstream_compat);

    auto& t = r_.train;
    add_choice("train.stage", t.stage);
    add("train.global_batch_size", t.global_batch_size, at_most(int64_t(1) << 30));
    add("train.micro_batch_size", t.micro_batch_size, at_most(int64_t(1) << 30));
    add("train.max_steps", t.max_steps, non_negative<int64_t>());
    add("train.epochs", t.epochs, positive<double>());
    add("train.lr", t.lr, positive<double>());
    add_choice("train.lr_schedule", t.lr_schedule);
    add<double>("train.warmup_ratio", t.warmup_ratio, [](const double& v) -> const char* {
      return v >= 0 && v < 1 ? nullptr : "must be in [0, 1)";
    });
    add("train.weight_decay", t.weight_decay, non_negative<double>());
    auto beta = [](const double& v) -> const char* {
      return v >= 0 && v < 1 ? nullptr : "must be in [0, 1)";
    };
    add<double>("train.beta1", t.beta1, beta);
    add<double>("train.beta2", t.beta2, beta);
    add("train.eps", t.eps, positive<double>());
    add<double>("train.max_grad_norm", t.max_grad_norm);
    add_choice("train.optimizer", t.optimizer);
    add("train.max_bad_steps", t.max_bad_steps, non_negative<int64_t>());
    add_choice("train.dtype", t.dtype);
    add_choice("train.device", t.device);
    add("train.seed", t.seed, non_negative<int64_t>());
    add("train.threads", t.threads, non_negative<int64_t>());
    add("train.loss_chunk_rows", t.loss_chunk_rows, non_negative<int64_t>());
    add<bool>("train.cache_host_memory", t.cache_host_memory);
    add<bool>("train.check_memory", t.check_memory);
    add<bool>("train.tf32", t.tf32);

    add_choice("parallel.mode", r_.parallel.mode);
    add<bool>("parallel.activation_checkpointing", r_.parallel.activation_checkpointing);
    add("parallel.timeout_s", r_.parallel.timeout_s, positive<double>());

    add<std::string>("checkpoint.dir", r_.checkpoint.dir, [](const std::string& v) -> const char* {
      return v.empty() ? "must name the run directory" : nullptr;
    });
    add("checkpoint.every_steps", r_.checkpoint.every_steps, non_negative<int64_t>());
    add<bool>("checkpoint.at_end", r_.checkpoint.at_end);
    add_choice("checkpoint.resume", r_.checkpoint.resume);
    add("checkpoint.keep_last", r_.checkpoint.keep_last, non_negative<int64_t>());
    add<bool>("checkpoint.async", r_.checkpoint.async);

    add<std::string>("eval.corpus", r_.eval.corpus);
    add("eval.every_steps", r_.eval.every_steps, non_negative<int64_t>());
    add("eval.max_batches", r_.eval.max_batches, non_negative<int64_t>());

    add<bool>("logging.tensorboard", r_.logging.tensorboard);
    add<bool>("logging.progress", r_.logging.progress);
    add("logging.peak_tflops", r_.logging.peak_tflops, non_negative<double>());
    add("logging.profile_start_step", r_.logging.profile_start_step, non_negative<int64_t>());
    add("logging.profile_steps", r_.logging.profile_steps, positive<int64_t>());
  }

  Recipe& r_;
  std::vector<Field> fields_;
};

// Counts documents up to 2 with yaml-cpp's event parser. (YAML::LoadAll never returns on some
// malformed input, e.g. a leading ',', in yaml-cpp 0.7: found by our fuzzer. Bounded here.)
int count_documents(const std::string& text) {
  struct Ignore : YAML::EventHandler {
    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  } ignore;
  std::istringstream in(text);
  YAML::Parser parser(in);
  int docs = 0;
  while (docs < 2 && parser.HandleNextDocument(ignore)) ++docs;
  return docs;
}

std::string mark_of(const std::string& file, const YAML::Mark& m) {
  return fmt::format("{}:{}", file, m.line + 1);
}

// Walks a parsed YAML mapping at `prefix`, checking duplicates and unknown keys, and sets fields.
void apply_map(const YAML::Node& node, const std::string& prefix, const std::string& file,
               const Schema& schema) {
  std::map<std::string, int> seen;  // key -> line
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies, not references: it->first lives in a proxy that dies with the expression.
    const YAML::Node k = it->first;
    const YAML::Node v = it->second;
    std::string where = mark_of(file, k.Mark());
    if (!k.IsScalar()) ASC_FAIL("{}: keys under '{}' must be plain names", where, prefix);
    // A control character (a NUL) in a key would cut or garble every message that names it.
    for (const char c : k.Scalar())
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        ASC_FAIL(
            "{}: a key under '{}' contains the control character 0x{:02x}: keys are plain "
            "names",
            where, prefix.empty() ? "the top level" : prefix,
            unsigned(static_cast<unsigned char>(c)));
    std::string path = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
    if (k.Scalar().find('.') != std::string::npos)
      ASC_FAIL_HINT("nest the keys; dotted keys are for command-line overrides",
                    "{}: {}: a key may not contain '.'", where, path);
    auto [pos, fresh] = seen.emplace(k.Scalar(), k.Mark().line + 1);
    if (!fresh) ASC_FAIL("{}: {}: duplicate key (first set on line {})", where, path, pos->second);
    if (const Field* f = schema.find(path)) {
      f->set(v, mark_of(file, v.IsNull() ? k.Mark() : v.Mark()));
    } else if (schema.is_section(path)) {
      if (v.IsNull()) continue;  // an empty section keeps its defaults
      if (!v.IsMap()) ASC_FAIL("{}: {}: is a section; expected a mapping of keys", where, path);
      apply_map(v, path, file, schema);
    } else {
      schema.unknown(path, where);
    }
  }
}

void apply_override(const std::string& text, const Schema& schema) {
  const std::string where = "command line override '" + text + "'";
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    ASC_FAIL_HINT("write overrides as key.path=value, e.g. train.lr=1e-4",
                  "{}: expected key.path=value", where);
  std::string path = text.substr(0, eq), value = text.substr(eq + 1);
  const Field* f = schema.find(path);
  if (!f) {
    if (schema.is_section(path)) ASC_FAIL("{}: {} is a section, not a key", where, path);
    schema.unknown(path, where);
  }
  YAML::Node v;
  try {
    // An override is a value, not a YAML document: a '#' is part of it, never a comment
    // ("checkpoint.dir=/x/exp #2" names that directory). Such a value is taken as a string.
    // One level of matching quotes around it is the shell-style quoting of the whole value.
    std::string literal = value;
    if (literal.size() >= 2 && (literal[0] == '"' || literal[0] == '\'') &&
        literal.back() == literal[0])
      literal = literal.substr(1, literal.size() - 2);
    v = value.find('#') == std::string::npos ? YAML::Load(value) : YAML::Node(literal);
  } catch (const YAML::Exception& e) {
    ASC_FAIL("{}: {}: cannot parse value: {}", where, path, e.msg);
  }
  // "key=" sets an empty string (e.g. model.preset= to switch to model.init_from).
  if (v.IsNull() && value != "~" && value != "null") v = YAML::Node(value);
  f->set(v, where);
}

void validate(Recipe& r, int64_t world_size) {
  auto& m = r.model;
  bool arch_override = m.vocab_size || m.hidden_size || m.intermediate_size ||
                       m.num_hidden_layers || m.num_attention_heads || m.num_key_value_heads ||
                       m.max_position_embeddings || m.rms_norm_eps || m.rope_theta ||
                       m.tie_word_embeddings;
  if (m.preset.empty() && m.init_from.empty())
    ASC_FAIL_HINT("e.g. model.preset: tiny, or model.init_from: /path/to/hf-llama",
                  "{}: model: set model.preset or model.init_from", r.source);
  if (!m.init_from.empty() && arch_override)
    ASC_FAIL("{}: model: architecture fields cannot be overridden with model.init_from",
             r.where("model.init_from"));
  if (auto c = r.preset_model_config()) {
    // Report where the offending field was set; the preset's line when it came from the preset.
    c->validate([&](const char* fields) {
      std::string list = fields;
      for (size_t start = 0; start <= list.size();) {
        size_t comma = std::min(list.find(',', start), list.size());
        const std::string key = "model." + list.substr(start, comma - start);
        if (r.origin.count(key)) return r.origin.at(key);
        start = comma + 1;
      }
      return r.where("model.preset");
    });
    if (r.data.seq_len > c->max_position_embeddings)
      ASC_FAIL("{}: data.seq_len ({}) exceeds model.max_position_embeddings ({})",
               r.where("data.seq_len"), r.data.seq_len, c->max_position_embeddings);
  }
  // Batch arithmetic: global = micro × accumulation × data-parallel ranks.
  auto& t = r.train;
  if (world_size < 1 || world_size > (int64_t(1) << 24))
    ASC_FAIL("world size {} is out of range (1..16777216)", world_size);
  const int64_t per_step = t.micro_batch_size * world_size;
  if (t.global_batch_size % per_step != 0)
    ASC_FAIL_HINT("choose a global batch that is a multiple of micro batch × ranks",
                  "{}: train.global_batch_size ({}) is not divisible by train.micro_batch_size ({})"
                  " × data-parallel ranks ({}) = {}",
                  r.where("train.global_batch_size"), t.global_batch_size, t.micro_batch_size,
                  world_size, per_step);
  r.grad_accum_steps = t.global_batch_size / per_step;
  if (r.data.pack && t.stage != Stage::kInstruct)
    ASC_FAIL("{}: data.pack packs instruction examples; it needs train.stage: instruct",
             r.where("data.pack"));
  for (const char* key : {"data.upstream_compat", "data.prompt_template"})
    if (t.stage != Stage::kInstruct &&
        (std::string(key) == "data.upstream_compat" ? r.data.upstream_compat
                                                    : !r.data.prompt_template.empty()))
      ASC_FAIL("{}: {} applies to instruction tuning; it needs train.stage: instruct", r.where(key),
               key);
  if (r.data.upstream_compat && r.data.corpus == "demo")
    ASC_FAIL_HINT("build one with `asclepius corpus build --stage instruct --upstream-compat`",
                  "{}: data.upstream_compat needs an instruct corpus built with --upstream-compat, "
                  "not the demo corpus",
                  r.where("data.upstream_compat"));
  if (r.data.upstream_compat && r.data.pack)
    ASC_FAIL_HINT("upstream pads each example; it never packs",
                  "{}: data.upstream_compat and data.pack exclude each other",
                  r.where("data.upstream_compat"));
  r.world_size = world_size;
  if (!r.parallel.activation_checkpointing)
    r.parallel.activation_checkpointing = r.parallel.mode == ParallelMode::kFsdp;
  if (r.eval.every_steps > 0 && r.eval.corpus.empty())
    ASC_FAIL_HINT("set eval.corpus to a held-out corpus.h5, or eval.every_steps: 0",
                  "{}: eval.every_steps is {} but eval.corpus is not set",
                  r.where("eval.every_steps"), r.eval.every_steps);
  if (r.eval.max_batches > 0 && r.eval.corpus.empty())
    ASC_FAIL_HINT("set eval.corpus to a held-out corpus.h5, or remove eval.max_batches",
                  "{}: eval.max_batches is {} but eval.corpus is not set",
                  r.where("eval.max_batches"), r.eval.max_batches);
  if (r.eval.corpus == "demo")
    ASC_FAIL_HINT("build a held-out corpus with `asclepius corpus build`",
                  "{}: eval.corpus must be an HDF5 corpus, not the demo stream",
                  r.where("eval.corpus"));
  if (r.parallel.mode == ParallelMode::kNone && world_size > 1)
    ASC_FAIL("{}: parallel.mode is none but {} ranks were launched", r.where("parallel.mode"),
             world_size);
}

}  // namespace

const char* name(Stage v) {
  return choice_name(v);
}
const char* name(Schedule v) {
  return choice_name(v);
}
const char* name(OptimizerKind v) {
  return choice_name(v);
}
const char* name(DType v) {
  return choice_name(v);
}
const char* name(DeviceKind v) {
  return choice_name(v);
}
const char* name(ParallelMode v) {
  return choice_name(v);
}
const char* name(ResumePolicy v) {
  return choice_name(v);
}

ParallelMode parse_parallel_mode(const std::string& text) {
  std::vector<std::string> spellings;
  for (const auto& [n, e] : choices<ParallelMode>()) {
    if (text == n) return e;
    spellings.push_back(n);
  }
  ASC_FAIL("parallel mode '{}' is not one of {}", text, fmt::join(spellings, ", "));
}

std::optional<LlamaConfig> Recipe::preset_model_config() const {
  if (model.preset.empty()) return std::nullopt;
  LlamaConfig c = llama_preset(model.preset);
  if (model.vocab_size) c.vocab_size = *model.vocab_size;
  if (model.hidden_size) c.hidden_size = *model.hidden_size;
  if (model.intermediate_size) c.intermediate_size = *model.intermediate_size;
  if (model.num_hidden_layers) c.num_hidden_layers = *model.num_hidden_layers;
  if (model.num_attention_heads) c.num_attention_heads = *model.num_attention_heads;
  if (model.num_key_value_heads) c.num_key_value_heads = *model.num_key_value_heads;
  if (model.max_position_embeddings) c.max_position_embeddings = *model.max_position_embeddings;
  if (model.rms_norm_eps) c.rms_norm_eps = *model.rms_norm_eps;
  if (model.rope_theta) c.rope_theta = *model.rope_theta;
  if (model.tie_word_embeddings) c.tie_word_embeddings = *model.tie_word_embeddings;
  return c;
}

std::string Recipe::where(const std::string& path) const {
  auto it = origin.find(path);
  return it != origin.end() ? it->second : source + " (default of " + path + ")";
}

Recipe load_recipe_text(const std::string& text, const std::string& name,
                        const std::vector<std::string>& overrides, int64_t world_size) {
  Recipe r;
  r.source = name;
  Schema schema(r);
  // A NUL byte is no YAML text (the parser turns it into another character): name its line.
  if (const size_t nul = text.find('\0'); nul != std::string::npos)
    ASC_FAIL("{}:{}: a NUL byte; a recipe is text", name,
             1 + std::count(text.begin(), text.begin() + std::ptrdiff_t(nul), '\n'));
  YAML::Node root;
  try {
    root = YAML::Load(text);
    if (!root.IsNull() && count_documents(text) > 1)
      ASC_FAIL("{}: holds more than one YAML document ('---'); a recipe is one document", name);
  } catch (const YAML::ParserException& e) {
    ASC_FAIL("{}:{}:{}: YAML syntax error: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg);
  } catch (const YAML::Exception& e) {
    ASC_FAIL("{}: cannot read YAML: {}", name, e.what());
  }
  if (root.IsNull() && text.find_first_not_of(" \t\r\n") != std::string::npos &&
      text[text.find_first_not_of(" \t\r\n")] != '#')
    ASC_FAIL("{}: not a YAML mapping (stray characters before the first key?)", name);
  if (!root.IsNull()) {
    if (!root.IsMap())
      ASC_FAIL(
          "{}: a recipe is a mapping of sections (model, data, train, parallel, checkpoint, "
          "logging)",
          name);
    apply_map(root, "", name, schema);
  }
  for (const auto& o : overrides) apply_override(o, schema);
  validate(r, world_size);
  return r;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides,
                   int64_t world_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ASC_FAIL_HINT("check the path", "cannot open recipe {}", path);
  // A recipe is a few kilobytes: reading stops past the limit (a device such as /dev/zero, or a
  // wrong file, would otherwise be read until memory runs out).
  std::string text(kMaxRecipeBytes + 1, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  if (text.size() > kMaxRecipeBytes)
    ASC_FAIL_HINT("point at the recipe's YAML file",
                  "recipe {}: larger than {} bytes; not a recipe", path, kMaxRecipeBytes);
  return load_recipe_text(text, path, overrides, world_size);
}

std::string recipe_to_yaml(const Recipe& r) {
  Recipe copy = r;  // Schema binds by reference; emit from a copy we own
  Schema schema(copy);
  // Print the resolved architecture so the file stands on its own.
  if (auto c = r.preset_model_config()) {
    auto& m = copy.model;
    m.vocab_size = c->vocab_size, m.hidden_size = c->hidden_size;
    m.intermediate_size = c->intermediate_size, m.num_hidden_layers = c->num_hidden_layers;
    m.num_attention_heads = c->num_attention_heads;
    m.num_key_value_heads = c->num_key_value_heads;
    m.max_position_embeddings = c->max_position_embeddings;
    m.rms_norm_eps = c->rms_norm_eps, m.rope_theta = c->rope_theta;
    m.tie_word_embeddings = c->tie_word_embeddings;
  }
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e << YAML::BeginMap;
  std::string section;
  for (const auto& f : schema.fields()) {
    std::string sec = f.path.substr(0, f.path.find('.'));
    std::string key = f.path.substr(sec.size() + 1);
    if (sec != section) {
      if (!section.empty()) e << YAML::EndMap;
      e << YAML::Key << sec << YAML::Value << YAML::BeginMap;
      section = sec;
    }
    bool null_opt = false;
    {
      YAML::Emitter probe;
      f.emit(probe);
      null_opt = std::string(probe.c_str()) == "~";
    }
    if (null_opt) continue;  // unset optional: leave it out so the recipe reloads the same
    e << YAML::Key << key << YAML::Value;
    f.emit(e);
  }
  if (!section.empty()) e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::vector<std::string> recipe_keys() {
  Recipe r;
  Schema s(r);
  std::vector<std::string> keys;
  for (const auto& f : s.fields()) keys.push_back(f.path);
  return keys;
}

}  // namespace asc
