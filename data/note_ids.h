// note_ids.h — the identity of a note in a corpus (provenance, docs/provenance.md): its id and a
// content hash, and the removal of notes by id (`corpus build --exclude ids.txt`). No libtorch.
//
// A note's id is its record's id column (`id`, or `patient_id` in the released CSV; mapped with
// --column id=NAME). A record without one (no such column, or an empty field) gets the stable id
// "FILE:RECORD": the input file's name (without its directory) and the 1-based record number in
// that file, which does not change when other records are removed or the notes are reshuffled.
// The content hash is the XXH64 (seed 0) of the note text as tokenised: after de-identification
// conversion and with leading/trailing newlines stripped.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "data/ingest.h"

namespace asc {

// How a corpus's note ids were made (the corpus attribute note_id_rule).
constexpr const char* kNoteIdRule = "id column, else FILE:RECORD (1-based record of that input)";

// "notes.csv:17" for record 17 of /data/notes.csv.
std::string stable_note_id(const std::string& file, int64_t record);
// The id provenance knows a record by: its id, else stable_note_id(file, record.record).
std::string effective_note_id(const NoteRecord& r, const std::string& file);
// XXH64 of the note text as tokenised (strip_newlines).
uint64_t note_content_xxh64(const std::string& note);

// An exclusion list: one id per line; surrounding spaces (and a trailing \r) trimmed; blank lines
// and lines starting with '#' ignored. Throws naming the file when it is unreadable or empty.
std::unordered_set<std::string> read_id_list(const std::string& path);

struct ExclusionReport {
  int64_t excluded = 0;              // records removed
  std::vector<std::string> unknown;  // ids of the list that matched no record (sorted)
};
// Removes the records whose effective id is in `ids` (records[i] came from the input
// record_files[i]).
ExclusionReport exclude_records(std::vector<NoteRecord>* records,
                                std::vector<std::string>* record_files,
                                const std::unordered_set<std::string>& ids);

}  // namespace asc
