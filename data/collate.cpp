#include "data/collate.h"

#include <cstdint>

#include <algorithm>

#include "common/error.h"

namespace asc {
namespace {
Rows make(int64_t rows, int64_t len, int32_t pad_id) {
  Rows r;
  r.rows = rows, r.len = len;
  const size_t n = size_t(rows * len);
  r.ids.assign(n, pad_id);
  r.labels.assign(n, -100);
  r.positions.assign(n, 0);
  r.segments.assign(n, 0);  // 0 = padding (attends only to padding: no empty attention rows)
  r.visible.assign(n, 1);
  return r;
}
void place(Rows& r, int64_t row, int64_t offset, const Example& e, int64_t segment) {
  for (size_t i = 0; i < e.ids.size(); ++i) {
    const size_t at = size_t(row * r.len + offset) + i;
    r.ids[at] = e.ids[i];
    // An example's first token is never a target: nothing of the same example precedes it (in a
    // packed row the previous token belongs to another example; in a padded row it is shifted out).
    r.labels[at] = (i > 0 && e.mask[i]) ? e.ids[i] : -100;
    r.positions[at] = int64_t(i);
    r.segments[at] = segment;
  }
}
}  // namespace

Rows collate_padded(const std::vector<Example>& examples, int32_t pad_id, int32_t hidden_id) {
  int64_t len = 1;
  for (const auto& e : examples) len = std::max<int64_t>(len, int64_t(e.ids.size()));
  Rows r = make(int64_t(examples.size()), len, pad_id);
  for (size_t k = 0; k < examples.size(); ++k) {
    place(r, int64_t(k), 0, examples[k], 1);
    if (hidden_id < 0) continue;
    for (size_t i = 0; i < examples[k].ids.size(); ++i)
      if (examples[k].ids[i] == hidden_id) r.visible[size_t(int64_t(k) * len) + i] = 0;
  }
  return r;
}

Rows collate_packed(const std::vector<Example>& examples, int64_t row_len, int32_t pad_id) {
  // Rows first (sizes only), then fill.
  std::vector<std::pair<int64_t, int64_t>> where;  // (row, offset) per example
  int64_t row = 0, used = 0;
  for (const auto& e : examples) {
    const int64_t n = int64_t(e.ids.size());
    if (n > row_len)
      ASC_FAIL("an example of {} tokens does not fit a packed row of data.seq_len {}", n, row_len);
    if (used + n > row_len) ++row, used = 0;
    where.emplace_back(row, used);
    used += n;
  }
  Rows r = make(examples.empty() ? 0 : row + 1, row_len, pad_id);
  for (size_t k = 0; k < examples.size(); ++k)
    place(r, where[k].first, where[k].second, examples[k], int64_t(k) + 1);
  return r;
}

}  // namespace asc
