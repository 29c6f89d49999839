#include "cli/text_generator.h"

#include <algorithm>
#include <filesystem>

#include <torch/torch.h>

#include "checkpoint/manifest.h"
#include "common/error.h"
#include "common/host_memory.h"
#include "common/strings.h"
#include "generate/answer.h"

namespace asc::cli {

namespace {
// XXH64 over "file xxh64" lines of config.json and every *.safetensors of the directory.
std::string model_fingerprint(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".safetensors" || e.path().filename() == "config.json")
      files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  std::string list;
  for (const auto& f : files) list += f + " " + xxh64_file(dir + "/" + f) + "\n";
  return xxh64_hex(list);
}
}  // namespace

TextGenerator::TextGenerator(const TextGeneratorOptions& o)
    : tok_(o.tokenizer), device_(o.device), gen_(o.gen) {
  model_ = load_model_for_inference(o.model, o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32,
                                    &dir_, inference_device(o.device));
  check_tokenizer_matches(tok_, model_->config(), dir_);
  gen_.eos_id = tok_.eos_id();
  gen_.more_eos_ids = model_->config().end_token_ids();
  gen_.pad_id = tok_.pad_id();
  const int64_t context = generation_context(model_->config());
  budget_ = context - gen_.max_new_tokens;
  ASC_CHECK(budget_ > 0,
            "--max-new-tokens {} leaves no room for a prompt in the model's context of {}",
            gen_.max_new_tokens, context);
  if (o.chat != "none") chat_ = SynthPrompt::resolve(o.chat, "chat", {"prompt"}, "--chat-template");
  model_xxh64_ = model_fingerprint(dir_);
}

std::vector<int32_t> TextGenerator::ids(const std::string& prompt) const {
  return tok_.encode(chat_.text.empty() ? prompt : chat_.fill({{"prompt", prompt}}), true, false);
}

std::vector<int32_t> TextGenerator::fit(const SynthPrompt& p,
                                        std::map<std::string, std::string> values,
                                        const std::string& cut, size_t* kept,
                                        std::string* text) const {
  const std::string whole = values[cut];
  auto ids_of = [&](size_t bytes) {
    values[cut] = utf8_prefix(whole, bytes);
    *text = p.fill(values);
    return ids(*text);
  };
  auto out = ids_of(whole.size());
  *kept = whole.size();
  if (int64_t(out.size()) <= budget_) return out;
  const size_t empty = ids_of(0).size();
  ASC_CHECK(int64_t(empty) <= budget_,
            "the {} prompt without any {} takes {} tokens, more than the {} available (context {} "
            "- --max-new-tokens {})",
            p.name, cut, empty, budget_, budget_ + gen_.max_new_tokens, gen_.max_new_tokens);
  size_t lo = 0, hi = whole.size();  // the longest prefix that fits
  while (lo < hi) {
    const size_t mid = (lo + hi + 1) / 2;
    if (int64_t(ids_of(mid).size()) <= budget_)
      lo = mid;
    else
      hi = mid - 1;
  }
  out = ids_of(lo);
  *kept = utf8_prefix(whole, lo).size();
  return out;
}

std::vector<Generated> TextGenerator::run(const std::vector<std::vector<int32_t>>& prompts,
                                          const std::vector<uint64_t>& seeds) {
  GenerationOptions g = gen_;
  g.prompt_seeds = seeds;
  auto out = generate(model_, prompts, g);
  for (const auto& r : out) tokens += int64_t(r.ids.size()) + (r.ended_with_eos ? 1 : 0);
  return out;
}

nlohmann::ordered_json TextGenerator::record() const {
  nlohmann::ordered_json j{{"model", std::filesystem::absolute(dir_).lexically_normal().string()},
                           {"model_xxh64", model_xxh64_},
                           {"tokenizer_xxh64", tok_.checksum()}};
  if (!chat_.text.empty()) j["chat_template"] = chat_.name, j["chat_template_xxh64"] = chat_.xxh64;
  return j;
}

nlohmann::ordered_json TextGenerator::settings() const {
  nlohmann::ordered_json j{{"model", std::filesystem::absolute(dir_).lexically_normal().string()},
                           {"model_xxh64", model_xxh64_},
                           {"tokenizer_xxh64", tok_.checksum()},
                           {"chat_template_xxh64", chat_.xxh64},
                           {"max_new_tokens", gen_.max_new_tokens},
                           {"do_sample", gen_.do_sample},
                           {"temperature", gen_.temperature},
                           {"top_k", gen_.top_k},
                           {"top_p", gen_.top_p},
                           {"seed", gen_.seed}};
  // Sampled and bf16 replies depend on the device: a job resumes on the one it started on
  // (recorded only off the CPU, so that earlier CPU jobs still resume).
  if (device_ != "cpu") j["device"] = device_;
  return j;
}

void add_job_options(CLI::App* cmd, std::string* dtype, std::string* device, int64_t* batch_size,
                     int64_t* threads, double* timeout_s, const std::string& batch_help) {
  cmd->add_option("--dtype", *dtype, "Compute dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--device", *device, "Where the model and its KV cache live: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--batch-size", *batch_size, batch_help)->check(CLI::PositiveNumber);
  cmd->add_option("--threads", *threads, "CPU threads (0: libtorch's default)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout-s", *timeout_s,
                  "Under mpirun: how long ranks wait for a silent rank before stopping")
      ->check(CLI::Range(1.0, 1e6));
}

std::unique_ptr<comm::Communicator> start_job(const std::string& device, int64_t threads,
                                              double timeout_s) {
  inference_device(device);  // refused before anything is read or loaded
  check_thread_count(threads, "--threads");
  if (threads > 0) torch::set_num_threads(int(threads));
  return comm::launched_world_size() > 1 ? comm::make_mpi_communicator(timeout_s)
                                         : comm::make_self_communicator();
}

}  // namespace asc::cli
