// spm_backend.h — the boundary to Debian's libsentencepiece, which carries its own built-in copy
// of the protobuf runtime (3.14) and exports its symbols. Linked into a binary that also uses
// the system libprotobuf (3.21: TensorBoard events, manifests), one copy would interpose on the
// other and sentencepiece aborts at load ("compiled against 3.14 ... installed 3.21"). So the
// tokenizer lives in its own shared object, libasclepius_spm.so, opened with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND): sentencepiece then binds to its own protobuf. Only this
// abstract interface (virtual calls, no symbol lookups) crosses the boundary.
#pragma once

#include <string>
#include <vector>

namespace asc {

class SpmBackend {
 public:
  virtual ~SpmBackend() = default;
  // Each returns "" on success, else the library's message.
  virtual std::string load(const std::string& serialized_model) = 0;
  virtual std::string encode(const std::string& text, std::vector<int>* ids) const = 0;
  virtual std::string decode(const std::vector<int>& ids, std::string* text) const = 0;
  virtual int piece_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int unk_id() const = 0;
  virtual bool is_control(int id) const = 0;
  virtual std::string id_to_piece(int id) const = 0;
  virtual std::string encode_pieces(const std::string& text,
                                    std::vector<std::string>* pieces) const = 0;
  // SentencePieceTrainer::Train with named options (no flag string), over `sentences` (one per
  // element) and into `model` (the serialized model): no file names enter the model, so the
  // same sentences and options give the same bytes.
  virtual std::string train(const std::vector<std::pair<std::string, std::string>>& options,
                            const std::vector<std::string>& sentences,
                            std::string* model) const = 0;
};

// Loads libasclepius_spm.so (beside the running binary, or $ASCLEPIUS_SPM_LIB) once and returns
// a new backend. Throws asc::Error naming the library when it cannot be loaded.
SpmBackend* new_spm_backend();

}  // namespace asc

// The one symbol libasclepius_spm.so exports.
extern "C" asc::SpmBackend* asclepius_spm_new_backend();
