#include "generate/answer.h"

#include <algorithm>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "checkpoint/hf_io.h"
#include "common/error.h"
#include "common/strings.h"
#include "data/corpus.h"

namespace asc {

LlamaForCausalLM load_model_for_inference(const std::string& path, c10::ScalarType dtype,
                                          std::string* resolved_dir, c10::Device device) {
  const std::string dir = resolve_model_dir(path);
  LlamaForCausalLM model(read_hf_config(dir));
  load_hf_weights(dir, model);
  // A model with NaN or Inf weights answers garbage: refused, naming the first such tensor.
  for (const auto& [name, p] : hf_named_tensors(model))
    if (!at::isfinite(p).all().item<bool>())
      ASC_FAIL_HINT("use an earlier checkpoint of the run (ckpt inspect lists them)",
                    "{}: weight {} holds NaN or Inf values", dir, name);
  model->to(device, dtype);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  if (resolved_dir) *resolved_dir = dir;
  return model;
}

c10::Device inference_device(const std::string& value, const std::string& flag) {
  if (value == "cpu") return c10::Device(c10::kCPU);
  ASC_CHECK(value == "cuda", "{} {}: expected cpu or cuda", flag, value);
  if (!torch::cuda::is_available())
    ASC_FAIL_HINT(
        fmt::format("run on a machine with an NVIDIA GPU and driver, or use {} cpu", flag),
        "{} cuda: no CUDA device is available here (libtorch finds no GPU)", flag);
  return c10::Device(c10::kCUDA, 0);
}

void check_tokenizer_matches(const Tokenizer& tok, const LlamaConfig& c,
                             const std::string& model_dir) {
  check_same_tokenizer(c, model_dir, tok.checksum(), "tokenizer " + tok.path());
  const std::string hint =
      "use the tokenizer the model was trained with (the recipe's data.tokenizer)";
  if (tok.vocab_size() > c.vocab_size)
    ASC_FAIL_HINT(hint, "tokenizer {} has {} pieces but the model in {} has a vocabulary of {}",
                  tok.path(), tok.vocab_size(), model_dir, c.vocab_size);
  // A model listing several end ids (Llama 3) takes a tokenizer ending with any of them.
  const auto ends = c.end_token_ids();
  if (tok.bos_id() != c.bos_token_id ||
      std::find(ends.begin(), ends.end(), int64_t(tok.eos_id())) == ends.end())
    ASC_FAIL_HINT(hint, "tokenizer {} has bos/eos ids {}/{} but the model in {} expects {}/{}",
                  tok.path(), tok.bos_id(), tok.eos_id(), model_dir, c.bos_token_id,
                  ends.size() == 1 ? fmt::format("{}", ends[0])
                                   : fmt::format("one of [{}]", fmt::join(ends, ", ")));
}

PromptIds asclepius_prompt_ids(const Tokenizer& tok, const PromptTemplate& prompt,
                               const std::string& note, const std::string& question,
                               int64_t max_tokens) {
  PromptIds p;
  const std::string n = strip_newlines(note);
  p.note_bytes_total = int64_t(n.size());
  auto encode = [&](size_t bytes) {
    return tok.encode(prompt.render(utf8_prefix(n, bytes), question), true, false);
  };
  p.ids = encode(n.size());
  p.note_bytes_kept = p.note_bytes_total;
  if (int64_t(p.ids.size()) <= max_tokens) return p;
  auto empty = encode(0);
  if (int64_t(empty.size()) > max_tokens)
    ASC_FAIL_HINT("shorten the question or lower --max-new-tokens",
                  "the prompt without any note takes {} tokens, more than the {} available",
                  empty.size(), max_tokens);
  size_t lo = 0, hi = n.size();  // the longest note prefix that fits
  while (lo < hi) {
    const size_t mid = (lo + hi + 1) / 2;
    if (int64_t(encode(mid).size()) <= max_tokens)
      lo = mid;
    else
      hi = mid - 1;
  }
  p.ids = encode(lo);
  p.note_bytes_kept = int64_t(utf8_prefix(n, lo).size());
  return p;
}

}  // namespace asc
