// builtin_text.h — a named text built into the binary from a data file (data/CMakeLists.txt,
// embed_texts): prompt templates, judge prompts.
#pragma once

namespace asc {
struct BuiltinText {
  const char* name;
  const char* text;
};
}  // namespace asc
