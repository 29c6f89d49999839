// answer.h — answering questions about discharge summaries with a trained model: loading a
// model for inference (run directory, step checkpoint or Hugging Face directory), checking that
// a tokenizer belongs to it, and the exact Asclepius prompt as token ids, the note cut (never
// the question) when prompt + answer space exceed the context.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "data/prompt.h"
#include "data/tokenizer.h"
#include "model/llama.h"

namespace asc {

// Weights in `dtype` on `device`, eval mode, no gradients. `resolved_dir` receives the directory
// read. Refuses weights that are not all finite (checked on the host, before the move).
LlamaForCausalLM load_model_for_inference(const std::string& path, c10::ScalarType dtype,
                                          std::string* resolved_dir = nullptr,
                                          c10::Device device = c10::kCPU);

// The device of a `--device cpu|cuda` flag (`flag` names it in errors): "cuda" is CUDA device 0
// and is refused, naming the flag, when no CUDA device is available (check it before loading
// anything).
c10::Device inference_device(const std::string& value, const std::string& flag = "--device");

// Throws naming both files when the tokenizer cannot have produced the model's inputs: another
// tokenizer than the one the model records (config.json asclepius_tokenizer_xxh64), more
// pieces than the model's vocabulary, or other BOS/EOS ids.
void check_tokenizer_matches(const Tokenizer& tok, const LlamaConfig& c,
                             const std::string& model_dir);

struct PromptIds {
  std::vector<int32_t> ids;      // BOS + prompt
  int64_t note_bytes_kept = 0;   // of the note (after stripping newlines)
  int64_t note_bytes_total = 0;  // truncated when kept < total
  bool truncated() const { return note_bytes_kept < note_bytes_total; }
};

// The prompt template filled with (note, question) in at most max_tokens ids: when it is longer,
// the note is cut at the end (on a UTF-8 boundary) until it fits. Throws when the question alone
// (with an empty note) does not fit.
PromptIds asclepius_prompt_ids(const Tokenizer& tok, const PromptTemplate& prompt,
                               const std::string& note, const std::string& question,
                               int64_t max_tokens);

}  // namespace asc
