#include "data/prompt.h"

#include <filesystem>
#include <map>

#include <xxhash.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "data/prompts_builtin.h"  // generated from data/prompts/*.txt

namespace asc {

namespace {
size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

PromptTemplate make(const std::string& name, const std::string& text, const std::string& where) {
  for (const char* ph : {"{note}", "{question}"})
    if (count_of(text, ph) != 1)
      ASC_FAIL_HINT("a template holds {note} and {question} once each (data/prompts/README.md)",
                    "{}: prompt template {} holds {} {} placeholders, not one", where, name,
                    count_of(text, ph), ph);
  return {name, text, fmt::format("{:016x}", XXH64(text.data(), text.size(), 0))};
}
}  // namespace

std::string strip_newlines(const std::string& s, const char* chars) {
  size_t b = s.find_first_not_of(chars), e = s.find_last_not_of(chars);
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::string PromptTemplate::render(const std::string& note, const std::string& question,
                                   const char* strip) const {
  const size_t n = text.find("{note}"), q = text.find("{question}");
  const std::string nn = strip_newlines(note, strip), qq = strip_newlines(question, strip);
  if (n < q)
    return text.substr(0, n) + nn + text.substr(n + 6, q - n - 6) + qq + text.substr(q + 10);
  return text.substr(0, q) + qq + text.substr(q + 10, n - q - 10) + nn + text.substr(n + 6);
}

PromptTemplate PromptTemplate::from_text(const std::string& name, const std::string& text,
                                         const std::string& where) {
  return make(name, text, where);
}

std::vector<std::string> builtin_prompt_names() {
  std::vector<std::string> names;
  for (const auto& p : kBuiltinPrompts) names.push_back(p.name);
  return names;
}

PromptTemplate PromptTemplate::builtin(const std::string& name) {
  for (const auto& p : kBuiltinPrompts)
    if (name == p.name) return make(name, p.text, "data/prompts/" + name + ".txt");
  const std::string near = closest_match(name, builtin_prompt_names());
  ASC_FAIL_HINT(near.empty() ? "" : "did you mean " + near + "?",
                "unknown prompt template '{}' (built in: {})", name,
                fmt::join(builtin_prompt_names(), ", "));
}

PromptTemplate PromptTemplate::resolve(const std::string& v, const std::string& where) {
  for (const auto& p : kBuiltinPrompts)
    if (v == p.name) return builtin(v);
  if (!std::filesystem::is_regular_file(v)) {
    const std::string near = closest_match(v, builtin_prompt_names());
    ASC_FAIL_HINT(
        near.empty() ? "a built-in name or a template file" : "did you mean " + near + "?",
        "{}: prompt template '{}' is neither built in ({}) nor a file", where, v,
        fmt::join(builtin_prompt_names(), ", "));
  }
  return make(v, read_file(v), where);
}

}  // namespace asc
