#include "data/judge.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/json_limits.h"
#include "common/strings.h"
#include "data/judge_builtin.h"  // generated from data/judge/*.txt

namespace asc {
namespace {

using Json = nlohmann::ordered_json;

std::string judge_prompt_text(const std::string& v) {
  for (const auto& p : kBuiltinJudgePrompts)
    if (v == p.name) return p.text;
  if (std::filesystem::is_regular_file(v)) return read_file(v);
  std::vector<std::string> names;
  for (const auto& p : kBuiltinJudgePrompts) names.push_back(p.name);
  const std::string near = closest_match(v, names);
  ASC_FAIL_HINT(near.empty() ? "a built-in name or a prompt file" : "did you mean " + near + "?",
                "--judge-prompt '{}' is neither built in ({}) nor a file", v,
                fmt::join(names, ", "));
}

// Python's str.format over the template only: each placeholder replaced once, in one pass, so
// text inside a note that looks like a placeholder stays as written.
std::string fill(const std::string& t, const std::map<std::string, std::string>& values) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    bool hit = false;
    if (t[i] == '{')
      for (const auto& [k, v] : values)
        if (t.compare(i, k.size() + 2, "{" + k + "}") == 0) {
          out += v;
          i += k.size() + 2;
          hit = true;
          break;
        }
    if (!hit) out += t[i++];
  }
  return out;
}

// Upstream: "<model>_answer" -> "<model>" ("_".join(col.split("_")[:-1])); the dataset's own
// "answer" column (an empty name there) is the reference answer.
std::string model_of(const std::string& column) {
  const size_t us = column.rfind('_');
  const std::string m = us == std::string::npos ? "" : column.substr(0, us);
  return m.empty() ? "reference" : m;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ASC_FAIL("{}: cannot read", path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(std::move(l));
  }
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string::npos)
    lines.pop_back();
  return lines;
}

Json parse_line(const std::string& line, const std::string& where) {
  try {
    (void)parse_json_bounded(line, where);  // refuses deep nesting before anything recurses
    Json j = Json::parse(line);             // in field order (upstream takes columns in order)
    if (!j.is_object()) ASC_FAIL("{}: not a JSON object", where);
    return j;
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}: malformed JSON: {}", where, e.what());
  }
}

std::string string_field(const Json& j, const std::string& key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string())
    ASC_FAIL("{}: field \"{}\" is missing or not a string", where, key);
  return j[key].get<std::string>();
}

void add_score(ScoreStats& s, int score) {
  s.mean = (s.mean * double(s.count) + score) / double(s.count + 1);
  ++s.count;
  ++s.distribution[score - 1];
}

Json stats_json(const ScoreStats& s) {
  return {{"mean", s.mean},
          {"count", s.count},
          {"distribution",
           {{"1", s.distribution[0]},
            {"2", s.distribution[1]},
            {"3", s.distribution[2]},
            {"4", s.distribution[3]}}}};
}

}  // namespace

std::string parse_judge_scores(const std::string& content, size_t n, std::vector<int>* scores) {
  const auto strip = [](std::string v, const char* chars) {
    const size_t b = v.find_first_not_of(chars), e = v.find_last_not_of(chars);
    return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  };
  // The first non-blank line, without the quotes a judge may put around it (upstream strips
  // quotes around the whole reply).
  std::string s = strip(content, " \t\r\n");
  const std::string first = strip(strip(s.substr(0, s.find('\n')), " \t\r"), "\"'");
  std::istringstream in(first);
  scores->clear();
  for (std::string tok; in >> tok;) {
    if (tok.size() != 1 || tok[0] < '1' || tok[0] > '4')
      return fmt::format("first line \"{}\": \"{}\" is not a score 1-4", printable(first, 80), tok);
    scores->push_back(tok[0] - '0');
  }
  if (scores->size() != n)
    return fmt::format("first line \"{}\" holds {} scores for {} agents", printable(first, 80),
                       scores->size(), n);
  return "";
}

JudgeExportReport judge_export(const JudgeExportOptions& o) {
  if (o.inputs.empty()) ASC_FAIL("judge export: no --answers files");
  const std::string prompt = judge_prompt_text(o.prompt);
  for (const char* ph : {"{note}", "{question}", "{answers}", "{num_samples}"})
    if (prompt.find(ph) == std::string::npos)
      ASC_FAIL("--judge-prompt {}: the prompt has no {} placeholder", o.prompt, ph);
  std::vector<std::vector<std::string>> files;
  for (const auto& in : o.inputs) files.push_back(read_lines(in));
  for (size_t f = 1; f < files.size(); ++f)
    if (files[f].size() != files[0].size())
      ASC_FAIL_HINT("answer the same input file with every model",
                    "{} has {} lines but {} has {}: the answer files must hold the same "
                    "questions in the same order",
                    o.inputs[f], files[f].size(), o.inputs[0], files[0].size());
  if (files[0].empty()) ASC_FAIL("{}: no answers", o.inputs[0]);

  JudgeExportReport rep;
  std::mt19937_64 rng(o.seed);
  std::string requests, agents;
  for (size_t i = 0; i < files[0].size(); ++i) {
    // Candidates: every field containing "answer", first file first; the same field in two
    // files must hold the same text (the dataset's reference answer does).
    std::vector<std::pair<std::string, std::string>> cands;
    std::string note, question, task;
    for (size_t f = 0; f < files.size(); ++f) {
      const std::string where = fmt::format("{}:{}", o.inputs[f], i + 1);
      const Json j = parse_line(files[f][i], where);
      const std::string n = string_field(j, "note", where), q = string_field(j, "question", where);
      if (f == 0) {
        note = n, question = q;
        if (j.contains("task") && j["task"].is_string()) task = j["task"].get<std::string>();
      } else if (n != note || q != question) {
        ASC_FAIL_HINT("answer the same input file with every model",
                      "{}: note/question differ from {}:{}", where, o.inputs[0], i + 1);
      }
      for (const auto& item : j.items()) {
        const std::string k = item.key();  // a copy: lambdas may not capture structured bindings
        const auto& v = item.value();
        if (k.find("answer") == std::string::npos) continue;
        if (!v.is_string())
          ASC_FAIL(
              "{}: field \"{}\" is not a string (a column whose name contains \"answer\" is "
              "a candidate answer)",
              where, k);
        auto it = std::find_if(cands.begin(), cands.end(), [&](auto& c) { return c.first == k; });
        if (it == cands.end())
          cands.emplace_back(k, v.get<std::string>());
        else if (it->second != v.get<std::string>())
          ASC_FAIL_HINT("give each model its own --model-name when generating",
                        "{}: \"{}\" also appears in another answer file with other text", where, k);
      }
    }
    std::vector<std::string> cols;
    for (const auto& c : cands) cols.push_back(c.first);
    if (i == 0) {
      for (const auto& c : cols) rep.models.push_back(model_of(c));
      std::set<std::string> seen;
      for (const auto& m : rep.models)
        if (!seen.insert(m).second)
          ASC_FAIL("{}:1: two answer columns name the model \"{}\"", o.inputs[0], m);
    } else {
      std::vector<std::string> models;
      for (const auto& c : cols) models.push_back(model_of(c));
      if (models != rep.models)
        ASC_FAIL("line {}: candidates [{}] differ from line 1's [{}]", i + 1,
                 fmt::join(models, ", "), fmt::join(rep.models, ", "));
    }
    if (cands.size() < 1) ASC_FAIL("{}:{}: no field containing \"answer\"", o.inputs[0], i + 1);
    std::vector<size_t> order(cands.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    for (size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[rng() % k]);
    std::string answers;
    Json agent_cols = Json::array();
    for (size_t a = 0; a < order.size(); ++a) {
      const char letter = char('A' + a);
      answers += fmt::format("[Agent {0}'s Answer Begin]\n{1}\n[Agent {0}'s Answer End]\n\n",
                             letter, cands[order[a]].second);
      agent_cols.push_back(cands[order[a]].first);
    }
    if (order.size() > 26) ASC_FAIL("{} candidates: at most 26 agents (A-Z)", order.size());
    const std::string content = fill(prompt, {{"note", note},
                                              {"question", question},
                                              {"answers", answers},
                                              {"num_samples", std::to_string(order.size())}});
    const std::string id = fmt::format("line-{}", i + 1);
    Json req = {{"custom_id", id},
                {"method", "POST"},
                {"url", "/v1/chat/completions"},
                {"body",
                 {{"model", o.judge_model},
                  {"messages", Json::array({{{"role", "user"}, {"content", content}}})},
                  {"max_tokens", o.max_tokens},
                  {"temperature", 0}}}};
    requests += req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    agents += Json{{"custom_id", id}, {"line", i + 1}, {"task", task}, {"agents", agent_cols}}.dump(
                  -1, ' ', false, nlohmann::json::error_handler_t::replace) +
              "\n";
    ++rep.requests;
  }
  write_file_atomic(o.out + ".agents.jsonl", agents);
  write_file_atomic(o.out, requests);
  return rep;
}

JudgeImportReport judge_import(const std::string& requests,
                               const std::vector<std::string>& responses) {
  struct Req {
    std::vector<std::string> agents;
    std::string task;
    bool answered = false;
  };
  std::map<std::string, Req> reqs;
  const std::string agents_path = requests + ".agents.jsonl";
  if (!std::filesystem::exists(agents_path))
    ASC_FAIL_HINT("keep the .agents.jsonl that judge export wrote beside the requests",
                  "{}: missing (it records each request's order of agents)", agents_path);
  const auto lines = read_lines(agents_path);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = fmt::format("{}:{}", agents_path, i + 1);
    const Json j = parse_line(lines[i], where);
    Req r;
    if (!j.contains("agents") || !j["agents"].is_array())
      ASC_FAIL("{}: \"agents\" is missing or not a list", where);
    for (const auto& a : j["agents"]) {
      if (!a.is_string()) ASC_FAIL("{}: an agent is not a column name", where);
      r.agents.push_back(a.get<std::string>());
    }
    if (j.contains("task") && j["task"].is_string()) r.task = j["task"].get<std::string>();
    reqs[string_field(j, "custom_id", where)] = std::move(r);
  }

  JudgeImportReport rep;
  std::vector<std::string> unknown, duplicate;
  for (const auto& path : responses)
    for (const auto& [i, line] : [&] {
           std::vector<std::pair<size_t, std::string>> v;
           const auto ls = read_lines(path);
           for (size_t k = 0; k < ls.size(); ++k) v.emplace_back(k, ls[k]);
           return v;
         }()) {
      const std::string where = fmt::format("{}:{}", path, i + 1);
      const Json j = parse_line(line, where);
      const std::string id = string_field(j, "custom_id", where);
      auto it = reqs.find(id);
      if (it == reqs.end()) {
        unknown.push_back(id);
        continue;
      }
      if (it->second.answered) {
        duplicate.push_back(id);
        continue;
      }
      it->second.answered = true;
      // The reply: a batch output line, a chat completion, or {"content": ...}.
      std::string content, why;
      try {
        if (j.contains("error") && !j["error"].is_null()) {
          why = "the request failed: " + utf8_prefix(j["error"].dump(-1, ' ', true /*ASCII*/), 120);
        } else if (j.contains("content") && j["content"].is_string()) {
          content = j["content"].get<std::string>();
        } else {
          const Json& body = j.contains("response") ? j.at("response").at("body") : j;
          content = body.at("choices").at(0).at("message").at("content").get<std::string>();
        }
      } catch (const nlohmann::json::exception&) {
        why = "no choices[0].message.content in the reply";
      }
      std::vector<int> scores;
      if (why.empty()) why = parse_judge_scores(content, it->second.agents.size(), &scores);
      if (!why.empty()) {
        rep.unparsed.emplace_back(id, why);
        continue;
      }
      for (size_t a = 0; a < scores.size(); ++a) {
        const std::string m = model_of(it->second.agents[a]);
        add_score(rep.per_model[m], scores[a]);
        if (!it->second.task.empty()) add_score(rep.per_task[it->second.task][m], scores[a]);
      }
      ++rep.scored;
    }
  std::vector<std::string> missing;
  for (const auto& [id, r] : reqs)
    if (!r.answered) missing.push_back(id);
  auto few = [](const std::vector<std::string>& v) {
    std::vector<std::string> head(v.begin(), v.begin() + long(std::min<size_t>(v.size(), 5)));
    return fmt::format("{}{}", fmt::join(head, ", "), v.size() > 5 ? ", ..." : "");
  };
  if (!unknown.empty() || !duplicate.empty() || !missing.empty())
    ASC_FAIL_HINT("pass the responses to exactly the requests of " + requests,
                  "the responses do not match the requests: {} unknown id(s) [{}], {} "
                  "duplicate(s) [{}], {} request(s) without a response [{}]",
                  unknown.size(), few(unknown), duplicate.size(), few(duplicate), missing.size(),
                  few(missing));
  return rep;
}

std::string judge_report_json(const JudgeImportReport& r) {
  Json j = {{"scored", r.scored}, {"models", Json::object()}, {"tasks", Json::object()}};
  for (const auto& [m, s] : r.per_model) j["models"][m] = stats_json(s);
  for (const auto& [t, ms] : r.per_task)
    for (const auto& [m, s] : ms) j["tasks"][t][m] = stats_json(s);
  j["unparsed"] = Json::array();
  for (const auto& [id, why] : r.unparsed)
    j["unparsed"].push_back({{"custom_id", id}, {"why", why}});
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string judge_report_table(const JudgeImportReport& r) {
  std::string out = fmt::format("{:<28} {:>7} {:>6}   {:>5} {:>5} {:>5} {:>5}\n", "model / task",
                                "mean", "count", "1", "2", "3", "4");
  auto row = [&](const std::string& name, const ScoreStats& s) {
    out += fmt::format("{:<28} {:>7.3f} {:>6}   {:>5} {:>5} {:>5} {:>5}\n", name, s.mean, s.count,
                       s.distribution[0], s.distribution[1], s.distribution[2], s.distribution[3]);
  };
  for (const auto& [m, s] : r.per_model) row(m, s);
  for (const auto& [t, ms] : r.per_task)
    for (const auto& [m, s] : ms) row("  " + t + " / " + m, s);
  out += fmt::format("{} responses scored, {} could not be parsed\n", r.scored, r.unparsed.size());
  for (const auto& [id, why] : r.unparsed) out += fmt::format("  unparsed {}: {}\n", id, why);
  return out;
}

}  // namespace asc
