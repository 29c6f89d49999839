// spm_backend.cpp — compiled into libasclepius_spm.so only (see spm_backend.h).
#include "data/spm_backend.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

namespace {

class Sentences final : public sentencepiece::SentenceIterator {
 public:
  explicit Sentences(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& v_;
  size_t i_ = 0;
};

class Backend final : public asc::SpmBackend {
 public:
  std::string load(const std::string& bytes) override {
    auto s = sp_.LoadFromSerializedProto(bytes);
    return s.ok() ? "" : s.ToString();
  }
  std::string encode(const std::string& text, std::vector<int>* ids) const override {
    auto s = sp_.Encode(text, ids);
    return s.ok() ? "" : s.ToString();
  }
  std::string decode(const std::vector<int>& ids, std::string* text) const override {
    auto s = sp_.Decode(ids, text);
    return s.ok() ? "" : s.ToString();
  }
  int piece_size() const override { return sp_.GetPieceSize(); }
  int bos_id() const override { return sp_.bos_id(); }
  int eos_id() const override { return sp_.eos_id(); }
  int unk_id() const override { return sp_.unk_id(); }
  bool is_control(int id) const override { return sp_.IsControl(id); }
  std::string id_to_piece(int id) const override { return sp_.IdToPiece(id); }
  std::string encode_pieces(const std::string& text,
                            std::vector<std::string>* pieces) const override {
    auto s = sp_.Encode(text, pieces);
    return s.ok() ? "" : s.ToString();
  }
  std::string train(const std::vector<std::pair<std::string, std::string>>& options,
                    const std::vector<std::string>& sentences, std::string* model) const override {
    std::unordered_map<std::string, std::string> kwargs(options.begin(), options.end());
    Sentences it(sentences);
    auto s = sentencepiece::SentencePieceTrainer::Train(kwargs, &it, model);
    return s.ok() ? "" : s.ToString();
  }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

extern "C" __attribute__((visibility("default"))) asc::SpmBackend* asclepius_spm_new_backend() {
  return new Backend();
}
