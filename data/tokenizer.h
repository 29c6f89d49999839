// tokenizer.h — the tokenizer of a LLaMA-family model, chosen by the file:
//  - a SentencePiece `tokenizer.model` (LLaMA / Llama-2 / Mistral; Debian's libsentencepiece
//    behind spm_backend.h): encode(text) = [bos] + pieces, as Hugging Face's slow LlamaTokenizer
//    (unk 0, bos 1, eos 2);
//  - a Hugging Face `tokenizer.json` with a byte-level BPE model (Llama 3 / 3.1 / 3.2; hf_bpe.h):
//    encode(text) = the post-processor's BOS + ids, as PreTrainedTokenizerFast. BOS and EOS come
//    from a tokenizer_config.json beside it when there is one (bos_token / eos_token);
//  - a model directory: its tokenizer.model, else its tokenizer.json.
// Asclepius pads with BOS. Trains small SentencePiece models for the demo.
// Thread-safety: encode/decode are const and may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace asc {

class SpmBackend;
class HfBpeTokenizer;

class Tokenizer {
 public:
  // Throws asc::Error naming the file when it is missing, neither a SentencePiece model nor a
  // tokenizer.json we support (naming what is not supported), or when it lacks bos/eos ids.
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  std::vector<int32_t> encode(const std::string& text, bool add_bos = true,
                              bool add_eos = false) const;
  // The same ids without the word cache (tests compare the two).
  std::vector<int32_t> encode_uncached(const std::string& text, bool add_bos = true,
                                       bool add_eos = false) const;
  // Whether encode() may cache by word: see tokenizer.cpp, "Why the word cache is exact".
  bool word_cache_enabled() const { return word_cache_; }
  // Special ids are skipped; with a tokenizer_config.json that asks for it
  // (clean_up_tokenization_spaces), spaces before punctuation are tidied as transformers does.
  std::string decode(const std::vector<int32_t>& ids) const;
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const { return bos_id(); }  // the Asclepius convention (pad = <s>)
  // xxh64 of the model file's bytes, hex: ties a corpus to the tokenizer that built it.
  const std::string& checksum() const { return checksum_; }
  const std::string& path() const { return path_; }
  // "sentencepiece" or "hf-bpe" (a byte-level BPE tokenizer.json).
  const char* kind() const { return bpe_ ? "hf-bpe" : "sentencepiece"; }

 private:
  std::vector<int32_t> encode_impl(const std::string& text, bool add_bos, bool add_eos,
                                   bool cached) const;
  void encode_text(const std::string& text, bool cached, std::vector<int32_t>* out) const;
  void encode_plain(const std::string& text, std::vector<int32_t>* out) const;
  void load_sentencepiece(const std::string& bytes);
  void load_hf_json(const std::string& bytes);
  std::unique_ptr<SpmBackend> sp_;
  std::unique_ptr<HfBpeTokenizer> bpe_;
  std::string path_, checksum_;
  std::vector<std::pair<std::string, int32_t>> specials_;  // SentencePiece: control pieces, unk
  std::vector<std::vector<uint32_t>> specials_by_byte_;    // first byte -> indices, longest first
  bool word_cache_ = false;
  bool clean_up_spaces_ = false;  // tokenizer_config.json's clean_up_tokenization_spaces
};

struct TokenizerTrainOptions {
  int32_t vocab_size = 2000;
  int32_t threads = 0;  // 0 = all cores
  std::string model_type = "bpe";
};
// Trains a LLaMA-convention model (BPE, byte fallback, split digits, identity normalisation,
// unk 0 / bos 1 / eos 2, no pad piece) on `texts` and writes it to out_path (.model).
void train_tokenizer(const std::vector<std::string>& texts, const TokenizerTrainOptions& o,
                     const std::string& out_path);

std::string xxh64_hex(const void* data, size_t n);

}  // namespace asc
