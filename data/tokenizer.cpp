#include "data/tokenizer.h"

#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "common/fs.h"
#include "data/spm_backend.h"

namespace asc {

std::string xxh64_hex(const void* data, size_t n) {
  return fmt::format("{:016x}", XXH64(data, n, 0));
}

Tokenizer::Tokenizer(const std::string& model_path) : sp_(new_spm_backend()), path_(model_path) {
  if (!std::filesystem::exists(model_path))
    ASC_FAIL_HINT("train one with `asclepius tokenizer train` or use the model's tokenizer.model",
                  "{}: tokenizer model not found", model_path);
  const std::string bytes = read_file(model_path);
  checksum_ = xxh64_hex(bytes.data(), bytes.size());
  if (std::string e = sp_->load(bytes); !e.empty())
    ASC_FAIL("{}: not a SentencePiece model: {}", model_path, e);
  if (sp_->bos_id() < 0 || sp_->eos_id() < 0)
    ASC_FAIL(
        "{}: the model defines no bos/eos pieces (bos {}, eos {}); LLaMA-style models need both",
        model_path, sp_->bos_id(), sp_->eos_id());
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos, bool add_eos) const {
  // As the slow LlamaTokenizer: the special-token strings in the text ("<s>", "</s>", "<unk>")
  // become their ids, and each stretch of text between them is encoded on its own (so it gets
  // SentencePiece's dummy-prefix space).
  const std::pair<const char*, int32_t> specials[] = {
      {"<s>", bos_id()}, {"</s>", eos_id()}, {"<unk>", unk_id()}};
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(bos_id());
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t next = std::string::npos;
    const std::pair<const char*, int32_t>* which = nullptr;
    for (const auto& sp : specials) {
      size_t at = text.find(sp.first, pos);
      if (at < next) next = at, which = &sp;
    }
    const size_t end = next == std::string::npos ? text.size() : next;
    if (end > pos || (pos == 0 && next == std::string::npos)) {
      std::vector<int> pieces;
      if (std::string e = sp_->encode(text.substr(pos, end - pos), &pieces); !e.empty())
        ASC_FAIL("{}: encoding failed: {}", path_, e);
      ids.insert(ids.end(), pieces.begin(), pieces.end());
    }
    if (next == std::string::npos) break;
    ids.push_back(which->second);
    pos = next + std::strlen(which->first);
  }
  if (add_eos) ids.push_back(eos_id());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<int> keep;
  for (int32_t id : ids)
    if (id >= 0 && id < vocab_size() && !sp_->is_control(id)) keep.push_back(id);
  std::string text;
  if (std::string e = sp_->decode(keep, &text); !e.empty())
    ASC_FAIL("{}: decoding failed: {}", path_, e);
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return sp_->piece_size();
}
int32_t Tokenizer::bos_id() const {
  return sp_->bos_id();
}
int32_t Tokenizer::eos_id() const {
  return sp_->eos_id();
}
int32_t Tokenizer::unk_id() const {
  return sp_->unk_id();
}

void train_tokenizer(const std::vector<std::string>& texts, const TokenizerTrainOptions& o,
                     const std::string& out_path) {
  if (texts.empty()) ASC_FAIL("tokenizer train: no input text");
  if (o.vocab_size < 300)
    ASC_FAIL("tokenizer train: --vocab-size {} is too small (byte fallback alone takes 256 + 3)",
             o.vocab_size);
  // SentencePiece reads sentences one per line from a file.
  const std::string tmp = out_path + ".input." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    for (const auto& t : texts) {
      size_t start = 0;
      while (start <= t.size()) {
        size_t nl = std::min(t.find('\n', start), t.size());
        if (nl > start) f.write(t.data() + start, std::streamsize(nl - start)), f.put('\n');
        start = nl + 1;
      }
    }
    if (!f) ASC_FAIL("cannot write {}", tmp);
  }
  std::string prefix = out_path;
  if (prefix.size() > 6 && prefix.compare(prefix.size() - 6, 6, ".model") == 0)
    prefix.resize(prefix.size() - 6);
  const int threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const std::string args = fmt::format(
      "--input={} --model_prefix={} --vocab_size={} --model_type={} --character_coverage=1.0 "
      "--byte_fallback=true --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 "
      "--normalization_rule_name=identity --add_dummy_prefix=true --remove_extra_whitespaces=false "
      "--allow_whitespace_only_pieces=true --num_threads={} --minloglevel=2 "
      "--hard_vocab_limit=false",
      tmp, prefix, o.vocab_size, o.model_type, threads);
  std::unique_ptr<SpmBackend> spm(new_spm_backend());
  const std::string err = spm->train(args);
  std::filesystem::remove(tmp);
  std::filesystem::remove(prefix + ".vocab");
  if (!err.empty()) ASC_FAIL("tokenizer train failed: {}", err);
  if (prefix + ".model" != out_path) std::filesystem::rename(prefix + ".model", out_path);
}

}  // namespace asc
