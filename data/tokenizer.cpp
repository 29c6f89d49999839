#include "data/tokenizer.h"

#include <cstdint>

#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/json_limits.h"
#include "data/hf_bpe.h"
#include "data/spm_backend.h"

namespace asc {

std::string xxh64_hex(const void* data, size_t n) {
  return fmt::format("{:016x}", XXH64(data, n, 0));
}

// Why the word cache is exact. SentencePiece BPE merges adjacent symbols whose concatenation is
// a vocabulary piece, so two stretches of the normalised text that no piece can span are
// segmented independently. When every piece has "▁" (the escaped space) only in a leading run,
// or is all "▁", no piece spans the boundary in front of a space run that follows a non-space
// character. With identity normalisation, spaces escaped to "▁", the dummy prefix on and extra
// whitespace kept, the text "w0 ␣w1 ␣␣w2" therefore encodes as encode("w0") + encode("w1") +
// encode("␣w2"): each later word is encoded with one of its leading spaces dropped, because the
// dummy prefix stands in for it. The constructor checks these conditions on the model (the
// pieces, and the normalisation by probing) and enables the cache only when all hold; a test
// compares cached and uncached ids on every demo note and on random text.
namespace {
constexpr const char* kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's escaped space

bool piece_keeps_spaces_leading(const std::string& piece) {
  size_t i = 0;
  while (piece.compare(i, 3, kSpace) == 0) i += 3;  // leading run of ▁
  return piece.find(kSpace, i) == std::string::npos;
}

// A piece as the bytes it stands for: byte-fallback pieces "<0xNN>" are one byte.
std::string piece_bytes(const std::string& p) {
  if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>')
    return std::string(1, char(std::stoi(p.substr(3, 2), nullptr, 16)));
  return p;
}

struct WordCache {
  const void* owner = nullptr;
  std::string checksum;
  std::unordered_map<std::string, std::vector<int32_t>> ids;
};
thread_local WordCache t_cache;
}  // namespace

namespace {
// A model directory's tokenizer file: tokenizer.model (SentencePiece), else tokenizer.json.
std::string resolve_tokenizer_path(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return path;
  for (const char* name : {"tokenizer.model", "tokenizer.json"})
    if (fs::exists(fs::path(path) / name)) return (fs::path(path) / name).string();
  ASC_FAIL_HINT("pass the tokenizer file itself, or a model directory that has one",
                "{}: a directory without tokenizer.model or tokenizer.json", path);
}

bool looks_like_json(const std::string& bytes) {
  for (char c : bytes) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    return c == '{';
  }
  return false;
}

// bos_token / eos_token of a tokenizer_config.json: a string, or {"content": ...}.
std::string config_token(const nlohmann::json& cfg, const char* key, const std::string& where) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  const auto& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  ASC_FAIL("{}: {} is {}, not a token string", where, key, v.dump().substr(0, 80));
}
}  // namespace

Tokenizer::Tokenizer(const std::string& model_path) : path_(resolve_tokenizer_path(model_path)) {
  if (!std::filesystem::exists(path_))
    ASC_FAIL_HINT(
        "train one with `asclepius tokenizer train` or use the model's tokenizer.model / "
        "tokenizer.json",
        "{}: tokenizer model not found", path_);
  const std::string bytes = read_file(path_);
  checksum_ = xxh64_hex(bytes.data(), bytes.size());
  if (looks_like_json(bytes))
    load_hf_json(bytes);
  else
    load_sentencepiece(bytes);
}

void Tokenizer::load_hf_json(const std::string& bytes) {
  // As AutoTokenizer reads them: BOS, EOS and add_prefix_space from tokenizer_config.json beside
  // the file, when present.
  HfBpeTokenizer::Options o;
  const auto cfg_path = std::filesystem::path(path_).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const std::string where = cfg_path.string();
    nlohmann::json cfg;
    try {
      cfg = parse_json_bounded(read_file(where), where);
    } catch (const nlohmann::json::exception& e) {
      ASC_FAIL("{}: malformed JSON: {}", where, e.what());
    }
    if (!cfg.is_object()) ASC_FAIL("{}: not a JSON object", where);
    o.bos_token = config_token(cfg, "bos_token", where);
    o.eos_token = config_token(cfg, "eos_token", where);
    if (cfg.contains("add_prefix_space"))
      o.add_prefix_space = cfg["add_prefix_space"].is_boolean()
                               ? std::optional<bool>(cfg["add_prefix_space"].get<bool>())
                               : std::nullopt;
    // transformers' decode tidies spaces before punctuation when the config says so (Llama 3's
    // does): generate's text then equals upstream's decode.
    clean_up_spaces_ = cfg.contains("clean_up_tokenization_spaces") &&
                       cfg["clean_up_tokenization_spaces"].is_boolean() &&
                       cfg["clean_up_tokenization_spaces"].get<bool>();
  }
  bpe_ = std::make_unique<HfBpeTokenizer>(bytes, path_, o);
  // The settings taken from tokenizer_config.json change ids or text: part of the checksum.
  const std::string settings =
      fmt::format("{}\0bos={}\0eos={}\0prefix={}\0clean={}", bytes, bpe_->bos_id(), bpe_->eos_id(),
                  o.add_prefix_space ? int(*o.add_prefix_space) : -1, int(clean_up_spaces_));
  checksum_ = xxh64_hex(settings.data(), settings.size());
  word_cache_ = true;  // BPE within a pre-token depends on that pre-token only: always exact
}

void Tokenizer::load_sentencepiece(const std::string& bytes) {
  const std::string& model_path = path_;
  sp_.reset(new_spm_backend());
  if (std::string e = sp_->load(bytes); !e.empty())
    ASC_FAIL_HINT("tokenizers are SentencePiece .model files or Hugging Face tokenizer.json",
                  "{}: not a SentencePiece model: {}", model_path, e);
  // The word cache's conditions (see "Why the word cache is exact").
  word_cache_ = true;
  for (int id = 0; id < sp_->piece_size() && word_cache_; ++id)
    word_cache_ = sp_->is_control(id) || piece_keeps_spaces_leading(sp_->id_to_piece(id));
  for (const char* probe :
       {"a", "  two  spaces  ", "tab\tand\nnewline", "\xef\xbc\xa1 \xef\xac\x81 caf\xc3\xa9"}) {
    if (!word_cache_) break;
    std::vector<std::string> pieces;
    if (!sp_->encode_pieces(probe, &pieces).empty()) word_cache_ = false;
    std::string joined, want = kSpace;
    for (const auto& p : pieces) joined += piece_bytes(p);
    for (const char* c = probe; *c; ++c)
      want += *c == ' ' ? std::string(kSpace) : std::string(1, *c);
    word_cache_ = word_cache_ && joined == want;  // identity, dummy prefix, spaces kept
  }
  // The pieces matched in text as special tokens: every control piece and the unknown piece,
  // longest first.
  for (int id = 0; id < sp_->piece_size(); ++id)
    if (sp_->is_control(id) || id == sp_->unk_id())
      if (std::string p = sp_->id_to_piece(id); !p.empty()) specials_.emplace_back(p, id);
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  specials_by_byte_.assign(256, {});
  for (uint32_t k = 0; k < specials_.size(); ++k)
    specials_by_byte_[uint8_t(specials_[k].first[0])].push_back(k);
  if (sp_->bos_id() < 0 || sp_->eos_id() < 0)
    ASC_FAIL(
        "{}: the model defines no bos/eos pieces (bos {}, eos {}); LLaMA-style models need both",
        model_path, sp_->bos_id(), sp_->eos_id());
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_plain(const std::string& text, std::vector<int32_t>* out) const {
  std::vector<int> pieces;
  if (std::string e = sp_->encode(text, &pieces); !e.empty())
    ASC_FAIL("{}: encoding failed: {}", path_, e);
  out->insert(out->end(), pieces.begin(), pieces.end());
}

void Tokenizer::encode_text(const std::string& text, bool cached, std::vector<int32_t>* out) const {
  // A literal "▁" in the text looks like an escaped space to SentencePiece, so a split next to it
  // could land inside a whitespace run that a piece such as "▁▁" spans: no cache for such text.
  if (!cached || !word_cache_ || text.empty() || text.find(kSpace) != std::string::npos)
    return encode_plain(text, out);
  if (t_cache.owner != this || t_cache.checksum != checksum_) t_cache = {this, checksum_, {}};
  if (t_cache.ids.size() > (1u << 20)) t_cache.ids.clear();  // bound the memory per thread
  // Segments start at each run of spaces that follows a non-space and precedes a non-space.
  size_t seg = 0;
  auto emit = [&](size_t b, size_t e) {
    std::string key = text.substr(b, e - b);
    auto it = t_cache.ids.find(key);
    if (it == t_cache.ids.end()) {
      std::vector<int32_t> ids;
      encode_plain(key, &ids);
      it = t_cache.ids.emplace(std::move(key), std::move(ids)).first;
    }
    out->insert(out->end(), it->second.begin(), it->second.end());
  };
  for (size_t i = 1; i < text.size(); ++i) {
    if (text[i] != ' ' || text[i - 1] == ' ') continue;
    size_t j = i;
    while (j < text.size() && text[j] == ' ') ++j;
    if (j == text.size()) break;      // a trailing run stays with the last word
    emit(seg == 0 ? 0 : seg + 1, i);  // later segments: drop one space (the dummy prefix)
    seg = i;
    i = j - 1;
  }
  emit(seg == 0 ? 0 : seg + 1, text.size());
}

std::vector<int32_t> Tokenizer::encode_impl(const std::string& text, bool add_bos, bool add_eos,
                                            bool cached) const {
  if (bpe_) return bpe_->encode(text, add_bos, add_eos, cached);
  // As the slow LlamaTokenizer: the special-token strings in the text ("<s>", "</s>", "<unk>",
  // and any other control piece: Mistral's "[INST]", "[/INST]", ...) become their ids, the
  // longest at the leftmost position, and each stretch of text between them is encoded on its
  // own (so it gets SentencePiece's dummy-prefix space).
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(bos_id());
  size_t seg = 0;
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, int32_t>* hit = nullptr;
    for (uint32_t k : specials_by_byte_[uint8_t(text[i])])
      if (text.compare(i, specials_[k].first.size(), specials_[k].first) == 0) {
        hit = &specials_[k];
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > seg) encode_text(text.substr(seg, i - seg), cached, &ids);
    ids.push_back(hit->second);
    i += hit->first.size();
    seg = i;
  }
  if (seg < text.size()) encode_text(seg == 0 ? text : text.substr(seg), cached, &ids);
  if (add_eos) ids.push_back(eos_id());
  return ids;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos, bool add_eos) const {
  return encode_impl(text, add_bos, add_eos, /*cached=*/true);
}

std::vector<int32_t> Tokenizer::encode_uncached(const std::string& text, bool add_bos,
                                                bool add_eos) const {
  return encode_impl(text, add_bos, add_eos, /*cached=*/false);
}

// transformers' clean_up_tokenization: " ." -> ".", " ," -> ",", " 's" -> "'s", ...
static std::string clean_up_tokenization(std::string s) {
  static const std::pair<const char*, const char*> rules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : rules) {
    std::string out;
    const std::string f = from;
    size_t at = 0;
    for (size_t p; (p = s.find(f, at)) != std::string::npos; at = p + f.size())
      out.append(s, at, p - at).append(to);
    out.append(s, at, std::string::npos);
    s = std::move(out);
  }
  return s;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  if (bpe_) return clean_up_spaces_ ? clean_up_tokenization(bpe_->decode(ids)) : bpe_->decode(ids);
  std::vector<int> keep;
  for (int32_t id : ids)
    if (id >= 0 && id < vocab_size() && !sp_->is_control(id)) keep.push_back(id);
  std::string text;
  if (std::string e = sp_->decode(keep, &text); !e.empty())
    ASC_FAIL("{}: decoding failed: {}", path_, e);
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return bpe_ ? bpe_->vocab_size() : sp_->piece_size();
}
int32_t Tokenizer::bos_id() const {
  return bpe_ ? bpe_->bos_id() : sp_->bos_id();
}
int32_t Tokenizer::eos_id() const {
  return bpe_ ? bpe_->eos_id() : sp_->eos_id();
}
int32_t Tokenizer::unk_id() const {
  return bpe_ ? bpe_->unk_id() : sp_->unk_id();
}

void train_tokenizer(const std::vector<std::string>& texts, const TokenizerTrainOptions& o,
                     const std::string& out_path) {
  if (texts.empty()) ASC_FAIL("tokenizer train: no input text");
  if (o.vocab_size < 300)
    ASC_FAIL("tokenizer train: --vocab-size {} is too small (byte fallback alone takes 256 + 3)",
             o.vocab_size);
  // Sentences are the texts' non-empty lines, handed over in memory: no temporary file, and no
  // path in the model (SentencePiece records its input and model prefix in the file).
  std::vector<std::string> sentences;
  for (const auto& t : texts) {
    size_t start = 0;
    while (start <= t.size()) {
      const size_t nl = std::min(t.find('\n', start), t.size());
      if (nl > start) sentences.emplace_back(t, start, nl - start);
      start = nl + 1;
    }
  }
  const int threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const std::vector<std::pair<std::string, std::string>> args = {
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"num_threads", std::to_string(threads)},
      {"minloglevel", "2"},
      {"hard_vocab_limit", "false"}};
  std::unique_ptr<SpmBackend> spm(new_spm_backend());
  std::string model;
  const std::string err = spm->train(args, sentences, &model);
  if (!err.empty()) ASC_FAIL("tokenizer train failed: {}", err);
  write_file_atomic(out_path, model);
}

}  // namespace asc
