#include "data/ingest.h"

#include <cstdint>

#include <csv.h>

#include <algorithm>
#include <exception>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/json_limits.h"

namespace asc {
namespace {

const char* kLogical[] = {"id", "note", "question", "answer", "task"};

// Collects good records, applying the bad-record policy in one place.
class Sink {
 public:
  Sink(std::string name, const IngestOptions& o, IngestReport* r)
      : name_(std::move(name)), o_(o), r_(r) {}
  // `where` e.g. "record 12 (line 40)"; `get(logical)` returns the field or nullptr if absent.
  void add(const std::string& where, int64_t record,
           const std::function<const std::string*(const std::string&)>& get) {
    NoteRecord rec;
    rec.record = record;
    std::string problem;
    for (const char* logical : kLogical) {
      const std::string* v = get(logical);
      std::string& dst = logical == std::string("id")         ? rec.id
                         : logical == std::string("note")     ? rec.note
                         : logical == std::string("question") ? rec.question
                         : logical == std::string("answer")   ? rec.answer
                                                              : rec.task;
      if (v) dst = *v;
      if (v && !valid_utf8(*v) && problem.empty())
        problem = std::string("invalid UTF-8 in ") + logical;
      // A NUL is no text (a binary file read as CSV, or a corrupted one); JSON refuses it too.
      if (v && v->find('\0') != std::string::npos && problem.empty())
        problem = std::string("a NUL byte in ") + logical;
    }
    if (problem.empty() && o_.convert_deid) {
      std::string why;
      std::string converted = convert_deid_tags(rec.note, &why);
      if (!why.empty())
        problem = "note: " + why;
      else
        rec.note = std::move(converted);
    }
    if (problem.empty() && trimmed_empty(rec.note)) problem = "empty note";
    if (problem.empty() && o_.require_qa) {
      if (trimmed_empty(rec.question))
        problem = "empty question";
      else if (trimmed_empty(rec.answer))
        problem = "empty answer";
    }
    if (!problem.empty()) return bad(where, problem);
    out_.push_back(std::move(rec));
  }
  void bad(const std::string& where, const std::string& problem) {
    std::string msg = name_ + ": " + where + ": " + problem;
    if (!o_.skip_bad)
      ASC_FAIL_HINT("fix the record or pass --skip-bad to skip and count such records", "{}", msg);
    if (r_) {
      ++r_->skipped;
      if (r_->errors.size() < 10) r_->errors.push_back(msg);
    }
  }
  std::vector<NoteRecord> finish() {
    if (r_) r_->records = int64_t(out_.size());
    return std::move(out_);
  }

 private:
  static bool trimmed_empty(const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
  }
  std::string name_;
  const IngestOptions& o_;
  IngestReport* r_;
  std::vector<NoteRecord> out_;
};

// The released CSV names the note `patient` and the id `patient_id`: used when the logical
// name is absent and not mapped explicitly.
void apply_fallbacks(const IngestOptions& o, const std::function<bool(const std::string&)>& has,
                     IngestOptions* eff) {
  for (auto [logical, alt] :
       {std::pair<const char*, const char*>{"note", "patient"}, {"id", "patient_id"}})
    if (!o.columns.count(logical) && !has(logical) && has(alt)) eff->columns[logical] = alt;
}

std::string column_for(const IngestOptions& o, const std::string& logical) {
  auto it = o.columns.find(logical);
  return it == o.columns.end() ? logical : it->second;
}

// ---- CSV (streamed: each row is handled as libcsv completes it) ----------------------------
struct CsvState {
  const std::string* name;
  const IngestOptions* opts;
  IngestOptions eff;  // opts plus the note <- patient fallback, fixed by the header
  Sink* sink;
  std::vector<std::string> fields, header;
  std::map<std::string, size_t> col;
  int64_t line = 1, row_start_line = 1, record = 0;
  std::string error;          // set by the header check; later rows are ignored
  std::exception_ptr thrown;  // a bad record without skip_bad: rethrown after parsing
};

void csv_field(void* s, size_t n, void* p) {
  auto* st = static_cast<CsvState*>(p);
  if (st->thrown) return;
  try {  // never unwind through libcsv (bad_alloc)
    std::string f = n ? std::string(static_cast<const char*>(s), n) : std::string();
    st->line += std::count(f.begin(), f.end(), '\n');
    st->fields.push_back(std::move(f));
  } catch (...) {
    st->thrown = std::current_exception();
  }
}

void csv_header(CsvState* st) {
  st->header = std::move(st->fields);
  std::map<std::string, size_t> twice;  // a name given to more than one column: its second
  for (size_t i = 0; i < st->header.size(); ++i)
    if (!st->col.emplace(st->header[i], i).second) twice.emplace(st->header[i], i);
  st->eff = *st->opts;
  apply_fallbacks(
      *st->opts, [&](const std::string& c) { return st->col.count(c) > 0; }, &st->eff);
  // A column we read must be unambiguous (pandas would rename the second "note.1").
  for (const char* logical : kLogical) {
    auto it = twice.find(column_for(st->eff, logical));
    if (it != twice.end() && st->error.empty())
      st->error = fmt::format("header names two columns '{}' (columns {} and {})", it->first,
                              st->col.at(it->first) + 1, it->second + 1);
  }
  // An explicit mapping names a column that must exist.
  for (const auto& [logical, column] : st->opts->columns)
    if (!st->col.count(column) && st->error.empty())
      st->error = fmt::format("--column {}={}: the header has no column '{}' (columns: {})",
                              logical, column, column, fmt::join(st->header, ", "));
  for (const char* need : {"note", "question", "answer"}) {
    if (std::string(need) != "note" && !st->opts->require_qa) continue;
    if (!st->col.count(column_for(st->eff, need)) && st->error.empty())
      st->error = fmt::format("header has no column '{}' (columns: {})", column_for(st->eff, need),
                              fmt::join(st->header, ", "));
  }
}

void csv_row_impl(CsvState* st, int terminator);

// libcsv is C: never unwind through it. The first exception is kept and rethrown by parse_csv.
void csv_row(int terminator, void* p) {
  auto* st = static_cast<CsvState*>(p);
  if (st->thrown) return st->fields.clear();
  try {
    csv_row_impl(st, terminator);
  } catch (...) {
    st->thrown = std::current_exception();
  }
}

// With CSV_REPALL_NL, libcsv also reports every newline character outside a record (blank lines,
// the LF of a CRLF) as a call with no fields: that is how line numbers stay exact.
void csv_row_impl(CsvState* st, int terminator) {
  const bool blank = st->fields.empty();
  const int64_t start = st->row_start_line;
  if (terminator == '\n') st->line += 1;  // a CR is followed by a reported LF, or ends the file
  st->row_start_line = st->line;
  if (blank) return;
  if (!st->error.empty()) return st->fields.clear();
  if (st->header.empty()) return csv_header(st);
  std::vector<std::string> row = std::move(st->fields);
  st->fields.clear();
  ++st->record;
  std::string where = fmt::format("record {} (line {})", st->record, start);
  if (row.size() != st->header.size())
    return st->sink->bad(
        where, fmt::format("{} fields but the header has {}", row.size(), st->header.size()));
  st->sink->add(where, st->record, [&](const std::string& logical) -> const std::string* {
    auto it = st->col.find(column_for(st->eff, logical));
    return it == st->col.end() ? nullptr : &row[it->second];
  });
}

int csv_no_space(unsigned char) {
  return 0;
}  // keep spaces at field edges, as pandas does

std::vector<NoteRecord> parse_csv(const std::string& data, const std::string& name,
                                  const IngestOptions& o, IngestReport* report) {
  struct csv_parser p;
  if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0)
    ASC_FAIL("{}: cannot initialise the CSV parser", name);
  csv_set_space_func(&p, csv_no_space);
  Sink sink(name, o, report);
  CsvState st;
  st.name = &name, st.opts = &o, st.sink = &sink;
  size_t done = csv_parse(&p, data.data(), data.size(), csv_field, csv_row, &st);
  int err = csv_error(&p);
  if (done == data.size()) err = csv_fini(&p, csv_field, csv_row, &st) == 0 ? 0 : csv_error(&p);
  csv_free(&p);
  if (st.thrown) std::rethrow_exception(st.thrown);
  if (err != 0 || done != data.size())
    ASC_FAIL("{}: malformed CSV near line {}: {}", name, st.line, csv_strerror(err));
  if (!st.error.empty())
    ASC_FAIL_HINT("map columns with --column LOGICAL=NAME, e.g. --column note=patient", "{}: {}",
                  name, st.error);
  if (st.header.empty()) ASC_FAIL("{}: empty CSV (no header row)", name);
  return sink.finish();
}

// ---- JSON Lines / JSON array ----------------------------------------------------------------
// A field's text: a string (or null: empty); an id may also be an integer, as written. Anything
// else (an object, an array, a boolean, a float) is a bad record, never text to train on.
bool json_text(const nlohmann::json& v, const std::string& logical, std::string* out,
               std::string* why) {
  if (v.is_string()) return *out = v.get<std::string>(), true;
  if (v.is_null()) return out->clear(), true;
  if (logical == "id" && (v.is_number_integer() || v.is_number_unsigned()))
    return *out = v.dump(), true;
  *why = fmt::format("field '{}' is a JSON {}; expected a string{}", logical, v.type_name(),
                     logical == "id" ? " or an integer" : "");
  return false;
}

void add_json(Sink& sink, const nlohmann::json& obj, const std::string& where, int64_t record,
              const IngestOptions& o) {
  if (!obj.is_object()) return sink.bad(where, "not a JSON object");
  IngestOptions eff = o;
  apply_fallbacks(
      o, [&](const std::string& c) { return obj.contains(c); }, &eff);
  if (!obj.contains(column_for(eff, "note")))
    return sink.bad(where, "missing column '" + column_for(eff, "note") + "'");
  if (o.require_qa)
    for (const char* need : {"question", "answer"})
      if (!obj.contains(column_for(eff, need)))
        return sink.bad(where, "missing column '" + column_for(eff, need) + "'");
  std::map<std::string, std::string> vals;
  for (const char* logical : kLogical) {
    std::string c = column_for(eff, logical), why;
    if (obj.contains(c) && !json_text(obj[c], logical, &vals[logical], &why))
      return sink.bad(where, why);
  }
  sink.add(where, record, [&](const std::string& logical) -> const std::string* {
    auto it = vals.find(logical);
    return it == vals.end() ? nullptr : &it->second;
  });
}

std::vector<NoteRecord> parse_jsonl(const std::string& data, const std::string& name,
                                    const IngestOptions& o, IngestReport* report) {
  Sink sink(name, o, report);
  size_t pos = 0;
  int64_t line = 0, record = 0;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    std::string text = data.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? data.size() : nl + 1;
    ++line;
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); }))
      continue;
    ++record;
    std::string where = fmt::format("line {}", line);
    nlohmann::json obj;
    try {
      obj = parse_json_strict(text, "");
    } catch (const nlohmann::json::exception& e) {
      sink.bad(where, std::string("invalid JSON: ") + e.what());
      continue;
    } catch (const Error& e) {  // a duplicate key, or nesting past the bound
      sink.bad(where, e.message());
      continue;
    }
    add_json(sink, obj, where, record, o);
  }
  return sink.finish();
}

std::vector<NoteRecord> parse_json_array(const std::string& data, const std::string& name,
                                         const IngestOptions& o, IngestReport* report) {
  nlohmann::json arr;
  try {
    arr = parse_json_strict(data, name);
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}: invalid JSON: {}", name, e.what());
  }
  if (!arr.is_array()) ASC_FAIL("{}: expected a JSON array of objects", name);
  Sink sink(name, o, report);
  for (size_t i = 0; i < arr.size(); ++i)
    add_json(sink, arr[i], fmt::format("record {}", i + 1), int64_t(i + 1), o);
  return sink.finish();
}

}  // namespace

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0)
      len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
      len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
      len = 4, cp = c & 0x07;
    else
      return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;  // overlong, out of range, surrogate
    i += len;
  }
  return true;
}

std::vector<NoteRecord> parse_note_records(const std::string& data, const std::string& format,
                                           const std::string& name, const IngestOptions& opts,
                                           IngestReport* report) {
  for (const auto& [logical, column] : opts.columns)
    if (std::find(std::begin(kLogical), std::end(kLogical), logical) == std::end(kLogical))
      ASC_FAIL_HINT("map one of: id, note, question, answer, task",
                    "--column {}={}: unknown logical column '{}'", logical, column, logical);
  if (format == "csv") return parse_csv(data, name, opts, report);
  if (format == "jsonl") return parse_jsonl(data, name, opts, report);
  if (format == "json") return parse_json_array(data, name, opts, report);
  ASC_FAIL("{}: unknown format '{}' (csv, jsonl, json)", name, format);
}

std::string note_format_of(const std::string& path) {
  auto ends = [&](const char* ext) {
    std::string e = ext;
    return path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".csv")) return "csv";
  if (ends(".jsonl") || ends(".ndjson")) return "jsonl";
  if (ends(".json")) return "json";
  ASC_FAIL("{}: unknown file type (expected .csv, .jsonl, .ndjson or .json)", path);
}

std::vector<NoteRecord> read_note_records(const std::string& path, const IngestOptions& opts,
                                          IngestReport* report) {
  return parse_note_records(read_file(path), note_format_of(path), path, opts, report);
}

namespace {
// Upstream's table, in its order: the first category the placeholder's text names wins.
const std::pair<const char*, const char*> kDeidTags[] = {{"First Name", "[Name]"},
                                                         {"Last Name", "[Name]"},
                                                         {"Clip Number (Radiology)", "[Reg#]"},
                                                         {"Hospital", "[Company]"},
                                                         {"Numeric Identifier", "[Reg#]"},
                                                         {"Location", "[LOC]"},
                                                         {"Initials", "[Name]"},
                                                         {"Known lastname", "[Name]"},
                                                         {"Known firstname", "[Name]"},
                                                         {"Age over 90", "[Age]"},
                                                         {"Medical Record Number", "[Reg#]"},
                                                         {"Telephone/Fax", "[#]"},
                                                         {"Name", "[Name]"},
                                                         {"Street Address", "[LOC]"},
                                                         {"Date Range", "[DR]"},
                                                         {"Date range", "[DR]"},
                                                         {"Serial Number", "[#]"},
                                                         {"Social Security Number", "[#]"},
                                                         {"State", "[State]"},
                                                         {"E-mail address", "[CI]"},
                                                         {"Company", "[Company]"},
                                                         {"Pager number", "[#]"},
                                                         {"Country", "[Country]"},
                                                         {"MD Number", "[Reg#]"},
                                                         {"Wardname", "[LOC]"},
                                                         {"College", "[Company]"},
                                                         {"Apartment Address", "[LOC]"},
                                                         {"URL", "[URL]"},
                                                         {"CC Contact Info", "[CI]"},
                                                         {"Attending Info", "[CI]"},
                                                         {"Job Number", "[Reg#]"},
                                                         {"Year", "[YR]"},
                                                         {"Month", "[MO]"},
                                                         {"Day", "[DAY]"},
                                                         {"Holiday", "[DAY]"},
                                                         {"Unit Number", "[Reg#]"},
                                                         {"PO Box", "[LOC]"},
                                                         {"Dictator Info", "[CI]"},
                                                         {"Provider Number", "[#]"}};

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// One placeholder's text -> its replacement; false when of no known kind.
bool deid_tag(const std::string& t, std::string* out) {
  for (const auto& [name, tag] : kDeidTags) {
    std::string lower = name;
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (t.find(name) != std::string::npos || t.find(lower) != std::string::npos) {
      *out = tag;
      return true;
    }
  }
  if (std::count(t.begin(), t.end(), '-') == 2) return *out = t, true;  // a date
  const size_t b = t.find_first_not_of(" \t\r\n"), e = t.find_last_not_of(" \t\r\n");
  const std::string trimmed = b == std::string::npos ? "" : t.substr(b, e - b + 1);
  if (all_digits(trimmed)) return *out = "[Reg#]", true;
  std::string no_sep;
  for (char c : t)
    if (c != '-' && c != '/') no_sep += c;
  if (all_digits(no_sep)) return *out = t, true;
  for (const char* m : {"January", "February", "March", "April", "May", "June", "July", "August",
                        "September", "October", "November", "December"})
    if (t.find(m) != std::string::npos) return *out = t, true;
  if (trimmed.empty()) return *out = "", true;
  return false;
}
}  // namespace

std::string convert_deid_tags(const std::string& text, std::string* why) {
  std::vector<std::string> pieces;
  size_t last = 0, from = 0;
  for (size_t at; (at = text.find("[**", from)) != std::string::npos;) {
    const size_t end = text.find("**]", at + 3);
    if (end == std::string::npos) break;  // upstream's regex needs the closing "**]"
    const std::string inner = text.substr(at + 3, end - at - 3);
    if (inner.find('\n') != std::string::npos) {  // its "." does not cross a line
      from = at + 1;
      continue;
    }
    std::string tag;
    if (!deid_tag(inner, &tag)) {
      *why = "de-identification placeholder \"[**" + inner.substr(0, 60) + "**]\" of no known kind";
      return "";
    }
    pieces.push_back(text.substr(last, at - last));
    pieces.push_back(tag);
    last = from = end + 3;
  }
  pieces.push_back(text.substr(last));
  std::string out;
  for (const auto& p : pieces) {
    if (p.empty()) continue;  // upstream: " ".join(non-empty pieces)
    if (!out.empty()) out += ' ';
    out += p;
  }
  return out;
}
}  // namespace asc
