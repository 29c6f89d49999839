// libFuzzer target: CSV, JSON Lines and JSON-array ingest. Any bytes give records or an
// asc::Error, never a crash. The first byte picks the format and the options.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "data/ingest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* formats[] = {"csv", "jsonl", "json"};
  const uint8_t sel = data[0];
  asc::IngestOptions o;
  o.skip_bad = sel & 4;
  o.require_qa = sel & 8;
  if (sel & 16) o.columns["note"] = "patient";
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    asc::IngestReport rep;
    auto recs = asc::parse_note_records(text, formats[sel % 3], "fuzz", o, &rep);
    if (int64_t(recs.size()) != rep.records) __builtin_trap();
  } catch (const asc::Error&) {
  }
  return 0;
}
