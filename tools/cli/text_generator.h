// text_generator.h — a model that turns prompt texts into reply texts, for the commands that
// prompt a model with text of their own (`synthesize`, `judge run`): the model and its
// tokenizer loaded and checked, an optional chat template around each prompt, prompts fitted to
// the context, batched decoding with a seed per prompt, and the model's identity (directory and
// XXH64 of its config.json and weight files) for the rows to record.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "comm/communicator.h"
#include "data/synthesis.h"
#include "data/tokenizer.h"
#include "generate/generate.h"
#include "model/llama.h"

namespace asc::cli {

struct TextGeneratorOptions {
  std::string model, tokenizer, dtype = "fp32";
  std::string chat = "none";   // none, a built-in chat template (data/synthesis/chat-*) or a file
  GenerationOptions gen;       // EOS and pad ids are taken from the tokenizer and the model
  std::string device = "cpu";  // cpu or cuda (generate/answer.h inference_device)
};

class TextGenerator {
 public:
  explicit TextGenerator(const TextGeneratorOptions& o);

  // The prompt in the chat template, as ids (BOS first).
  std::vector<int32_t> ids(const std::string& prompt) const;
  // How many prompt tokens leave room for max_new_tokens in the model's context.
  int64_t budget() const { return budget_; }
  // `p` filled with `values` as ids in at most budget() tokens: values[cut] loses bytes at its
  // end (on a UTF-8 boundary) until it fits. `kept`: its bytes kept; `text`: the filled prompt.
  // Throws when even an empty values[cut] does not fit.
  std::vector<int32_t> fit(const SynthPrompt& p, std::map<std::string, std::string> values,
                           const std::string& cut, size_t* kept, std::string* text) const;
  // One reply per prompt; `seeds` one per prompt (sampling).
  std::vector<Generated> run(const std::vector<std::vector<int32_t>>& prompts,
                             const std::vector<uint64_t>& seeds);
  std::string decode(const std::vector<int32_t>& ids) const { return tok_.decode(ids); }

  // What a row records: model directory and XXH64, tokenizer checksum, chat template.
  nlohmann::ordered_json record() const;
  // Everything a reply depends on (a resumable job's plan).
  nlohmann::ordered_json settings() const;
  const GenerationOptions& options() const { return gen_; }
  int64_t tokens = 0;  // generated so far

 private:
  Tokenizer tok_;
  LlamaForCausalLM model_{nullptr};
  std::string dir_, model_xxh64_, device_;
  GenerationOptions gen_;
  SynthPrompt chat_;
  int64_t budget_ = 0;
};

// The options of every job that prompts a model (synthesize, judge run): --dtype, --device,
// --batch-size (`batch_help`), --threads, --timeout-s.
void add_job_options(CLI::App* cmd, std::string* dtype, std::string* device, int64_t* batch_size,
                     int64_t* threads, double* timeout_s, const std::string& batch_help);
// --device and --threads checked (before anything is read or loaded) and applied; returns the
// job's ranks under mpirun/srun, else this process alone.
std::unique_ptr<comm::Communicator> start_job(const std::string& device, int64_t threads,
                                              double timeout_s);

}  // namespace asc::cli
