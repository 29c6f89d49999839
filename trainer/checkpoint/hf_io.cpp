#include "checkpoint/hf_io.h"
#include "checkpoint/sharded.h"

#include <filesystem>
#include <regex>
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/autograd.h>

#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "common/json_limits.h"

namespace fs = std::filesystem;

namespace asc {
namespace {

constexpr const char* kOptimizerFile = "optimizer.safetensors";

const char* kConvertHint =
    "convert it once with: python -c \"import sys; from transformers import "
    "AutoModelForCausalLM as M; M.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], "
    "safe_serialization=True)\" IN_DIR OUT_DIR";

// safetensors dtype <-> libtorch scalar type, one table for both directions.
constexpr std::pair<st::DType, at::ScalarType> kDTypeMap[] = {
    {st::DType::F32, at::kFloat},  {st::DType::F16, at::kHalf}, {st::DType::BF16, at::kBFloat16},
    {st::DType::F64, at::kDouble}, {st::DType::I64, at::kLong}, {st::DType::I32, at::kInt},
    {st::DType::I16, at::kShort},  {st::DType::I8, at::kChar},  {st::DType::U8, at::kByte},
    {st::DType::BOOL, at::kBool}};

at::ScalarType to_torch(st::DType d, const std::string& where) {
  for (const auto& [sd, td] : kDTypeMap)
    if (sd == d) return td;
  ASC_FAIL("{}: dtype {} cannot be loaded", where, st::dtype_name(d));
}

st::DType from_torch(at::ScalarType t) {
  for (const auto& [sd, td] : kDTypeMap)
    if (td == t) return sd;
  ASC_FAIL("dtype {} cannot be saved", at::toString(t));
}

const char* hf_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      return "float32";
  }
}

// The safetensors files of a Hugging Face directory, by tensor name.

}  // namespace

WeightFiles open_weights(const std::string& dir) {
  WeightFiles w;
  const fs::path d(dir);
  if (fs::exists(d / "model.safetensors.index.json")) {
    const std::string ipath = (d / "model.safetensors.index.json").string();
    nlohmann::json idx;
    try {
      idx = nlohmann::json::parse(read_file(ipath));
    } catch (const nlohmann::json::exception& e) {
      ASC_FAIL("{}: malformed index: {}", ipath, e.what());
    }
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
      ASC_FAIL("{}: no weight_map object", ipath);
    std::map<std::string, size_t> file_index;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        ASC_FAIL("{}: weight_map[{}] is not a file name", ipath, it.key());
      std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file.find("..") != std::string::npos)
        ASC_FAIL("{}: weight_map[{}] = '{}' leaves the directory", ipath, it.key(), file);
      auto [pos, fresh] = file_index.emplace(file, w.files.size());
      if (fresh) w.files.push_back(st::SafetensorsFile::open((d / file).string()));
      if (!w.files[pos->second]->find(it.key()))
        ASC_FAIL("{}: index says '{}' is in {}, which has no such tensor", ipath, it.key(), file);
      w.by_name[it.key()] = pos->second;
    }
  } else if (fs::exists(d / "model.safetensors")) {
    w.files.push_back(st::SafetensorsFile::open((d / "model.safetensors").string()));
    for (const auto& t : w.files[0]->tensors()) w.by_name[t.name] = 0;
  } else {
    for (const char* pickle : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
      if (fs::exists(d / pickle))
        ASC_FAIL_HINT(
            kConvertHint,
            "{}: holds a pickle checkpoint ({}); pickles are never loaded (they run code)", dir,
            pickle);
    ASC_FAIL("{}: no model.safetensors or model.safetensors.index.json", dir);
  }
  return w;
}

LlamaConfig read_hf_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(path)) ASC_FAIL("{}: not a Hugging Face model directory (no config.json)", dir);
  nlohmann::json j;
  try {
    // Depth-bounded: llama_config_from_hf_json dumps values into its errors and nlohmann's dump
    // recurses per level (a rope_scaling 100,000 levels deep overflowed the stack; issue 23).
    j = parse_json_bounded(read_file(path), path);
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}: malformed JSON: {}", path, e.what());
  }
  return llama_config_from_hf_json(j, path);
}

NamedTensors hf_named_tensors(LlamaForCausalLM& model) {
  NamedTensors out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

WeightReader::WeightReader(const std::string& dir, const LlamaConfig& config) : dir_(dir) {
  require_known_manifest_format(dir);  // not mistaken for a Hugging Face directory
  const auto want = llama_parameter_shapes(config);
  std::set<std::string> names;
  for (const auto& [name, shape] : want) names.insert(name);
  if (is_sharded_checkpoint(dir)) {  // a training checkpoint: the fp32 master weights
    sharded_ = std::make_unique<CheckpointReader>(dir);
    for (const auto& [name, shape] : want) {
      if (!sharded_->has(name))
        ASC_FAIL("{}: missing tensor '{}' (the model expects {} tensors)", dir, name, want.size());
      if (sharded_->shape(name) != shape)
        ASC_FAIL("{}: tensor '{}' has shape [{}] but config.json implies [{}]", dir, name,
                 fmt::join(sharded_->shape(name), ", "), fmt::join(shape, ", "));
    }
    for (const auto& n : sharded_->names())
      if (!names.count(n)) ASC_FAIL("{}: unexpected tensor '{}' in the checkpoint", dir, n);
    return;
  }
  files_ = open_weights(dir);
  for (const auto& [name, shape] : want) {
    auto it = files_.by_name.find(name);
    if (it == files_.by_name.end())
      ASC_FAIL("{}: missing tensor '{}' (the model expects {} tensors)", dir, name, want.size());
    const auto& file = *files_.files[it->second];
    const st::TensorInfo& t = file.at(name);
    if (shape != t.shape)
      ASC_FAIL("{}: tensor '{}' has shape [{}] but config.json implies [{}]", file.path(), name,
               fmt::join(t.shape, ", "), fmt::join(shape, ", "));
    if (t.dtype != st::DType::F32 && t.dtype != st::DType::BF16 && t.dtype != st::DType::F16 &&
        t.dtype != st::DType::F64)
      ASC_FAIL("{}: tensor '{}' has dtype {}; parameters must be floating point", file.path(), name,
               st::dtype_name(t.dtype));
  }
  for (const auto& [name, idx] : files_.by_name) {
    if (names.count(name)) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed
    if (name == "lm_head.weight" && config.tie_word_embeddings) continue;
    ASC_FAIL("{}: unexpected tensor '{}' not in a {} model with this config",
             files_.files[idx]->path(), name, config.model_type);
  }
}

WeightReader::~WeightReader() = default;

void WeightReader::read(const std::string& name, int64_t begin, int64_t end, float* out) const {
  if (sharded_) return sharded_->read(name, "master", begin, end, out);
  auto it = files_.by_name.find(name);
  ASC_CHECK(it != files_.by_name.end(), "{}: no tensor '{}'", dir_, name);
  const auto& file = *files_.files[it->second];
  const st::TensorInfo& t = file.at(name);
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  ASC_CHECK(0 <= begin && begin <= end && end <= numel, "{}: range [{}, {}) of '{}' ({} elements)",
            file.path(), begin, end, name, numel);
  // Only the range's pages of the mapping are touched.
  auto src = at::from_blob(const_cast<uint8_t*>(file.data(t)), {numel},
                           at::TensorOptions().dtype(to_torch(t.dtype, file.path())));
  at::from_blob(out, {end - begin}, at::kFloat).copy_(src.narrow(0, begin, end - begin));
}

void load_hf_weights(const std::string& dir, LlamaForCausalLM& model) {
  const WeightReader weights(dir, model->config());
  model->fill_parameters([&](const std::string& name, int64_t begin, int64_t end, float* out) {
    weights.read(name, begin, end, out);
  });
}

void write_hf_config_files(const std::string& out_dir, LlamaConfig config, at::ScalarType dtype) {
  const fs::path d(out_dir);
  config.torch_dtype = hf_dtype_name(dtype);
  write_file_atomic((d / "config.json").string(), llama_config_to_hf_json(config).dump(2) + "\n");
  nlohmann::json gen = {{"bos_token_id", config.bos_token_id},
                        {"eos_token_id", llama_eos_token_id_json(config)},
                        {"_from_model_config", true}};
  write_file_atomic((d / "generation_config.json").string(), gen.dump(2) + "\n");
}

void save_hf_dir(const std::string& out_dir, LlamaConfig config, const NamedTensors& tensors,
                 at::ScalarType dtype, uint64_t max_shard_bytes) {
  fs::create_directories(out_dir);
  const fs::path d(out_dir);
  write_hf_config_files(out_dir, config, dtype);

  // Group tensors into shards in order.
  std::vector<at::Tensor> converted;
  std::vector<std::vector<size_t>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    converted.push_back(tensors[i].second.detach().to(at::kCPU).to(dtype).contiguous());
    uint64_t bytes = uint64_t(converted.back().nbytes());
    if (!shards.back().empty() && in_shard + bytes > max_shard_bytes)
      shards.emplace_back(), in_shard = 0;
    shards.back().push_back(i);
    in_shard += bytes, total += bytes;
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  auto refs_of = [&](const std::vector<size_t>& idx) {
    std::vector<st::TensorRef> refs;
    for (size_t i : idx)
      refs.push_back(
          {tensors[i].first, from_torch(dtype),
           std::vector<int64_t>(converted[i].sizes().begin(), converted[i].sizes().end()),
           converted[i].data_ptr()});
    return refs;
  };
  // Remove a stale layout of the other kind so loaders do not see both.
  if (shards.size() == 1) {
    fs::remove(d / "model.safetensors.index.json");
    st::write_safetensors((d / "model.safetensors").string(), refs_of(shards[0]), meta);
    return;
  }
  fs::remove(d / "model.safetensors");
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    st::write_safetensors((d / file).string(), refs_of(shards[s]), meta);
    for (size_t i : shards[s]) map[tensors[i].first] = file;
  }
  index["weight_map"] = map;
  write_file_atomic((d / "model.safetensors.index.json").string(), index.dump(2) + "\n");
}

std::string step_dir_name(int64_t step) {
  return fmt::format("step-{:07d}", step);
}

bool is_hf_export_file(const std::string& name) {
  static const std::regex shard(R"(model-\d{5}-of-\d{5}\.safetensors)");
  return name == "config.json" || name == "generation_config.json" || name == "model.safetensors" ||
         name == "model.safetensors.index.json" || std::regex_match(name, shard);
}

void save_step_checkpoint(const std::string& run_dir, int64_t step, const LlamaConfig& config,
                          const OptimizerState& opt_state, const std::string& state_json,
                          const CheckpointInfo& info, int64_t keep_last) {
  const fs::path dir = fs::path(run_dir) / step_dir_name(step);
  const fs::path tmp = fs::path(run_dir) / (step_dir_name(step) + ".partial");
  // Never delete what `latest` names: between the delete and the rename it would be torn.
  if (read_latest(run_dir) == dir.filename().string())
    ASC_FAIL("{}: refusing to overwrite {}, which 'latest' names", run_dir, dir.string());
  fs::remove_all(tmp);
  save_hf_dir(tmp.string(), config, opt_state.master, at::kFloat);
  save_optimizer_moments((tmp / kOptimizerFile).string(), opt_state);
  write_file_atomic((tmp / "trainer_state.json").string(), state_json);
  CheckpointInfo with_step = info;
  with_step.step = step;
  write_manifest(tmp.string(), with_step);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
  fsync_dir(run_dir);
  write_file_atomic((fs::path(run_dir) / "latest").string(), step_dir_name(step) + "\n");
  remove_old_checkpoints(run_dir, keep_last, dir.string());
}

void remove_old_checkpoints(const std::string& run_dir, int64_t keep_last,
                            const std::string& saved) {
  if (keep_last <= 0) return;
  const std::vector<std::string> dirs = step_dirs_newest_first(run_dir);
  for (size_t i = size_t(keep_last); i < dirs.size(); ++i) {
    if (dirs[i] == saved) continue;
    std::error_code ec;
    fs::remove_all(dirs[i], ec);
    if (ec)
      fmt::print(stderr,
                 "warning: checkpoint.keep_last: cannot remove {}: {} (kept; tried again at the "
                 "next save)\n",
                 dirs[i], ec.message());
  }
}

std::string newest_complete_checkpoint(const std::string& run_dir) {
  for (const std::string& d : step_dirs_newest_first(run_dir)) {
    const std::string problem = verify_checkpoint(d);
    if (problem.empty()) return d;
    fmt::print(stderr, "warning: skipping checkpoint {}: {}\n", d, problem);
  }
  ASC_FAIL_HINT("start a new run (a new checkpoint.dir), or restore a checkpoint",
                "{}: no complete checkpoint to resume from", run_dir);
}

void save_optimizer_moments(const std::string& path, const OptimizerState& s) {
  std::vector<at::Tensor> keep;  // CPU fp32 contiguous copies, alive until written
  std::vector<st::TensorRef> refs;
  for (const auto& [suffix, part] :
       {std::pair{".exp_avg", &s.exp_avg}, std::pair{".exp_avg_sq", &s.exp_avg_sq}})
    for (const auto& [name, t] : *part) {
      keep.push_back(t.detach().to(at::kCPU).to(at::kFloat).contiguous());
      refs.push_back({name + suffix, st::DType::F32,
                      std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                      keep.back().data_ptr()});
    }
  st::write_safetensors(path, refs,
                        {{"format", "asclepius-adamw-v1"}, {"step", std::to_string(s.step)}});
}

OptimizerState load_optimizer_state(const std::string& step_dir, const NamedTensors& params) {
  OptimizerState s;
  WeightFiles w = open_weights(step_dir);
  const std::string opath = (fs::path(step_dir) / kOptimizerFile).string();
  if (!fs::exists(opath))
    ASC_FAIL("{}: no {} (a model directory, not a training checkpoint)", step_dir, kOptimizerFile);
  auto moments = st::SafetensorsFile::open(opath);
  const auto& meta = moments->metadata();
  auto fmt_it = meta.find("format");
  if (fmt_it == meta.end() || fmt_it->second != "asclepius-adamw-v1")
    ASC_FAIL("{}: metadata 'format' is not asclepius-adamw-v1", opath);
  auto step_it = meta.find("step");
  try {
    s.step = step_it == meta.end() ? -1 : std::stoll(step_it->second);
  } catch (const std::exception&) {
    s.step = -1;
  }
  if (s.step < 0) ASC_FAIL("{}: metadata 'step' missing or not a number", opath);
  auto copy_out = [&](const st::SafetensorsFile& f, const std::string& name,
                      const at::Tensor& like) {
    const st::TensorInfo* t = f.find(name);
    if (!t) ASC_FAIL("{}: missing tensor '{}'", f.path(), name);
    if (t->dtype != st::DType::F32) ASC_FAIL("{}: '{}' is not F32", f.path(), name);
    if (std::vector<int64_t>(like.sizes().begin(), like.sizes().end()) != t->shape)
      ASC_FAIL("{}: '{}' has shape [{}], the parameter [{}]", f.path(), name,
               fmt::join(t->shape, ", "), fmt::join(like.sizes(), ", "));
    return at::from_blob(const_cast<uint8_t*>(f.data(*t)), t->shape, at::kFloat).clone();
  };
  for (const auto& [name, p] : params) {
    auto it = w.by_name.find(name);
    if (it == w.by_name.end()) ASC_FAIL("{}: missing tensor '{}'", step_dir, name);
    s.master.emplace_back(name, copy_out(*w.files[it->second], name, p));
    s.exp_avg.emplace_back(name, copy_out(*moments, name + ".exp_avg", p));
    s.exp_avg_sq.emplace_back(name, copy_out(*moments, name + ".exp_avg_sq", p));
  }
  return s;
}

std::string resolve_model_dir(const std::string& path) {
  const fs::path p(path);
  if (fs::exists(p / "config.json")) return path;
  if (has_latest(path)) {
    const std::string name = read_latest(path);
    if (name.empty())
      ASC_FAIL_HINT(
          "point `latest` at one of the run's step directories, or give the step "
          "directory itself",
          "{}: 'latest' is empty or unreadable (a symlink loop?)", path);
    // One rule for every command: `latest` names a step directory inside its run, by name
    // (never a path that leaves the run).
    if (!is_step_dir_name(name))
      ASC_FAIL_HINT(
          "point `latest` at one of the run's step directories, or give the step "
          "directory itself",
          "{}: 'latest' names '{}', which is not a step directory of this run", path,
          printable(name, 64));
    const fs::path step = p / name;
    if (!fs::exists(step / "config.json"))
      ASC_FAIL("{}: 'latest' names {}, which holds no checkpoint", path, step.string());
    return step.string();
  }
  ASC_FAIL("{}: neither a run directory (no 'latest') nor a model directory (no config.json)",
           path);
}

}  // namespace asc
