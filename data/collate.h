// collate.h — instruction examples (tokens + loss mask) into training rows, two ways:
//   padded: one example per row, right-padded with pad_id to the longest example of the group
//           (the Asclepius / Hugging Face behaviour);
//   packed: examples laid end to end into rows of row_len tokens (in order, a new row when the
//           next one does not fit), with per-token positions restarting at 0 and segment ids
//           so attention stays inside each example (see trainer/model/llama.h, Packing).
// Labels are the token where the mask is 1 (answer and EOS) and -100 elsewhere (prompt, padding,
// and every example's first token, which nothing of its own example precedes); the model shifts
// them (position t predicts label t+1). No libtorch.
#pragma once

#include <cstdint>
#include <vector>

namespace asc {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};

struct Rows {
  int64_t rows = 0, len = 0;  // every vector is rows × len, row-major
  std::vector<int64_t> ids, labels, positions, segments;
  std::vector<int64_t> visible;  // 1, or 0 for a key no token may attend to (hidden_id)
};

// hidden_id >= 0 (upstream's collator, data.upstream_compat): its attention_mask is
// input_ids != pad with pad = BOS, so no token attends to a BOS: tokens with that id get
// visible = 0 (the model's Packing::key_visible_BT).
Rows collate_padded(const std::vector<Example>& examples, int32_t pad_id, int32_t hidden_id = -1);
// Throws asc::Error when an example is longer than row_len.
Rows collate_packed(const std::vector<Example>& examples, int64_t row_len, int32_t pad_id);

}  // namespace asc
