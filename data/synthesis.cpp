#include "data/synthesis.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "data/synthesis_builtin.h"  // generated from data/synthesis/*.txt

namespace asc {

namespace {

std::string hex64(const std::string& s) {
  return fmt::format("{:016x}", XXH64(s.data(), s.size(), 0));
}

// The built-in `<stage>-<name>` text, or a file's; `resolved` gets the name to record.
std::string builtin_or_file(const std::string& v, const std::string& stage,
                            const std::string& where) {
  std::vector<std::string> names;
  const std::string prefix = stage + "-";
  for (const auto& b : kBuiltinSynthesis) {
    const std::string n = b.name;
    if (n.rfind(prefix, 0) != 0) continue;
    if (n.substr(prefix.size()) == v) return b.text;
    names.push_back(n.substr(prefix.size()));
  }
  if (!std::filesystem::is_regular_file(v)) {
    const std::string near = closest_match(v, names);
    ASC_FAIL_HINT(near.empty() ? "a built-in name or a file (data/synthesis/README.md)"
                               : "did you mean " + near + "?",
                  "{}: '{}' is neither a built-in {} text ({}) nor a file", where, v, stage,
                  fmt::join(names, ", "));
  }
  return read_file(v);
}

bool is_name(const std::string& f) {
  if (f.empty() || std::isdigit(static_cast<unsigned char>(f[0]))) return false;
  return std::all_of(f.begin(), f.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

}  // namespace

std::vector<std::string> template_fields(const std::string& t, const std::string& where) {
  std::vector<std::string> fields;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '}') {
      ASC_CHECK(i + 1 < t.size() && t[i + 1] == '}',
                "{}: a lone '}}' at byte {} (write '}}}}' for a literal brace)", where, i);
      ++i;
    } else if (t[i] == '{') {
      if (i + 1 < t.size() && t[i + 1] == '{') {
        ++i;
        continue;
      }
      const size_t e = t.find('}', i);
      ASC_CHECK(e != std::string::npos, "{}: a '{{' at byte {} is never closed", where, i);
      const std::string f = t.substr(i + 1, e - i - 1);
      ASC_CHECK(is_name(f), "{}: placeholder '{{{}}}' at byte {} is not a plain name", where, f, i);
      fields.push_back(f);
      i = e;
    }
  }
  return fields;
}

SynthPrompt SynthPrompt::resolve(const std::string& v, const std::string& stage,
                                 const std::vector<std::string>& fields, const std::string& where) {
  SynthPrompt p{v, builtin_or_file(v, stage, where), ""};
  p.xxh64 = hex64(p.text);
  const std::string what = fmt::format("{} {}", where, v);
  const auto found = template_fields(p.text, what);
  for (const auto& f : fields)
    if (std::find(found.begin(), found.end(), f) == found.end())
      ASC_FAIL_HINT(fmt::format("a {} prompt holds {}", stage, fmt::join(fields, ", ")),
                    "{}: the prompt has no {{{}}} placeholder", what, f);
  for (const auto& f : found)
    if (std::find(fields.begin(), fields.end(), f) == fields.end())
      ASC_FAIL_HINT(fmt::format("a {} prompt holds only {}", stage, fmt::join(fields, ", ")),
                    "{}: unknown placeholder {{{}}}", what, f);
  return p;
}

std::string SynthPrompt::fill(const std::map<std::string, std::string>& values) const {
  std::string out;
  const std::string& t = text;
  for (size_t i = 0; i < t.size(); ++i) {
    if ((t[i] == '{' || t[i] == '}') && i + 1 < t.size() && t[i + 1] == t[i]) {
      out += t[i++];
    } else if (t[i] == '{') {
      const size_t e = t.find('}', i);
      out += values.at(t.substr(i + 1, e - i - 1));  // resolve() checked every field
      i = e;
    } else {
      out += t[i];
    }
  }
  return out;
}

std::vector<SynthTask> load_synth_tasks(const std::string& v, std::string* xxh64) {
  const std::string text = builtin_or_file(v, "tasks", "--tasks");
  if (xxh64) *xxh64 = hex64(text);
  std::vector<SynthTask> tasks;
  std::istringstream in(text);
  int64_t n = 0;
  for (std::string l; std::getline(in, l);) {
    ++n;
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (l.rfind("# ", 0) == 0) {
      tasks.push_back({l.substr(2), {}});
      ASC_CHECK(!tasks.back().name.empty(), "--tasks {} line {}: a task without a name", v, n);
    } else if (l.find_first_not_of(" \t") != std::string::npos) {
      ASC_CHECK(!tasks.empty(), "--tasks {} line {}: a sample question before any '# Task' line", v,
                n);
      tasks.back().samples.push_back(l);
    }
  }
  ASC_CHECK(!tasks.empty(), "--tasks {}: no task ('# Task name' lines)", v);
  for (const auto& t : tasks)
    ASC_CHECK(t.samples.size() >= 3,
              "--tasks {}: task '{}' has {} example question(s); the question prompt shows 3", v,
              t.name, t.samples.size());
  return tasks;
}

uint64_t SynthRng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

size_t SynthRng::below(size_t n) {  // rejection: no modulo bias
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;)
    if (const uint64_t x = next(); x < limit) return size_t(x % n);
}

std::vector<size_t> SynthRng::sample(size_t n, size_t k) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  for (size_t i = 0; i < k; ++i) std::swap(idx[i], idx[i + below(n - i)]);
  idx.resize(k);
  return idx;
}

std::vector<std::string> draw_examples(const SynthTask& task, const std::vector<std::string>& pool,
                                       uint64_t seed) {
  SynthRng rng(seed);
  std::vector<std::string> out;
  for (size_t i : rng.sample(task.samples.size(), 3)) out.push_back(task.samples[i]);
  for (size_t i : rng.sample(pool.size(), std::min<size_t>(2, pool.size()))) out.push_back(pool[i]);
  return out;
}

std::string tidy_reply(const std::string& reply) {
  const char* ws = " \t\r\n";
  const size_t b = reply.find_first_not_of(ws);
  return b == std::string::npos ? std::string()
                                : reply.substr(b, reply.find_last_not_of(ws) - b + 1);
}

std::string upstream_filter_reason(const std::string& note, const std::string& question,
                                   const std::string& answer) {
  std::string all = note + "\n" + question + "\n" + answer;
  for (char& c : all) c = char(std::tolower(static_cast<unsigned char>(c)));
  // make_instruction_dataset.py's pattern, lower case.
  static const char* const phrases[] = {"ai language",
                                        "language model",
                                        "clinical language",
                                        "recognition model",
                                        "extraction model",
                                        "the model",
                                        "summarization model",
                                        "clinical model",
                                        "generation model",
                                        "ai model",
                                        "ner model"};
  for (const char* p : phrases)
    if (all.find(p) != std::string::npos) return "self_reference";
  const size_t last = answer.find_last_not_of(" \t\r\n");
  return last != std::string::npos && answer[last] == '?' ? "question_mark" : "";
}

}  // namespace asc
