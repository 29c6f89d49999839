// strings.h — small string helpers shared by the parsers (edit distance for "did you mean").
#pragma once

#include <string>
#include <vector>

namespace asc {

// Levenshtein distance (insert/delete/substitute, cost 1 each).
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word`, or "" when none is reasonably close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
// The longest prefix of s of at most n bytes that does not split a UTF-8 character.
std::string utf8_prefix(const std::string& s, size_t n);
// s for a message: bytes outside printable ASCII as \xNN, cut after n bytes with "...".
std::string printable(const std::string& s, size_t n);

}  // namespace asc
