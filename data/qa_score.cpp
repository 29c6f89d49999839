// qa_score.cpp — SQuAD EM/F1 and ROUGE-L of generated answers, and the JSON Lines answer files
// they are read from (see qa_score.h for the exact definitions and the non-ASCII caveats).
#include "data/qa_score.h"

#include <algorithm>
#include <cctype>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"

namespace asc {
namespace {

// ---- characters ------------------------------------------------------------------------------
// One code point of UTF-8 text at s[i], advancing i. Invalid bytes come back one at a time as
// U+FFFD (answers read through nlohmann::json are valid UTF-8 already).
char32_t next_code_point(const std::string& s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  const int len = b0 < 0x80         ? 1
                  : (b0 >> 5) == 6  ? 2
                  : (b0 >> 4) == 14 ? 3
                  : (b0 >> 3) == 30 ? 4
                                    : 0;
  if (len == 0 || i + len > s.size()) return ++i, U'\uFFFD';
  char32_t cp = len == 1 ? b0 : b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b >> 6) != 2) return ++i, U'\uFFFD';
    cp = (cp << 6) | (b & 0x3F);
  }
  i += len;
  return cp;
}

bool ascii_punct(unsigned char c) {  // Python's string.punctuation
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}

// Python's str.isspace() (what str.split() splits on).
bool py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Non-ASCII code points that are not word characters for Python's re \b, exact within these
// blocks: Latin-1 signs, combining accents, general punctuation, currency, arrows/math/technical,
// box drawing to dingbats, supplemental punctuation, CJK, vertical and full-width punctuation,
// tiles/cards/emoji. Elsewhere non-ASCII counts as a letter (qa_score.h).
constexpr std::pair<char32_t, char32_t> kNonWord[] = {
    {0x80, 0xA9},     {0xAB, 0xB1},     {0xB4, 0xB4},     {0xB6, 0xB8},       {0xBB, 0xBB},
    {0xBF, 0xBF},     {0xD7, 0xD7},     {0xF7, 0xF7},     {0x300, 0x36F},     {0x1680, 0x1680},
    {0x2000, 0x206F}, {0x20A0, 0x20CF}, {0x2190, 0x23FF}, {0x2500, 0x2775},   {0x2794, 0x27BF},
    {0x2E00, 0x2E2E}, {0x2E30, 0x2E7F}, {0x3000, 0x3004}, {0x3008, 0x3020},   {0x302A, 0x3030},
    {0x3036, 0x3037}, {0x303D, 0x303F}, {0xFE10, 0xFE1F}, {0xFE30, 0xFE4F},   {0xFF00, 0xFF0F},
    {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, {0x1F000, 0x1F0FF}, {0x1F10D, 0x1FAFF}};

bool py_word(char32_t c) {
  if (c < 0x80) return std::isalnum(static_cast<int>(c)) || c == '_';
  for (const auto& [lo, hi] : kNonWord)
    if (c >= lo && c <= hi) return false;
  return true;
}

// Python's str.split(): tokens between runs of white space.
std::vector<std::string> split_py_space(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    if (py_space(next_code_point(s, i))) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.append(s, start, i - start);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// re.sub(r'\b(a|an|the)\b', ' ', s): a match is a maximal run of word characters spelling one of
// the articles, so runs are cut and compared whole.
std::string replace_articles(const std::string& s) {
  std::string out, word;
  auto flush = [&] {
    out += (word == "a" || word == "an" || word == "the") ? std::string(" ") : word;
    word.clear();
  };
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    if (py_word(next_code_point(s, i))) {
      word.append(s, start, i - start);
    } else {
      flush();
      out.append(s, start, i - start);
    }
  }
  flush();
  return out;
}

// ---- answer files ----------------------------------------------------------------------------
// Calls fn(line_number, text) for each line that is not blank.
template <typename Fn>
void for_each_line(const std::string& data, Fn fn) {
  int64_t line = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    const std::string text = data.substr(pos, nl - pos);
    pos = nl + 1;
    ++line;
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); }))
      continue;
    if (!fn(line, text)) return;
  }
}

std::vector<std::string> prediction_candidates(const nlohmann::json& obj) {
  static const std::string kSuffix = "_answer";
  std::vector<std::string> out;
  for (const auto& [key, value] : obj.items())
    if (key != "answer" && key.size() >= kSuffix.size() &&
        key.compare(key.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
      out.push_back(key);
  return out;
}

nlohmann::json parse_or_null(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// The string in obj[key], or `fallback` when an optional field is missing or null. A missing
// required field or a non-string value sets *problem unless it already holds one.
std::string string_field(const nlohmann::json& obj, const std::string& key, bool optional,
                         const std::string& fallback, std::string* problem) {
  auto it = obj.find(key);
  if (it != obj.end() && it->is_string()) return it->get<std::string>();
  const bool absent = it == obj.end() || it->is_null();
  if (problem->empty() && !(optional && absent))
    *problem = it == obj.end() ? fmt::format("missing field '{}'", key)
                               : fmt::format("field '{}' is not a string", key);
  return fallback;
}

// The line's JSON value; *problem set when it is not valid JSON.
nlohmann::json parse_line(const std::string& text, std::string* problem) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    *problem = std::string("invalid JSON: ") + e.what();
    return nullptr;
  }
}

struct Sums {
  int64_t n = 0;
  double em = 0, f1 = 0, rouge_l = 0;
  void add(double e, double f, double r) { ++n, em += e, f1 += f, rouge_l += r; }
  QaMeans means() const {
    if (n == 0) return {};
    return {n, em / double(n), f1 / double(n), rouge_l / double(n)};
  }
};

nlohmann::json means_json(const QaMeans& m) {
  return {{"n", m.n}, {"em", m.em}, {"f1", m.f1}, {"rouge_l", m.rouge_l}};
}

}  // namespace

// ---- metrics ---------------------------------------------------------------------------------
std::string squad_normalize(const std::string& s) {
  std::string t;
  t.reserve(s.size());
  for (unsigned char c : s)
    if (!ascii_punct(c)) t += static_cast<char>(c < 0x80 ? std::tolower(c) : c);
  std::string out;
  for (const auto& tok : split_py_space(replace_articles(t))) {
    if (!out.empty()) out += ' ';
    out += tok;
  }
  return out;
}

double exact_match(const std::string& pred, const std::string& ref) {
  return squad_normalize(pred) == squad_normalize(ref) ? 1.0 : 0.0;
}

double token_f1(const std::string& pred, const std::string& ref) {
  const auto p = split_py_space(squad_normalize(pred));
  const auto r = split_py_space(squad_normalize(ref));
  if (p.empty() || r.empty()) return p.empty() && r.empty() ? 1.0 : 0.0;
  std::unordered_map<std::string, int64_t> ref_counts;
  for (const auto& t : r) ++ref_counts[t];
  int64_t same = 0;
  for (const auto& t : p) {
    auto it = ref_counts.find(t);
    if (it != ref_counts.end() && it->second > 0) --it->second, ++same;
  }
  if (same == 0) return 0.0;
  const double precision = 1.0 * double(same) / double(p.size());
  const double recall = 1.0 * double(same) / double(r.size());
  return (2 * precision * recall) / (precision + recall);
}

std::vector<std::string> rouge_tokens(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  auto cut = [&] {
    if (!cur.empty()) out.push_back(std::move(cur));
    cur.clear();
  };
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, i);
    // Python lower-cases before dropping non-[a-z0-9]; the only non-ASCII characters that
    // lower-case into that set are KELVIN SIGN -> "k" and I WITH DOT ABOVE -> "i" + U+0307.
    if (c < 0x80 && std::isalnum(static_cast<int>(c))) {
      cur += static_cast<char>(std::tolower(static_cast<int>(c)));
    } else if (c == 0x212A) {
      cur += 'k';
    } else if (c == 0x130) {
      cur += 'i';
      cut();
    } else {
      cut();
    }
  }
  cut();
  return out;
}

double rouge_l(const std::string& pred, const std::string& ref, bool* truncated) {
  auto p = rouge_tokens(pred);
  auto r = rouge_tokens(ref);
  const bool cut = p.size() > kRougeMaxTokens || r.size() > kRougeMaxTokens;
  if (truncated) *truncated = cut;
  if (p.size() > kRougeMaxTokens) p.resize(kRougeMaxTokens);
  if (r.size() > kRougeMaxTokens) r.resize(kRougeMaxTokens);
  if (p.empty() || r.empty()) return 0.0;
  // LCS length, one row of the table at a time (row i: ref[0..i), column j: pred[0..j)).
  std::vector<int64_t> prev(p.size() + 1, 0), row(p.size() + 1, 0);
  for (size_t i = 1; i <= r.size(); ++i) {
    for (size_t j = 1; j <= p.size(); ++j)
      row[j] = r[i - 1] == p[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], row[j - 1]);
    std::swap(prev, row);
  }
  const int64_t lcs = prev[p.size()];
  const double precision = double(lcs) / double(p.size());
  const double recall = double(lcs) / double(r.size());
  if (precision + recall <= 0) return 0.0;
  return 2 * precision * recall / (precision + recall);
}

// ---- answer files ----------------------------------------------------------------------------
std::string pick_prediction_field(const std::string& data, const std::string& name,
                                  const std::string& model_name) {
  nlohmann::json first;
  int64_t first_line = 0;
  for_each_line(data, [&](int64_t line, const std::string& text) {
    nlohmann::json obj = parse_or_null(text);
    if (!obj.is_object()) return true;
    first = std::move(obj);
    first_line = line;
    return false;
  });
  if (first_line == 0)
    ASC_FAIL(
        "{}: no line is a JSON object (expected JSON Lines with `answer` and "
        "`<model>_answer`)",
        name);
  const auto candidates = prediction_candidates(first);
  const std::string listed =
      candidates.empty() ? "none" : fmt::format("{}", fmt::join(candidates, ", "));
  if (!model_name.empty()) {
    const std::string field = model_name + "_answer";
    if (!first.contains(field))
      ASC_FAIL_HINT("pick one of the fields ending in _answer with --model-name",
                    "{}: line {}: no prediction field '{}' (fields ending in _answer: {})", name,
                    first_line, field, listed);
    return field;
  }
  if (candidates.size() == 1) return candidates[0];
  if (candidates.empty())
    ASC_FAIL(
        "{}: line {}: no prediction field (expected one field `<model>_answer` besides "
        "`answer`)",
        name, first_line);
  ASC_FAIL_HINT("choose one with --model-name", "{}: line {}: several prediction fields: {}", name,
                first_line, listed);
}

QaScores score_answers(const std::string& data, const std::string& name,
                       const std::string& model_name) {
  QaScores out;
  out.prediction_field = pick_prediction_field(data, name, model_name);
  Sums all;
  std::map<std::string, Sums> tasks;
  for_each_line(data, [&](int64_t line, const std::string& text) {
    std::string problem;
    const nlohmann::json obj = parse_line(text, &problem);
    if (problem.empty() && !obj.is_object()) problem = "not a JSON object";
    std::string ref, pred, task;
    if (problem.empty()) {
      ref = string_field(obj, "answer", false, "", &problem);
      pred = string_field(obj, out.prediction_field, false, "", &problem);
      task = string_field(obj, "task", true, "(none)", &problem);
    }
    if (!problem.empty()) {
      out.bad_lines.push_back({line, problem});
      return true;
    }
    bool cut = false;
    const double em = exact_match(pred, ref), f1 = token_f1(pred, ref),
                 rl = rouge_l(pred, ref, &cut);
    out.rouge_truncated += cut;
    all.add(em, f1, rl);
    tasks[task].add(em, f1, rl);
    return true;
  });
  out.overall = all.means();
  for (const auto& [task, sums] : tasks) out.per_task[task] = sums.means();
  return out;
}

QaScores score_answers_file(const std::string& path, const std::string& model_name) {
  return score_answers(read_file(path), path, model_name);
}

std::string qa_scores_json(const QaScores& s) {
  nlohmann::json j;
  j["prediction_field"] = s.prediction_field;
  j["overall"] = means_json(s.overall);
  j["per_task"] = nlohmann::json::object();
  for (const auto& [task, m] : s.per_task) j["per_task"][task] = means_json(m);
  j["bad_lines"] = nlohmann::json::array();
  for (const auto& b : s.bad_lines)
    j["bad_lines"].push_back({{"line", b.line}, {"problem", b.problem}});
  // A problem quotes nlohmann's parse error, whose "last read" may hold the line's invalid UTF-8
  // bytes: replaced with U+FFFD, since dump() would throw json type_error 316 (issue 23).
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string format_qa_table(const QaScores& s) {
  size_t width = std::string("overall").size();
  for (const auto& [task, m] : s.per_task) width = std::max(width, task.size());
  auto row = [&](const std::string& task, const QaMeans& m) {
    return fmt::format("{:<{}}  {:>6}  {:>6.2f}  {:>6.2f}  {:>7.2f}\n", task, width, m.n,
                       100 * m.em, 100 * m.f1, 100 * m.rouge_l);
  };
  std::string out = fmt::format("{:<{}}  {:>6}  {:>6}  {:>6}  {:>7}\n", "task", width, "n", "EM",
                                "F1", "ROUGE-L");
  for (const auto& [task, m] : s.per_task) out += row(task, m);
  return out + row("overall", s.overall);
}

}  // namespace asc
