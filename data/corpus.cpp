#include "data/corpus.h"
#include "data/synthesis.h"

#include <cstdint>

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "data/note_ids.h"
#include "data/tokenizer.h"

namespace asc {
namespace {

// HDF5 prints its own error stack unless told not to; we report one line instead.
// Per thread: in the thread-safe libhdf5 the setting is thread-local (the prefetch thread too).
void quiet_hdf5() {
  thread_local bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

// Writing (a ".partial" file): the directory or the disk; reading: the file itself.
std::string hdf5_hint(const std::string& path) {
  if (path.find(".partial.") != std::string::npos)
    return "check that the output directory exists, is writable and has space";
  return "the file may be truncated, corrupted or not a corpus; rebuild it with `asclepius corpus "
         "build`";
}

// Wraps every HDF5 call that can fail: file, operation and a hint, once.
#define H5_CHECK(expr, path, what)                                                   \
  ([&]() {                                                                           \
    auto _r = (expr);                                                                \
    if (_r < 0) ASC_FAIL_HINT(hdf5_hint(path), "{}: HDF5 failed to {}", path, what); \
    return _r;                                                                       \
  }())

void write_attr_i64(hid_t obj, const char* name, int64_t v, const std::string& path) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5_CHECK(H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), path,
                     std::string("create attribute ") + name);
  H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, &v), path, std::string("write attribute ") + name);
  H5Aclose(a);
  H5Sclose(space);
}

void write_attr_str(hid_t obj, const char* name, const std::string& v, const std::string& path) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::max<size_t>(1, v.size()));
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5_CHECK(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), path,
                     std::string("create attribute ") + name);
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  H5_CHECK(H5Awrite(a, type, buf.data()), path, std::string("write attribute ") + name);
  H5Aclose(a);
  H5Sclose(space);
  H5Tclose(type);
}

int64_t read_attr_i64(hid_t obj, const char* name, const std::string& path) {
  if (H5Aexists(obj, name) <= 0)
    ASC_FAIL("{}: not a corpus: attribute '{}' is missing", path, name);
  hid_t a = H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT), path, std::string("open attribute ") + name);
  int64_t v = 0;
  herr_t r = H5Aread(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5_CHECK(r, path, std::string("read attribute ") + name);
  return v;
}

std::string read_attr_str(hid_t obj, const char* name, const std::string& path) {
  if (H5Aexists(obj, name) <= 0)
    ASC_FAIL("{}: not a corpus: attribute '{}' is missing", path, name);
  hid_t a = H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT), path, std::string("open attribute ") + name);
  hid_t type = H5Aget_type(a);
  std::string out;
  if (H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
    size_t n = H5Tget_size(type);
    out.assign(n, '\0');
    if (H5Aread(a, type, out.data()) < 0) out.clear();
    out.resize(std::strlen(out.c_str()));
  } else {
    H5Tclose(type);
    H5Aclose(a);
    ASC_FAIL("{}: attribute '{}' is not a fixed-length string", path, name);
  }
  H5Tclose(type);
  H5Aclose(a);
  return out;
}

template <class T>
void write_dataset(hid_t file, const char* name, hid_t file_type, hid_t mem_type,
                   const std::vector<T>& v, const std::string& path) {
  const hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  const hsize_t chunk = std::max<hsize_t>(1, std::min<hsize_t>(n, 1 << 16));
  H5Pset_chunk(dcpl, 1, &chunk);
  H5_CHECK(H5Pset_fletcher32(dcpl), path, "enable the Fletcher32 filter");
  hid_t d = H5_CHECK(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path,
                     std::string("create dataset ") + name);
  if (n > 0)
    H5_CHECK(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), path,
             std::string("write dataset ") + name);
  H5_CHECK(H5Dclose(d), path, std::string("close (and write) dataset ") + name);
  H5Pclose(dcpl);
  H5Sclose(space);
}

// A dataset of variable-length UTF-8 strings (note ids), chunked; h5py reads it as bytes.
void write_strings(hid_t file, const char* name, const std::vector<std::string>& v,
                   const std::string& path) {
  const hsize_t n = v.size();
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  const hsize_t chunk = std::max<hsize_t>(1, std::min<hsize_t>(n, 1 << 14));
  H5Pset_chunk(dcpl, 1, &chunk);
  hid_t d = H5_CHECK(H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path,
                     std::string("create dataset ") + name);
  if (n > 0)
    H5_CHECK(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), path,
             std::string("write dataset ") + name);
  H5_CHECK(H5Dclose(d), path, std::string("close (and write) dataset ") + name);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Tclose(type);
}

// Runs fn(i) for i in [0, n) on `threads` threads, in contiguous blocks; rethrows the first error.
template <class F>
void parallel_for(int64_t n, int threads, F fn) {
  threads = std::max(1, std::min<int>(threads, int(std::max<int64_t>(1, n / 16))));
  std::vector<std::thread> pool;
  std::exception_ptr err;
  std::atomic<bool> failed{false};
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
      try {
        for (int64_t i = lo; i < hi && !failed; ++i) fn(i);
      } catch (...) {
        if (!failed.exchange(true)) err = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace

std::string asclepius_prompt(const std::string& note, const std::string& question) {
  static const PromptTemplate t = PromptTemplate::builtin(kDefaultPrompt);
  return t.render(note, question);
}

namespace {
struct InstructExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  uint8_t truncated = 0, dropped = 0;  // dropped: even without its note it exceeds max_len
};

// One instruct example: prompt then answer + EOS, its loss mask, and how --max-len was met.
InstructExample tokenize_instruct(const NoteRecord& r, const Tokenizer& tok,
                                  const PromptTemplate& prompt, const CorpusBuildOptions& o) {
  InstructExample e;
  // Instruct: prompt then answer + EOS; the loss covers the answer and EOS only. The boundary
  // is the prompt's own token count (the Alpaca-style preprocessing Asclepius inherited).
  // Upstream strips "\n" only; ours also a trailing "\r" (CRLF files).
  const char* nl = o.upstream_compat ? "\n" : "\r\n";
  const std::string answer = strip_newlines(r.answer, nl);
  std::string note = strip_newlines(r.note, nl);
  std::vector<int32_t> prompt_ids, full;
  auto make = [&](const std::string& n) {
    const std::string text = prompt.render(n, r.question, nl);
    prompt_ids = tok.encode(text, true, false);
    full = tok.encode(text + answer, true, true);
  };
  make(note);
  if (o.upstream_compat) {
    // Upstream: truncation=True at model_max_length cuts both from the right; the boundary is
    // prompt_ids.ne(pad_id).sum() with pad = BOS.
    if (int64_t(full.size()) > o.max_len) {
      e.truncated = 1;
      full.resize(size_t(o.max_len));
    }
    if (int64_t(prompt_ids.size()) > o.max_len) prompt_ids.resize(size_t(o.max_len));
    const auto boundary = size_t(std::count_if(prompt_ids.begin(), prompt_ids.end(),
                                               [&](int32_t t) { return t != tok.pad_id(); }));
    e.mask.assign(full.size(), 1);
    std::fill(e.mask.begin(), e.mask.begin() + long(std::min(boundary, full.size())), 0);
    e.ids = std::move(full);
    return e;
  }
  if (int64_t(full.size()) > o.max_len) {
    // Keep the whole answer; cut the note (binary search on its byte length).
    e.truncated = 1;
    size_t lo = 0, hi = note.size();
    while (lo < hi) {
      size_t mid = (lo + hi + 1) / 2;
      make(utf8_prefix(note, mid));
      if (int64_t(full.size()) <= o.max_len)
        lo = mid;
      else
        hi = mid - 1;
    }
    make(utf8_prefix(note, lo));
    if (int64_t(full.size()) > o.max_len) e.dropped = 1;  // the answer alone is too long
  }
  const size_t boundary = std::min(prompt_ids.size(), full.size());
  e.mask.assign(full.size(), 1);
  std::fill(e.mask.begin(), e.mask.begin() + long(boundary), 0);
  e.ids = std::move(full);
  return e;
}
// The records of every input, each with its file (for stable ids), and the files' checksums.
struct Inputs {
  std::vector<NoteRecord> records;
  std::vector<std::string> files;  // files[i]: the input records[i] came from
  nlohmann::json sources = nlohmann::json::array();
};

Inputs read_inputs(const CorpusBuildOptions& o, CorpusBuildReport* rep) {
  Inputs in;
  IngestOptions ingest = o.ingest;
  ingest.require_qa = o.stage == "instruct";
  for (const auto& path : o.inputs) {
    IngestReport ir;
    const std::string bytes = read_file(path);  // once: the checksum is of the bytes parsed
    auto r = parse_note_records(bytes, note_format_of(path), path, ingest, &ir);
    rep->skipped += ir.skipped;
    in.sources.push_back({{"path", path},
                          {"bytes", bytes.size()},
                          {"xxh64", xxh64_hex(bytes.data(), bytes.size())}});
    in.files.insert(in.files.end(), r.size(), path);
    std::move(r.begin(), r.end(), std::back_inserter(in.records));
  }
  rep->records = int64_t(in.records.size());
  if (o.exclude.empty()) return in;
  const ExclusionReport ex = exclude_records(&in.records, &in.files, read_id_list(o.exclude));
  rep->excluded = ex.excluded;
  rep->unknown_excludes = ex.unknown;
  if (!ex.unknown.empty() && !o.exclude_allow_unknown)
    ASC_FAIL_HINT(
        "check the ids (a record without an id column is FILE:RECORD, e.g. notes.csv:17), or "
        "pass --exclude-allow-unknown to build anyway",
        "corpus build --exclude {}: {} of its ids match no record of the inputs: {}{}", o.exclude,
        ex.unknown.size(),
        fmt::join(ex.unknown.begin(),
                  ex.unknown.begin() + long(std::min<size_t>(5, ex.unknown.size())), ", "),
        ex.unknown.size() > 5 ? ", ..." : "");
  return in;
}

// The documents to tokenise: distinct notes (shuffled) for pretraining, every kept triple
// otherwise; a pretrain note's later duplicates are kept as aliases of its first record.
struct Selection {
  std::vector<const NoteRecord*> docs;
  std::vector<std::pair<size_t, const NoteRecord*>> aliases;  // (record index, first record)
};

Selection select_docs(const CorpusBuildOptions& o, const Inputs& in, CorpusBuildReport* rep) {
  Selection s;
  if (o.stage == "pretrain") {
    std::unordered_map<std::string, const NoteRecord*> first;
    for (size_t i = 0; i < in.records.size(); ++i) {  // distinct as tokenised
      const NoteRecord& r = in.records[i];
      auto [it, fresh] = first.emplace(strip_newlines(r.note), &r);
      if (fresh) {
        s.docs.push_back(&r);
      } else {
        ++rep->duplicates;
        s.aliases.emplace_back(i, it->second);
      }
    }
    std::mt19937_64 rng(o.seed);
    for (int64_t i = int64_t(s.docs.size()) - 1; i > 0; --i)
      std::swap(s.docs[size_t(i)], s.docs[size_t(rng() % uint64_t(i + 1))]);
    return s;
  }
  for (const auto& r : in.records) {
    const std::string why =
        o.upstream_filters ? upstream_filter_reason(r.note, r.question, r.answer) : "";
    rep->filtered_self_reference += why == "self_reference";
    rep->filtered_question_answer += why == "question_mark";
    if (why.empty()) s.docs.push_back(&r);
  }
  return s;
}

// What the file holds: the token stream and, per document, its offsets, id and content hash.
struct CorpusData {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;
  std::vector<int64_t> offsets = {0};
  std::vector<std::string> note_ids, alias_ids;
  std::vector<uint64_t> note_hashes;
  std::vector<int64_t> alias_of;  // the document each alias names
  std::string fingerprint;
};

// Tokenises every document on every core and concatenates them (dropping those too long).
CorpusData tokenize_docs(const CorpusBuildOptions& o, const Inputs& in, const Selection& sel,
                         const Tokenizer& tok, const PromptTemplate& prompt,
                         CorpusBuildReport* rep) {
  const auto& docs = sel.docs;
  std::vector<std::vector<int32_t>> ids(docs.size());
  std::vector<std::vector<uint8_t>> masks(o.stage == "instruct" ? docs.size() : 0);
  std::vector<uint8_t> truncated(docs.size(), 0), dropped(docs.size(), 0);
  const int threads =
      o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  parallel_for(int64_t(docs.size()), threads, [&](int64_t i) {
    const NoteRecord& r = *docs[size_t(i)];
    if (o.stage == "pretrain") {
      ids[size_t(i)] = tok.encode(strip_newlines(r.note), /*bos=*/true, /*eos=*/true);
      return;
    }
    InstructExample e = tokenize_instruct(r, tok, prompt, o);
    ids[size_t(i)] = std::move(e.ids);
    masks[size_t(i)] = std::move(e.mask);
    truncated[size_t(i)] = e.truncated;
    dropped[size_t(i)] = e.dropped;
  });
  CorpusData d;
  auto file_of = [&](const NoteRecord* r) { return in.files[size_t(r - in.records.data())]; };
  std::unordered_map<const NoteRecord*, int64_t> doc_of;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (dropped[i]) {
      ++rep->dropped_too_long;
      continue;
    }
    rep->truncated += truncated[i];
    d.tokens.insert(d.tokens.end(), ids[i].begin(), ids[i].end());
    if (!masks.empty()) d.mask.insert(d.mask.end(), masks[i].begin(), masks[i].end());
    doc_of[docs[i]] = int64_t(d.offsets.size()) - 1;
    d.offsets.push_back(int64_t(d.tokens.size()));
    d.note_ids.push_back(effective_note_id(*docs[i], file_of(docs[i])));
    d.note_hashes.push_back(note_content_xxh64(docs[i]->note));
  }
  for (const auto& [record, first] : sel.aliases) {
    d.alias_ids.push_back(effective_note_id(in.records[record], in.files[record]));
    d.alias_of.push_back(doc_of.at(first));
  }
  rep->docs = int64_t(d.offsets.size()) - 1;
  rep->tokens = int64_t(d.tokens.size());
  return d;
}

// The corpus's identity for provenance: its documents' offsets, ids and content hashes, and the
// tokenizer (a run records it; provenance refuses a corpus that no longer matches).
std::string corpus_fingerprint(const CorpusData& d, const std::string& tokenizer_checksum) {
  std::string buf(reinterpret_cast<const char*>(d.offsets.data()),
                  d.offsets.size() * sizeof(int64_t));
  buf.append(reinterpret_cast<const char*>(d.note_hashes.data()),
             d.note_hashes.size() * sizeof(uint64_t));
  for (const auto& id : d.note_ids) buf += id + '\n';
  buf += tokenizer_checksum;
  return xxh64_hex(buf.data(), buf.size());
}

void write_provenance_datasets(hid_t f, const CorpusData& d, const CorpusBuildReport& rep,
                               const std::string& tmp) {
  write_strings(f, "note_ids", d.note_ids, tmp);
  write_dataset(f, "note_xxh64", H5T_STD_U64LE, H5T_NATIVE_UINT64, d.note_hashes, tmp);
  write_strings(f, "alias_ids", d.alias_ids, tmp);
  write_dataset(f, "alias_doc", H5T_STD_I64LE, H5T_NATIVE_INT64, d.alias_of, tmp);
  write_attr_str(f, "note_id_rule", kNoteIdRule, tmp);
  write_attr_str(f, "fingerprint", d.fingerprint, tmp);
  write_attr_i64(f, "excluded", rep.excluded, tmp);
}

void write_attributes(hid_t f, const CorpusBuildOptions& o, const Tokenizer& tok,
                      const PromptTemplate& prompt, const CorpusBuildReport& rep,
                      const nlohmann::json& sources, const std::string& tmp) {
  write_attr_i64(f, "schema_version", kCorpusSchemaVersion, tmp);
  write_attr_str(f, "stage", o.stage, tmp);
  write_attr_str(f, "tokenizer_xxh64", tok.checksum(), tmp);
  write_attr_i64(f, "vocab_size", tok.vocab_size(), tmp);
  write_attr_i64(f, "bos_id", tok.bos_id(), tmp);
  write_attr_i64(f, "eos_id", tok.eos_id(), tmp);
  write_attr_i64(f, "pad_id", tok.pad_id(), tmp);
  write_attr_i64(f, "unk_id", tok.unk_id(), tmp);
  write_attr_i64(f, "num_docs", rep.docs, tmp);
  write_attr_i64(f, "num_tokens", rep.tokens, tmp);
  write_attr_i64(f, "truncated", rep.truncated, tmp);
  write_attr_i64(f, "max_len", o.stage == "instruct" ? o.max_len : 0, tmp);
  if (o.stage == "instruct") {
    write_attr_str(f, "prompt_template", prompt.name, tmp);
    write_attr_str(f, "prompt_template_xxh64", prompt.xxh64, tmp);
    write_attr_str(f, "prompt_template_text", prompt.text, tmp);
    write_attr_i64(f, "upstream_compat", o.upstream_compat ? 1 : 0, tmp);
    write_attr_i64(f, "upstream_filters", o.upstream_filters ? 1 : 0, tmp);
    write_attr_i64(f, "filtered_self_reference", rep.filtered_self_reference, tmp);
    write_attr_i64(f, "filtered_question_answer", rep.filtered_question_answer, tmp);
  }
  write_attr_str(f, "sources", sources.dump(), tmp);
}

// Writes to a temporary file, then renames: a reader never sees a half-written corpus.
void write_corpus_file(const CorpusBuildOptions& o, const Tokenizer& tok,
                       const PromptTemplate& prompt, const CorpusData& d,
                       const CorpusBuildReport& rep, const nlohmann::json& sources) {
  const std::string tmp = o.out + ".partial." + std::to_string(::getpid());
  std::filesystem::remove(tmp);
  hid_t f = H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), tmp,
                     "create the file");
  try {
    write_dataset(f, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, d.tokens, tmp);
    write_dataset(f, "doc_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, d.offsets, tmp);
    if (o.stage == "instruct")
      write_dataset(f, "loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, d.mask, tmp);
    write_provenance_datasets(f, d, rep, tmp);
    write_attributes(f, o, tok, prompt, rep, sources, tmp);
    H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL), tmp, "flush");
  } catch (...) {
    H5Fclose(f);
    std::filesystem::remove(tmp);
    throw;
  }
  // Filtered chunks may be written only at close: a failure here (disk full) must stop the
  // rename, or unwritten chunks would read back as zeros.
  if (H5Fclose(f) < 0) {
    std::filesystem::remove(tmp);
    ASC_FAIL("{}: HDF5 failed to close (and write) the file; disk full?", tmp);
  }
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    std::filesystem::remove(tmp);
    ASC_FAIL("{}: cannot fsync the written corpus", tmp);
  }
  ::close(fd);
  std::filesystem::rename(tmp, o.out);
  auto parent = std::filesystem::path(o.out).parent_path();
  fsync_dir(parent.empty() ? "." : parent.string());
}
}  // namespace

CorpusBuildReport build_corpus(const CorpusBuildOptions& o) {
  quiet_hdf5();
  const auto t0 = std::chrono::steady_clock::now();
  if (o.stage != "pretrain" && o.stage != "instruct")
    ASC_FAIL("corpus build: --stage must be pretrain or instruct, got '{}'", o.stage);
  if (o.inputs.empty()) ASC_FAIL("corpus build: no --input files");
  Tokenizer tok(o.tokenizer);
  const PromptTemplate prompt = PromptTemplate::resolve(o.prompt_template, "--prompt-template");
  CorpusBuildReport rep;
  auto since = [&t0] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  const Inputs in = read_inputs(o, &rep);  // 1. records (less the excluded), sources' checksums
  rep.read_seconds = since();
  const Selection sel = select_docs(o, in, &rep);  // 2. the documents
  if (sel.docs.empty())
    ASC_FAIL("corpus build: no usable records in {}", fmt::join(o.inputs, ", "));
  CorpusData data = tokenize_docs(o, in, sel, tok, prompt, &rep);  // 3. tokenised, concatenated
  rep.tokenize_seconds = since() - rep.read_seconds;
  if (rep.docs == 0)
    ASC_FAIL_HINT("raise --max-len above the prompt's length (2048 is the Asclepius setting)",
                  "corpus build: all {} examples were longer than --max-len {} even with the note "
                  "removed; nothing to write",
                  rep.dropped_too_long, o.max_len);
  data.fingerprint = corpus_fingerprint(data, tok.checksum());
  write_corpus_file(o, tok, prompt, data, rep, in.sources);  // 4. written atomically
  rep.seconds = since();
  rep.write_seconds = rep.seconds - rep.read_seconds - rep.tokenize_seconds;
  return rep;
}

Corpus::Corpus(const std::string& path) : path_(path) {
  quiet_hdf5();
  if (!std::filesystem::exists(path))
    ASC_FAIL_HINT("build one with `asclepius corpus build`", "{}: corpus not found", path);
  if (H5Fis_hdf5(path.c_str()) <= 0)
    ASC_FAIL_HINT("rebuild it with `asclepius corpus build`", "{}: not an HDF5 file (or truncated)",
                  path);
  file_ = H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path, "open the file");
  try {
    info_.schema_version = int(read_attr_i64(file_, "schema_version", path));
    if (info_.schema_version != kCorpusSchemaVersion)
      ASC_FAIL("{}: corpus schema version {} (this build reads version {})", path,
               info_.schema_version, kCorpusSchemaVersion);
    info_.stage = read_attr_str(file_, "stage", path);
    info_.tokenizer_checksum = read_attr_str(file_, "tokenizer_xxh64", path);
    info_.sources = read_attr_str(file_, "sources", path);
    info_.vocab_size = read_attr_i64(file_, "vocab_size", path);
    info_.bos_id = read_attr_i64(file_, "bos_id", path);
    info_.eos_id = read_attr_i64(file_, "eos_id", path);
    info_.pad_id = read_attr_i64(file_, "pad_id", path);
    info_.unk_id = read_attr_i64(file_, "unk_id", path);
    info_.num_docs = read_attr_i64(file_, "num_docs", path);
    info_.num_tokens = read_attr_i64(file_, "num_tokens", path);
    info_.truncated = read_attr_i64(file_, "truncated", path);
    if (info_.stage == "instruct" && H5Aexists(file_, "prompt_template") > 0) {
      info_.prompt_template = read_attr_str(file_, "prompt_template", path);
      info_.prompt_template_xxh64 = read_attr_str(file_, "prompt_template_xxh64", path);
      info_.prompt_template_text = read_attr_str(file_, "prompt_template_text", path);
      info_.upstream_compat = read_attr_i64(file_, "upstream_compat", path) != 0;
    } else if (info_.stage == "instruct") {  // written before templates were data
      const PromptTemplate t = PromptTemplate::builtin(kDefaultPrompt);
      info_.prompt_template_xxh64 = t.xxh64;
      info_.prompt_template_text = t.text;
    }
    info_.has_note_ids = H5Lexists(file_, "note_ids", H5P_DEFAULT) > 0;
    if (info_.has_note_ids) {
      info_.note_id_rule = read_attr_str(file_, "note_id_rule", path);
      info_.fingerprint = read_attr_str(file_, "fingerprint", path);
      info_.excluded = read_attr_i64(file_, "excluded", path);
    }
    if (info_.num_docs < 1 || info_.num_tokens < 1)
      ASC_FAIL("{}: the corpus is empty (num_docs {}, num_tokens {})", path, info_.num_docs,
               info_.num_tokens);
    if (info_.stage != "pretrain" && info_.stage != "instruct")
      ASC_FAIL("{}: unknown corpus stage '{}'", path, info_.stage);
    auto open_1d = [&](const char* name, int64_t expect) {
      if (H5Lexists(file_, name, H5P_DEFAULT) <= 0)
        ASC_FAIL("{}: not a corpus: dataset '{}' is missing", path, name);
      hid_t d =
          H5_CHECK(H5Dopen2(file_, name, H5P_DEFAULT), path, std::string("open dataset ") + name);
      hid_t s = H5Dget_space(d);
      hsize_t n = 0;
      const int rank = H5Sget_simple_extent_ndims(s);
      if (rank == 1) H5Sget_simple_extent_dims(s, &n, nullptr);
      H5Sclose(s);
      if (rank != 1 || int64_t(n) != expect) {
        H5Dclose(d);
        ASC_FAIL("{}: dataset '{}' holds {} entries but the attributes say {}", path, name,
                 int64_t(n), expect);
      }
      return d;
    };
    tokens_ = open_1d("tokens", info_.num_tokens);
    if (info_.stage == "instruct") mask_ = open_1d("loss_mask", info_.num_tokens);
    hid_t od = open_1d("doc_offsets", info_.num_docs + 1);
    offsets_.resize(size_t(info_.num_docs + 1));
    herr_t r = H5Dread(od, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets_.data());
    H5Dclose(od);
    H5_CHECK(r, path, "read doc_offsets (checksum mismatch: the file is corrupted)");
    if (info_.num_docs == 0 || info_.num_tokens == 0) ASC_FAIL("{}: the corpus is empty", path);
    if (offsets_.front() != 0 || offsets_.back() != info_.num_tokens ||
        !std::is_sorted(offsets_.begin(), offsets_.end()))
      ASC_FAIL("{}: doc_offsets are not increasing from 0 to num_tokens", path);
  } catch (...) {
    if (tokens_ >= 0) H5Dclose(tokens_);
    if (mask_ >= 0) H5Dclose(mask_);
    H5Fclose(file_);
    throw;
  }
}

Corpus::~Corpus() {
  if (tokens_ >= 0) H5Dclose(tokens_);
  if (mask_ >= 0) H5Dclose(mask_);
  if (file_ >= 0) H5Fclose(file_);
}

namespace {
void read_range(int64_t dset, int64_t begin, int64_t count, hid_t mem_type, void* out,
                int64_t total, const std::string& path, const char* name) {
  quiet_hdf5();
  if (begin < 0 || count < 0 || begin + count > total)
    ASC_FAIL("{}: read of {} [{}, {}) is outside [0, {})", path, name, begin, begin + count, total);
  if (count == 0) return;
  hid_t fs = H5Dget_space(dset);
  const hsize_t start = hsize_t(begin), n = hsize_t(count);
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
  hid_t ms = H5Screate_simple(1, &n, nullptr);
  herr_t r = H5Dread(dset, mem_type, ms, fs, H5P_DEFAULT, out);
  H5Sclose(ms);
  H5Sclose(fs);
  if (r < 0)
    ASC_FAIL_HINT("rebuild the corpus with `asclepius corpus build`",
                  "{}: reading {} [{}, {}) failed (checksum mismatch or truncated file: the corpus "
                  "is corrupted)",
                  path, name, begin, begin + count);
}
}  // namespace

void Corpus::read_tokens(int64_t begin, int64_t count, int32_t* out) const {
  read_range(tokens_, begin, count, H5T_NATIVE_INT32, out, info_.num_tokens, path_, "tokens");
}

void Corpus::read_loss_mask(int64_t begin, int64_t count, uint8_t* out) const {
  if (mask_ < 0) ASC_FAIL("{}: a {} corpus has no loss_mask", path_, info_.stage);
  read_range(mask_, begin, count, H5T_NATIVE_UINT8, out, info_.num_tokens, path_, "loss_mask");
}

namespace {
hid_t open_1d(int64_t file, const char* name, int64_t expect, const std::string& path) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    ASC_FAIL("{}: not a corpus with note ids: dataset '{}' is missing", path, name);
  hid_t d = H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT), path, std::string("open dataset ") + name);
  hid_t s = H5Dget_space(d);
  hsize_t n = 0;
  const int rank = H5Sget_simple_extent_ndims(s);
  if (rank == 1) H5Sget_simple_extent_dims(s, &n, nullptr);
  H5Sclose(s);
  if (rank != 1 || (expect >= 0 && int64_t(n) != expect)) {
    H5Dclose(d);
    ASC_FAIL("{}: dataset '{}' holds {} entries, {} expected", path, name, int64_t(n), expect);
  }
  return d;
}

int64_t dataset_size(hid_t d) {
  hid_t s = H5Dget_space(d);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(s, &n, nullptr);
  H5Sclose(s);
  return int64_t(n);
}

std::vector<std::string> read_strings(int64_t file, const char* name, int64_t expect,
                                      const std::string& path) {
  hid_t d = open_1d(file, name, expect, path);
  const int64_t n = dataset_size(d);
  std::vector<char*> ptrs(size_t(n), nullptr);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  herr_t r = n > 0 ? H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) : 0;
  std::vector<std::string> out;
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  if (r >= 0 && n > 0) {
    hid_t space = H5Dget_space(d);
    H5Dvlen_reclaim(type, space, H5P_DEFAULT, ptrs.data());
    H5Sclose(space);
  }
  H5Tclose(type);
  H5Dclose(d);
  H5_CHECK(r, path, std::string("read dataset ") + name);
  return out;
}

template <class T>
std::vector<T> read_numbers(int64_t file, const char* name, hid_t mem_type, int64_t expect,
                            const std::string& path) {
  hid_t d = open_1d(file, name, expect, path);
  std::vector<T> out(size_t(dataset_size(d)));
  herr_t r = out.empty() ? 0 : H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data());
  H5Dclose(d);
  H5_CHECK(r, path, std::string("read dataset ") + name + " (checksum mismatch: corrupted?)");
  return out;
}
}  // namespace

NoteIndex Corpus::read_note_index() const {
  quiet_hdf5();
  if (!info_.has_note_ids)
    ASC_FAIL_HINT(
        "rebuild it with `asclepius corpus build` (the same inputs, --seed and "
        "tokenizer give the same documents, now with their ids) and train on that",
        "{}: the corpus holds no note ids (it was built before `corpus build` recorded "
        "them), so which notes trained which steps cannot be named",
        path_);
  NoteIndex x;
  x.ids = read_strings(file_, "note_ids", info_.num_docs, path_);
  x.xxh64 = read_numbers<uint64_t>(file_, "note_xxh64", H5T_NATIVE_UINT64, info_.num_docs, path_);
  x.alias_ids = read_strings(file_, "alias_ids", -1, path_);
  x.alias_doc = read_numbers<int64_t>(file_, "alias_doc", H5T_NATIVE_INT64,
                                      int64_t(x.alias_ids.size()), path_);
  for (int64_t d : x.alias_doc)
    if (d < 0 || d >= info_.num_docs)
      ASC_FAIL("{}: alias_doc names document {} of {}", path_, d, info_.num_docs);
  return x;
}

void Corpus::verify() const {
  check_token_ids(info_.vocab_size);
  if (mask_ < 0) return;
  std::vector<uint8_t> buf(1 << 16);
  for (int64_t b = 0; b < info_.num_tokens; b += int64_t(buf.size())) {
    const int64_t n = std::min<int64_t>(int64_t(buf.size()), info_.num_tokens - b);
    read_loss_mask(b, n, buf.data());
    for (int64_t i = 0; i < n; ++i)
      if (buf[size_t(i)] > 1)
        ASC_FAIL("{}: loss_mask {} at position {} is neither 0 nor 1", path_, int(buf[size_t(i)]),
                 b + i);
  }
}

void Corpus::check_token_ids(int64_t vocab_size) const {
  std::vector<int32_t> buf(1 << 16);
  for (int64_t b = 0; b < info_.num_tokens; b += int64_t(buf.size())) {
    const int64_t n = std::min<int64_t>(int64_t(buf.size()), info_.num_tokens - b);
    read_tokens(b, n, buf.data());
    for (int64_t i = 0; i < n; ++i)
      if (buf[size_t(i)] < 0 || buf[size_t(i)] >= vocab_size)
        ASC_FAIL("{}: token {} at position {} is outside the model's vocabulary [0, {})", path_,
                 buf[size_t(i)], b + i, vocab_size);
  }
}

}  // namespace asc
