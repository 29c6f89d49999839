// strings.h — small string helpers shared by the parsers (edit distance for "did you mean").
#pragma once

#include <string>
#include <vector>

namespace asc {

// Levenshtein distance (insert/delete/substitute, cost 1 each).
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word`, or "" when none is reasonably close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace asc
