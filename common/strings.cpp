#include "common/strings.h"

#include <cstdint>

#include <algorithm>

namespace asc {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX, best_tie = SIZE_MAX;
  for (const auto& c : candidates) {
    // A prefix ("warmup" of "warmup_ratio") is a strong hint even when the distance is large;
    // among equal scores the smaller true edit distance wins ("lr_scheduler_type" suggests
    // "lr_schedule", not "lr").
    const size_t dist = edit_distance(word, c);
    const size_t d = (c.rfind(word, 0) == 0 || word.rfind(c, 0) == 0) ? 1 : dist;
    if (d < best_d || (d == best_d && dist < best_tie)) best_d = d, best_tie = dist, best = c;
  }
  size_t limit = std::max<size_t>(2, word.size() / 2);
  return best_d <= limit ? best : std::string();
}

std::string utf8_prefix(const std::string& s, size_t n) {
  if (n >= s.size()) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}
std::string printable(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > n) out += "...";
  return out;
}

}  // namespace asc
