// The readable form of the Ledger's answers (provenance.h); the JSON is the complete one.
#include <sstream>

#include <fmt/format.h>

#include "provenance/provenance.h"

namespace asc {
namespace {

// "1-3, 7, 9-10" (steps ascending).
std::string ranges(const nlohmann::json& steps) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < steps.size();) {
    size_t j = i;
    while (j + 1 < steps.size() && steps[j + 1].get<int64_t>() == steps[j].get<int64_t>() + 1) ++j;
    parts.push_back(i == j
                        ? fmt::format("{}", steps[i].get<int64_t>())
                        : fmt::format("{}-{}", steps[i].get<int64_t>(), steps[j].get<int64_t>()));
    i = j + 1;
  }
  return parts.empty() ? "none" : fmt::format("{}", fmt::join(parts, ", "));
}

std::string run_line(const nlohmann::json& r) {
  std::string s = fmt::format("{} ({}, corpus {}", r["run"].get<std::string>(),
                              r["stage"].get<std::string>(), r["corpus"].get<std::string>());
  if (r["init_from"].is_object())
    s += fmt::format(", init_from {}", r["init_from"]["path"].get<std::string>());
  if (!r["verified"].get<bool>()) s += ", unverified: recorded before provenance existed";
  return s + ")";
}

std::string note_text(const nlohmann::json& j) {
  std::ostringstream o;
  o << fmt::format("note {}\n", j["note"].get<std::string>());
  for (const auto& r : j["runs"]) {
    o << "  run " << run_line(r) << "\n";
    for (const auto& m : r["matches"])
      o << fmt::format("    document {} (id {}, xxh64 {})\n", m["doc"].get<int64_t>(),
                       m["id"].get<std::string>(), m["xxh64"].get<std::string>());
    if (r["matches"].empty()) o << "    not in this run's corpus\n";
    o << fmt::format("    steps: {} ({} in all)\n", ranges(r["steps"]), r["steps"].size());
    if (r["inherited"].get<bool>()) o << "    inherited: the checkpoint it started from saw it\n";
    for (const auto& c : r["checkpoints"])
      if (c["seen"].get<bool>())
        o << fmt::format("    checkpoint {} (step {}){}\n", c["dir"].get<std::string>(),
                         c["step"].get<int64_t>(),
                         c["direct"].get<bool>() ? "" : " inherited through init_from");
  }
  return o.str();
}

std::string step_text(const nlohmann::json& j) {
  std::ostringstream o;
  o << fmt::format("step {} of run {} (epoch {}): {} notes\n", j["step"].get<int64_t>(),
                   run_line(j), j["epoch"].get<int64_t>(), j["notes"].size());
  for (const auto& n : j["notes"])
    o << fmt::format("  {}  xxh64 {}  document {}\n", n["id"].get<std::string>(),
                     n["xxh64"].get<std::string>(), n["doc"].get<int64_t>());
  return o.str();
}

std::string checkpoint_text(const nlohmann::json& j) {
  std::ostringstream o;
  o << fmt::format("checkpoint {} (step {}): {} distinct note ids\n",
                   j["checkpoint"].get<std::string>(), j["step"].get<int64_t>(),
                   j["distinct_ids"].get<int64_t>());
  for (const auto& s : j["sources"]) {
    o << fmt::format("  steps 1-{} of run {}: {} notes\n", s["steps"].get<int64_t>(), run_line(s),
                     s["notes"].size());
    for (const auto& n : s["notes"])
      o << fmt::format("    {}  xxh64 {}  first at step {}\n", n["id"].get<std::string>(),
                       n["xxh64"].get<std::string>(), n["first_step"].get<int64_t>());
  }
  return o.str();
}

std::string exclude_text(const nlohmann::json& j) {
  std::ostringstream o;
  o << fmt::format("{} ids; {} checkpoints of run {} and the runs it started from saw some\n",
                   j["ids"].get<int64_t>(), j["checkpoints"].size(), j["run"].get<std::string>());
  for (const auto& c : j["checkpoints"])
    o << fmt::format("  {} (step {}): {}\n", c["dir"].get<std::string>(), c["step"].get<int64_t>(),
                     fmt::join(c["notes"].get<std::vector<std::string>>(), ", "));
  for (const auto& c : j["clean"])
    o << fmt::format("  {} (step {}): none\n", c["dir"].get<std::string>(),
                     c["step"].get<int64_t>());
  if (!j["unknown"].empty())
    o << fmt::format("  in no corpus of the chain: {}\n",
                     fmt::join(j["unknown"].get<std::vector<std::string>>(), ", "));
  return o.str();
}

}  // namespace

std::string provenance_text(const nlohmann::json& j) {
  const std::string mode = j.value("mode", "");
  if (mode == "note") return note_text(j);
  if (mode == "step") return step_text(j);
  if (mode == "checkpoint") return checkpoint_text(j);
  return exclude_text(j);
}

}  // namespace asc
