// ingest.h — Asclepius data files in: CSV (RFC 4180, via libcsv: quoted fields with commas,
// quotes and newlines inside), JSON Lines, or one JSON array of objects. Columns `note`,
// `question`, `answer`, `task` and an id; a column mapping because the released CSV's card calls
// the note column `patient` (when `note` is absent and `patient` present, that is used).
//
// Errors name the file, the record (and line where the format has lines) and the problem:
// missing column, invalid UTF-8, empty note. With skip_bad such records are skipped and counted;
// nothing is skipped silently. No libtorch (fuzzed on its own).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace asc {

struct NoteRecord {
  std::string id, note, question, answer, task;
  int64_t record = 0;  // 1-based record number in the file
};

struct IngestOptions {
  // Logical column -> column name in the file ("note" -> "patient"). Unset: identity, with the
  // note falling back to "patient" and the id to "patient_id" (the released CSV's names).
  std::map<std::string, std::string> columns;
  bool require_qa = false;  // instruct data: question and answer must be present and non-empty
  bool skip_bad = false;
  // MIMIC-style de-identification placeholders in the note ("[**Last Name**]", "[**2101-10-20**]")
  // converted as upstream's convert_deid_tag.py does (convert_deid_tags below).
  bool convert_deid = false;
};

// Upstream's convert_deid_tag.py (after Clinical-T5): each "[** ... **]" becomes a tag by the
// first category its text names ("Last Name" -> "[Name]", "Hospital" -> "[Company]", ...), or
// stays as its inner text when it is a date (three "-" parts, digits with "-" or "/", a month
// name), "[Reg#]" when all digits, "" when blank; and the pieces are joined with single spaces
// around each placeholder, as upstream joins them. A placeholder of no known kind fills `why`
// (upstream raises) and returns "".
std::string convert_deid_tags(const std::string& text, std::string* why);

struct IngestReport {
  int64_t records = 0;  // good records delivered
  int64_t skipped = 0;
  std::vector<std::string> errors;  // the first few skipped records' messages
};

// Reads `path` (.csv, .jsonl / .ndjson, .json by extension). Throws asc::Error on the first bad
// record unless opts.skip_bad.
std::vector<NoteRecord> read_note_records(const std::string& path, const IngestOptions& opts,
                                          IngestReport* report = nullptr);
// Same from memory, `format` one of "csv", "jsonl", "json" (tests, fuzzing).
std::vector<NoteRecord> parse_note_records(const std::string& data, const std::string& format,
                                           const std::string& name, const IngestOptions& opts,
                                           IngestReport* report = nullptr);
bool valid_utf8(const std::string& s);
// "csv", "jsonl" or "json" from the file name; throws naming the file for anything else.
std::string note_format_of(const std::string& path);

}  // namespace asc
