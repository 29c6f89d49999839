// json_limits.h — a bound on the nesting depth of JSON read from users' files.
//
// nlohmann::json parses and destroys a document without recursion, but its serializer (dump()),
// copies and comparisons recurse once per level: a value nested 100,000 levels deep (a 200 KB
// config.json) overflowed the stack when an error message dumped it (issue 23,
// tests/fuzz/fuzz_json_depth.cpp). JSON that reaches such code is parsed with
// parse_json_bounded, which refuses a document nested too deep while parsing, before anything
// recurses over it. Header-only: common/ links no JSON library.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace asc {

// Far above any file we read (a Hugging Face config.json nests 3 levels).
constexpr int kMaxJsonDepth = 512;

// nlohmann::json::parse(text), except that a document with more than max_depth arrays/objects
// nested in one another throws asc::Error "<where>: JSON nested deeper than <max_depth> levels".
// Invalid JSON still throws nlohmann::json::parse_error, as parse does.
inline nlohmann::json parse_json_bounded(const std::string& text, const std::string& where,
                                         int max_depth = kMaxJsonDepth) {
  using Event = nlohmann::json::parse_event_t;
  return nlohmann::json::parse(text, [&](int depth, Event ev, nlohmann::json&) {
    // `depth`: how many arrays/objects are open around the one starting here.
    if ((ev == Event::object_start || ev == Event::array_start) && depth >= max_depth)
      ASC_FAIL("{}: JSON nested deeper than {} levels", where, max_depth);
    return true;
  });
}

// parse_json_bounded that also refuses an object naming a key twice (nlohmann keeps the last
// one silently: {"note":"one","note":"two"} would train on "two" without a word). The error is
// "<where>: duplicate key 'K'" ("duplicate key 'K'" when `where` is empty).
inline nlohmann::json parse_json_strict(const std::string& text, const std::string& where,
                                        int max_depth = kMaxJsonDepth) {
  using Event = nlohmann::json::parse_event_t;
  const std::string at = where.empty() ? "" : where + ": ";
  std::vector<std::set<std::string>> keys;  // one set per open object
  return nlohmann::json::parse(text, [&](int depth, Event ev, nlohmann::json& parsed) {
    if ((ev == Event::object_start || ev == Event::array_start) && depth >= max_depth)
      ASC_FAIL("{}JSON nested deeper than {} levels", at, max_depth);
    if (ev == Event::object_start) {
      keys.emplace_back();
    } else if (ev == Event::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == Event::key && !keys.empty() && parsed.is_string() &&
               !keys.back().insert(parsed.get<std::string>()).second) {
      ASC_FAIL("{}duplicate key '{}'", at, parsed.get<std::string>());
    }
    return true;
  });
}

}  // namespace asc
