// libFuzzer target: JSON nesting depth. Every JSON reader of ours that takes untrusted text and
// needs no libtorch — note ingest (JSON Lines, JSON array), answer scoring (eval qa) and
// config.json (parsed as read_hf_config parses it, then llama_config_from_hf_json) — given any
// bytes, or the bytes wrapped in nesting built from the input's length (100,000+ levels for part
// of the inputs), returns or throws asc::Error: never a stack overflow, a crash, a leak or
// another exception type.
//
// The first byte picks: bits 0-1 the wrapping (none, `[[[`, `{"note":{"a":{"a":`, a config key
// holding `[[[` in an otherwise valid config.json), bits 2-4 the config key, bit 5 whether the
// brackets are closed, bits 6-7 both set with a size divisible by 4 a deep nesting (100,000+
// levels; one wrapped input in 16, as they are slow), else a shallow one (around the 512-level
// bound). The last byte picks skip_bad (bit 0) and eval qa's --model-name (bit 1). The rest of
// the input is the innermost value.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_limits.h"
#include "data/ingest.h"
#include "data/qa_score.h"
#include "model/llama_config.h"

namespace {

std::string wrap(uint8_t sel, size_t size, const std::string& payload) {
  static const char* keys[] = {"rope_scaling", "eos_token_id", "hidden_act", "hidden_size",
                               "rms_norm_eps", "torch_dtype",  "answer",     "note"};
  const int shape = sel & 3;
  if (shape == 0) return payload;
  const bool deep = (sel & 192) == 192 && size % 4 == 0;
  const size_t depth = deep ? 100000 + (size * 37) % 100000 : (size * 7) % 1100;
  const bool close = sel & 32;
  std::string open, unit, end;
  if (shape == 1) {
    unit = "[", end = "]";
  } else if (shape == 2) {
    open = "{\"note\":", unit = "{\"a\":", end = "}";
  } else {
    // A config.json valid up to the key, so the reader gets as far as that key's value.
    open = std::string(
               "{\"vocab_size\":32,\"hidden_size\":64,\"intermediate_size\":128,"
               "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"") +
           keys[(sel >> 2) & 7] + "\":";
    unit = "[", end = "]";
  }
  std::string s;
  s.reserve(open.size() + depth * (unit.size() + end.size()) + payload.size() + 2);
  s += open;
  for (size_t i = 0; i < depth; ++i) s += unit;
  s += payload.empty() ? "1" : payload;
  if (close) {
    for (size_t i = 0; i < depth; ++i) s += end;
    if (!open.empty()) s += "}";
  }
  return s;
}

template <typename F>
void expect_asc_error_only(F&& f) {
  try {
    f();
  } catch (const asc::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const std::string text =
      wrap(sel, size, std::string(reinterpret_cast<const char*>(data + 1), size - 1));

  asc::IngestOptions o;
  o.skip_bad = data[size - 1] & 1;
  expect_asc_error_only([&] {
    asc::IngestReport rep;
    auto recs = asc::parse_note_records(text, "jsonl", "fuzz.jsonl", o, &rep);
    if (int64_t(recs.size()) != rep.records) __builtin_trap();
  });
  expect_asc_error_only([&] {
    asc::IngestReport rep;
    auto recs = asc::parse_note_records("[" + text + "]", "json", "fuzz.json", o, &rep);
    if (int64_t(recs.size()) != rep.records) __builtin_trap();
  });
  expect_asc_error_only([&] { (void)asc::parse_note_records(text, "json", "fuzz.json", o); });
  expect_asc_error_only([&] {
    asc::QaScores s = asc::score_answers(text, "fuzz.jsonl", (data[size - 1] & 2) ? "m" : "");
    (void)asc::qa_scores_json(s);
  });
  // config.json as trainer/checkpoint/hf_io.cpp read_hf_config reads it.
  expect_asc_error_only([&] {
    nlohmann::json j;
    try {
      j = asc::parse_json_bounded(text, "fuzz/config.json");
    } catch (const nlohmann::json::exception& e) {
      ASC_FAIL("fuzz/config.json: malformed JSON: {}", e.what());
    }
    (void)asc::llama_config_from_hf_json(j, "fuzz/config.json");
  });
  return 0;
}
