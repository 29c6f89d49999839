#include "data/note_ids.h"

#include <cstdint>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include <xxhash.h>

#include "common/error.h"
#include "common/fs.h"
#include "data/prompt.h"

namespace asc {

std::string stable_note_id(const std::string& file, int64_t record) {
  return std::filesystem::path(file).filename().string() + ":" + std::to_string(record);
}

std::string effective_note_id(const NoteRecord& r, const std::string& file) {
  return r.id.empty() ? stable_note_id(file, r.record) : r.id;
}

uint64_t note_content_xxh64(const std::string& note) {
  const std::string text = strip_newlines(note);
  return XXH64(text.data(), text.size(), 0);
}

std::unordered_set<std::string> read_id_list(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    ASC_FAIL_HINT("give a text file with one note id per line", "--exclude {}: no such file", path);
  std::istringstream in(read_file(path));
  std::unordered_set<std::string> ids;
  for (std::string line; std::getline(in, line);) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const size_t e = line.find_last_not_of(" \t\r");
    ids.insert(line.substr(b, e - b + 1));
  }
  if (ids.empty())
    ASC_FAIL_HINT("one note id per line ('#' starts a comment)", "--exclude {}: holds no ids",
                  path);
  return ids;
}

ExclusionReport exclude_records(std::vector<NoteRecord>* records,
                                std::vector<std::string>* record_files,
                                const std::unordered_set<std::string>& ids) {
  ASC_CHECK(records->size() == record_files->size(), "one file name per record");
  ExclusionReport rep;
  std::unordered_set<std::string> matched;
  size_t kept = 0;
  for (size_t i = 0; i < records->size(); ++i) {
    const std::string id = effective_note_id((*records)[i], (*record_files)[i]);
    if (ids.count(id)) {
      matched.insert(id);
      ++rep.excluded;
      continue;
    }
    if (kept != i) {
      (*records)[kept] = std::move((*records)[i]);
      (*record_files)[kept] = std::move((*record_files)[i]);
    }
    ++kept;
  }
  records->resize(kept);
  record_files->resize(kept);
  for (const auto& id : ids)
    if (!matched.count(id)) rep.unknown.push_back(id);
  std::sort(rep.unknown.begin(), rep.unknown.end());
  return rep;
}

}  // namespace asc
