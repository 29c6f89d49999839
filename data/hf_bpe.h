// hf_bpe.h — Hugging Face `tokenizer.json` with a byte-level BPE model (Llama 3 / 3.1 / 3.2,
// GPT-2 style): added tokens matched first (leftmost, longest), the pre-tokenizer's split regex
// run by PCRE2 (JIT, Unicode properties), bytes mapped to GPT-2's printable characters, merges
// applied by rank, the post-processor's template (BOS), and decoding back to text. Ids equal
// `tokenizers`' (PreTrainedTokenizerFast) on the same file; tests/oracle/check_hf_tokenizer.py
// compares them. What the file may hold is checked at load: anything we do not implement
// (another model type, a normalizer, another pre-tokenizer, byte fallback, dropout, stripping
// added tokens) is refused naming the field. No libtorch here (fuzzed with the parsers).
// Thread-safety: encode/decode are const and may run concurrently (per-thread caches).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace asc {

class HfBpeTokenizer {
 public:
  struct Options {
    // Contents (e.g. "<|end_of_text|>") overriding the defaults: the post-processor's leading
    // special token for BOS, the first of <|end_of_text|>, </s>, <|endoftext|> for EOS.
    std::string bos_token, eos_token;
    // transformers' PreTrainedTokenizerFast sets a top-level ByteLevel pre-tokenizer's
    // add_prefix_space to tokenizer_config.json's (false when absent), whatever the file says;
    // nullopt (the config says null): the file's value stays.
    std::optional<bool> add_prefix_space = false;
  };
  // `json` is the tokenizer.json text, `where` names it in errors.
  HfBpeTokenizer(const std::string& json, const std::string& where, const Options& o);
  ~HfBpeTokenizer();
  HfBpeTokenizer(const HfBpeTokenizer&) = delete;
  HfBpeTokenizer& operator=(const HfBpeTokenizer&) = delete;

  // Text must be valid UTF-8 (an asc::Error names the byte offset otherwise: Hugging Face takes
  // Python str, which cannot hold invalid UTF-8). Added tokens' text becomes their ids, as HF.
  std::vector<int32_t> encode(const std::string& text, bool add_bos, bool add_eos,
                              bool cached = true) const;
  // Special tokens are skipped; invalid UTF-8 from partial byte sequences becomes U+FFFD per
  // maximal invalid subpart, as Rust's String::from_utf8_lossy (what `tokenizers` does).
  std::string decode(const std::vector<int32_t>& ids) const;
  int32_t vocab_size() const { return vocab_size_; }  // 1 + the largest id (added tokens too)
  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  int32_t unk_id() const { return -1; }  // byte-level BPE has no unknown token
  bool is_special(int32_t id) const;
  // The token string of an id ("" when out of range): byte-level characters for model tokens.
  std::string id_to_token(int32_t id) const;

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
    bool special, normalized;
  };
  struct Merge {
    int32_t rank, id;
  };
  void load(const std::string& json, const std::string& where, const Options& o);
  void load_vocabulary(const nlohmann::json& model, const nlohmann::json& j,
                       const std::string& where);
  void load_pre_tokenizer(const nlohmann::json& j, const std::string& where, const Options& o);
  int32_t bos_of_template(const nlohmann::json& j, const std::string& where) const;
  void set_special_ids(int32_t template_bos, const Options& o, const std::string& where);
  // Added tokens as `tokenizers` splits on them: the normalized = false ones first, then the
  // normalized ones in what is left (pass 0, 1); the rest goes to the pre-tokenizer.
  void split_added(const std::string& text, size_t b, size_t e, int pass, bool cached,
                   std::vector<int32_t>* out) const;
  void bpe(const std::string& piece, bool cached, std::vector<int32_t>* out) const;
  void bpe_uncached(const std::string& piece, std::vector<int32_t>* out) const;

  std::unordered_map<std::string, int32_t> vocab_;  // byte-level token string -> id
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, result
  int32_t byte_id_[256] = {};
  std::vector<AddedToken> added_;  // sorted by content length, longest first
  // Per pass (normalized false, true): first byte -> indices into added_, longest first.
  std::vector<std::vector<uint32_t>> added_by_byte_[2];
  enum : uint8_t { kModel, kAdded, kSpecial };
  std::vector<uint8_t> kind_;  // per id
  bool ignore_merges_ = false;
  // The pre-tokenizer as steps: each splits every piece by its regex (matches and the text
  // between them become pieces, "Isolated"); the ByteLevel step may first prepend a space.
  struct Regex;
  struct Step {
    std::unique_ptr<Regex> re;  // null: no split
    bool prefix_space = false;
  };
  std::vector<Step> steps_;
  void pre_tokenize(size_t step, const std::string& piece, bool cached,
                    std::vector<int32_t>* out) const;
  int32_t vocab_size_ = 0, bos_ = -1, eos_ = -1;
  uint64_t generation_ = 0;  // tells per-thread caches of an earlier tokenizer at this address
};

// GPT-2's byte <-> printable character mapping (the character as UTF-8).
std::string byte_level_char(uint8_t b);

}  // namespace asc
