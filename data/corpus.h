// corpus.h — the HDF5 notes corpus (schema: docs/data-format.md, version 1).
//
// One file per stage. /tokens (int32, chunked, Fletcher32 so a corrupted chunk fails its read),
// /doc_offsets (int64, documents + 1), and for instruct /loss_mask (uint8, 1 on answer + EOS).
// Pretrain documents are notes wrapped BOS … EOS; training samples are cut from the token stream
// into seq_len windows at load time, so the sequence length can change without re-tokenising.
// Instruct documents are the exact Asclepius prompt then the answer and EOS.
// Attributes: schema version, stage, tokenizer checksum and vocabulary size, special ids, source
// files with their checksums, counts. Reading is read-only and safe from several processes.
// No libtorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/ingest.h"
#include "data/prompt.h"

namespace asc {

constexpr int kCorpusSchemaVersion = 1;

// The default prompt template (data/prompts/asclepius.txt) with note and question substituted
// (leading/trailing newlines of both stripped first); the answer follows it directly.
std::string asclepius_prompt(const std::string& note, const std::string& question);

struct CorpusBuildOptions {
  std::vector<std::string> inputs;  // .csv / .jsonl / .json
  IngestOptions ingest;
  std::string tokenizer;           // tokenizer.model / tokenizer.json / model directory
  std::string stage = "pretrain";  // pretrain | instruct
  // Instruct: the prompt template (a built-in name or a file; data/prompts/README.md).
  std::string prompt_template = kDefaultPrompt;
  // Instruct: upstream's collator arithmetic instead of ours (docs/data-format.md): the loss
  // boundary is the prompt's count of non-pad tokens (pad = BOS, so one prompt token more is a
  // target) and examples longer than max_len are cut from the right (the answer can be cut).
  bool upstream_compat = false;
  // Instruct: upstream's answer filters (make_instruction_dataset.py): drop rows whose note,
  // question or answer mention a model of themselves ("AI language", "language model", ...,
  // case-insensitive: data/synthesis.h upstream_filter_reason) and rows whose answer ends with "?".
  bool upstream_filters = false;
  std::string out;         // corpus.h5 (written atomically)
  int64_t max_len = 2048;  // instruct: longer examples keep the answer, truncate the note
  uint64_t seed = 0;       // pretrain: note order
  int threads = 0;         // 0 = all cores
  // A file of note ids (data/note_ids.h) whose records are left out. An id that matches no
  // record is refused unless exclude_allow_unknown (then only reported).
  std::string exclude;
  bool exclude_allow_unknown = false;
};

struct CorpusBuildReport {
  int64_t records = 0, skipped = 0, duplicates = 0, docs = 0, tokens = 0, truncated = 0,
          dropped_too_long = 0, filtered_self_reference = 0, filtered_question_answer = 0,
          excluded = 0;
  std::vector<std::string> unknown_excludes;  // --exclude ids that matched no record
  double seconds = 0, read_seconds = 0, tokenize_seconds = 0, write_seconds = 0;
};

CorpusBuildReport build_corpus(const CorpusBuildOptions& o);

struct CorpusInfo {
  int schema_version = 0;
  std::string stage, tokenizer_checksum, sources;
  int64_t vocab_size = 0, bos_id = 0, eos_id = 0, pad_id = 0, unk_id = 0;
  int64_t num_docs = 0, num_tokens = 0, truncated = 0;
  // Instruct: the prompt template (name, xxh64) and upstream_compat. Corpora written before
  // these attributes existed were built with the default template and without compat.
  std::string prompt_template = kDefaultPrompt, prompt_template_xxh64, prompt_template_text;
  bool upstream_compat = false;
  // Provenance (docs/provenance.md): whether the corpus holds note ids and content hashes (not
  // before they were added), how the ids were made, and the corpus's fingerprint (XXH64 of its
  // documents' offsets, content hashes, ids and the tokenizer's checksum).
  bool has_note_ids = false;
  std::string note_id_rule, fingerprint;
  int64_t excluded = 0;  // records left out by --exclude
};

// Per document: the note's id and content hash; pretrain duplicates of a note (same text, later
// record) as aliases naming the document that holds it.
struct NoteIndex {
  std::vector<std::string> ids;
  std::vector<uint64_t> xxh64;
  std::vector<std::string> alias_ids;
  std::vector<int64_t> alias_doc;
};

class Corpus {
 public:
  // Opens read-only and checks the schema (attributes, dataset shapes, offsets). Throws
  // asc::Error naming the file and the cause.
  explicit Corpus(const std::string& path);
  ~Corpus();
  Corpus(const Corpus&) = delete;
  Corpus& operator=(const Corpus&) = delete;

  const CorpusInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  const std::vector<int64_t>& doc_offsets() const { return offsets_; }
  // Reads tokens [begin, begin + count); a checksum failure names the range and the file.
  void read_tokens(int64_t begin, int64_t count, int32_t* out) const;
  void read_loss_mask(int64_t begin, int64_t count, uint8_t* out) const;  // instruct only
  // Pretrain windows of seq_len tokens (the remainder is dropped).
  int64_t num_windows(int64_t seq_len) const { return info_.num_tokens / seq_len; }
  // Every token read once: each id in [0, vocab_size); throws naming the first bad position.
  void check_token_ids(int64_t vocab_size) const;
  // The note ids and content hashes; throws (naming the file and how to rebuild) for a corpus
  // built before they were recorded.
  NoteIndex read_note_index() const;
  // Everything a reader may read, read once: every chunk's checksum, token ids within the
  // corpus's vocabulary, loss-mask values 0 or 1 (corpus inspect; train checks the ids too).
  void verify() const;

 private:
  std::string path_;
  int64_t file_ = -1, tokens_ = -1, mask_ = -1;
  CorpusInfo info_;
  std::vector<int64_t> offsets_;
};

}  // namespace asc
