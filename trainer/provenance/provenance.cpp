#include "provenance/provenance.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "checkpoint/manifest.h"
#include "common/error.h"
#include "common/fs.h"
#include "data/corpus.h"
#include "data/demo_corpus.h"
#include "data/sampler.h"

namespace fs = std::filesystem;

namespace asc {

namespace {
std::string canonical_dir(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p), ec);
  if (ec) c = fs::absolute(p).lexically_normal();
  std::string s = c.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool is_checkpoint_dir(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / kManifestFile, ec);
}

// A checkpoint's step: its trainer_state.json, else its directory's name.
int64_t checkpoint_step(const std::string& dir) {
  try {
    return nlohmann::json::parse(read_file(dir + "/trainer_state.json")).at("step").get<int64_t>();
  } catch (const std::exception&) {
  }
  if (auto s = step_of_dir_name(dir)) return *s;
  ASC_FAIL("{}: a checkpoint without a readable step (trainer_state.json)", dir);
}

nlohmann::json init_from_record(const std::string& init_from_dir) {
  if (init_from_dir.empty()) return nullptr;
  const std::string dir = canonical_dir(init_from_dir);
  if (!is_checkpoint_dir(dir)) return {{"path", dir}, {"kind", "huggingface"}};
  return {{"path", dir},
          {"kind", "checkpoint"},
          {"step", checkpoint_step(dir)},
          {"manifest_xxh64", xxh64_file(dir + "/" + kManifestFile)}};
}
}  // namespace

nlohmann::json provenance_record(const Recipe& r, const std::string& init_from_dir) {
  nlohmann::json p;
  if (r.data.corpus == "demo") {
    p["corpus"] = {{"path", "demo"}};
  } else {
    const Corpus c(r.data.corpus);
    p["corpus"] = {{"path", canonical_dir(r.data.corpus)},
                   {"stage", c.info().stage},
                   {"fingerprint", c.info().fingerprint}};
  }
  p["init_from"] = init_from_record(init_from_dir);
  return p;
}

struct LedgerCheckpoint {
  std::string dir;
  int64_t step = 0;
};

// One run of the chain: its plan (corpus, seq_len, global batch, seed) and its checkpoints.
struct LedgerLink {
  std::string run_dir, corpus_path, stage;
  bool verified = false;  // the corpus (and init_from's manifest) checked against the record
  std::unique_ptr<Corpus> corpus;
  NoteIndex notes;
  std::unordered_map<std::string, std::vector<int64_t>> docs_by_id;  // ids and aliases
  std::vector<int64_t> offsets;
  int64_t seq_len = 0, global = 0, samples = 0, last_step = 0;
  uint64_t seed = 0;
  std::vector<LedgerCheckpoint> checkpoints;  // existing, oldest first
  nlohmann::json init_from;                   // the record (null: none)
  std::string init_dir;                       // a checkpoint of ours it started from
  int64_t init_step = 0;
  mutable std::map<int64_t, std::vector<int64_t>> orders;  // epoch -> sample order

  bool pretrain() const { return stage == "pretrain"; }
  int64_t steps_per_epoch() const { return samples / global; }
  const std::vector<int64_t>& order(int64_t epoch) const {
    auto it = orders.find(epoch);
    if (it == orders.end()) it = orders.emplace(epoch, epoch_order(samples, seed, epoch)).first;
    return it->second;
  }
  // Documents [first, last] with a token in sample s.
  std::pair<int64_t, int64_t> docs_of_sample(int64_t s) const {
    if (!pretrain()) return {s, s};
    const int64_t lo = s * seq_len, hi = lo + seq_len;
    const int64_t first =
        int64_t(std::upper_bound(offsets.begin(), offsets.end(), lo) - offsets.begin()) - 1;
    const int64_t last =
        int64_t(std::lower_bound(offsets.begin(), offsets.end(), hi) - offsets.begin()) - 1;
    return {first, last};
  }
  // Visits (step, sample) for every sample of steps 1..up_to, in step order.
  template <class F>
  void for_each_sample(int64_t up_to, F fn) const {
    const int64_t spe = steps_per_epoch();
    for (int64_t e = 0; e * spe < up_to; ++e) {
      const auto& ord = order(e);
      const int64_t steps = std::min(spe, up_to - e * spe);
      for (int64_t p = 0; p < steps * global; ++p) fn(e * spe + p / global + 1, ord[size_t(p)]);
    }
  }
  // Per document: the first step (1..up_to) whose batch held it, 0 for none.
  std::vector<int64_t> first_steps(int64_t up_to) const {
    std::vector<int64_t> first(offsets.size() - 1, 0);
    for_each_sample(up_to, [&](int64_t step, int64_t s) {
      const auto [a, b] = docs_of_sample(s);
      for (int64_t d = a; d <= b; ++d)
        if (first[size_t(d)] == 0) first[size_t(d)] = step;
    });
    return first;
  }
  // The steps (1..up_to) whose batches held any of `docs`, ascending.
  std::vector<int64_t> steps_of(const std::vector<int64_t>& docs, int64_t up_to) const {
    std::vector<char> wanted(size_t(samples), 0);
    for (int64_t d : docs) {
      if (!pretrain()) {
        wanted[size_t(d)] = 1;
        continue;
      }
      const int64_t a = offsets[size_t(d)] / seq_len, b = (offsets[size_t(d) + 1] - 1) / seq_len;
      for (int64_t w = a; w <= std::min(b, samples - 1); ++w) wanted[size_t(w)] = 1;
    }
    std::vector<int64_t> out;
    for_each_sample(up_to, [&](int64_t step, int64_t s) {
      if (wanted[size_t(s)] && (out.empty() || out.back() != step)) out.push_back(step);
    });
    return out;
  }
  nlohmann::json doc_json(int64_t d) const {
    return {{"doc", d},
            {"id", notes.ids[size_t(d)]},
            {"xxh64", fmt::format("{:016x}", notes.xxh64[size_t(d)])}};
  }
  nlohmann::json header() const {
    return {{"run", run_dir},       {"stage", stage},         {"corpus", corpus_path},
            {"verified", verified}, {"init_from", init_from}, {"last_step", last_step}};
  }
};

namespace {

std::vector<LedgerCheckpoint> checkpoints_of(const std::string& run_dir) {
  std::vector<LedgerCheckpoint> out;
  for (const auto& d : step_dirs_newest_first(run_dir))
    if (is_checkpoint_dir(d)) out.push_back({canonical_dir(d), checkpoint_step(d)});
  std::reverse(out.begin(), out.end());
  return out;
}

// The run's "provenance" record: from `via` (the checkpoint a later stage started from), else
// its newest checkpoint that has one; null for a run recorded before provenance existed.
nlohmann::json run_record(const std::string& via, const std::vector<LedgerCheckpoint>& ckpts) {
  std::vector<std::string> dirs;
  if (!via.empty()) dirs.push_back(via);
  for (auto it = ckpts.rbegin(); it != ckpts.rend(); ++it) dirs.push_back(it->dir);
  for (const auto& d : dirs) {
    try {
      auto j = nlohmann::json::parse(read_file(d + "/trainer_state.json"));
      if (j.contains("provenance")) return j["provenance"];
    } catch (const std::exception&) {
    }
  }
  return nullptr;
}

Recipe run_recipe(const std::string& run_dir, const std::string& via) {
  if (fs::is_regular_file(run_dir + "/recipe.yaml")) return load_recipe(run_dir + "/recipe.yaml");
  if (!via.empty() && fs::is_regular_file(via + "/recipe.yaml"))
    return load_recipe(via + "/recipe.yaml");
  ASC_FAIL_HINT("give the run directory `asclepius train` wrote (checkpoint.dir)",
                "{}: not a run directory: no recipe.yaml", run_dir);
}

// The corpus the run trained on, checked against the run's record.
void open_link_corpus(LedgerLink& L, const Recipe& r, const nlohmann::json& rec) {
  const bool recorded = rec.is_object() && rec.contains("corpus");
  L.corpus_path = recorded ? rec["corpus"].value("path", "") : r.data.corpus;
  if (L.corpus_path == "demo")
    ASC_FAIL(
        "{}: the run trained on the built-in demo stream (data.corpus: demo), which holds "
        "no notes",
        L.run_dir);
  L.corpus = std::make_unique<Corpus>(L.corpus_path);
  const CorpusInfo& info = L.corpus->info();
  if (info.stage != L.stage)
    ASC_FAIL("{}: {} is a {} corpus but the run trained stage {}", L.run_dir, L.corpus_path,
             info.stage, L.stage);
  L.notes = L.corpus->read_note_index();
  const std::string want = recorded ? rec["corpus"].value("fingerprint", "") : "";
  if (recorded && want != info.fingerprint)
    ASC_FAIL_HINT(
        "restore the corpus the run trained on (a rebuild with --exclude is another "
        "corpus: train a new run on it)",
        "{}: corpus {} has changed since the run trained on it (fingerprint {}, the run "
        "recorded {})",
        L.run_dir, L.corpus_path, info.fingerprint, want);
  L.verified = recorded;
  L.offsets = L.corpus->doc_offsets();
  for (size_t d = 0; d < L.notes.ids.size(); ++d)
    L.docs_by_id[L.notes.ids[d]].push_back(int64_t(d));
  for (size_t a = 0; a < L.notes.alias_ids.size(); ++a) {
    auto& v = L.docs_by_id[L.notes.alias_ids[a]];
    if (std::find(v.begin(), v.end(), L.notes.alias_doc[a]) == v.end())
      v.push_back(L.notes.alias_doc[a]);
  }
}

// model.init_from: the recorded checkpoint (its manifest checked when it still exists), or for
// an unrecorded run the recipe's path resolved as train resolves it.
void resolve_init_from(LedgerLink& L, const Recipe& r, const nlohmann::json& rec) {
  if (rec.is_object() && rec.contains("init_from")) {
    L.init_from = rec["init_from"];
  } else if (!r.model.init_from.empty()) {
    std::string dir = r.model.init_from;
    if (!is_checkpoint_dir(dir) && !read_latest(dir).empty()) dir += "/" + read_latest(dir);
    L.init_from = init_from_record(dir);
    L.init_from["unverified"] = true;
    L.verified = false;
  }
  if (!L.init_from.is_object() || L.init_from.value("kind", "") != "checkpoint") return;
  L.init_dir = L.init_from.at("path").get<std::string>();
  L.init_step = L.init_from.at("step").get<int64_t>();
  const std::string manifest = L.init_dir + "/" + kManifestFile;
  if (!fs::exists(manifest)) {
    L.init_from["gone"] = true;  // removed since (keep_last): the record still says what it was
  } else if (xxh64_file(manifest) != L.init_from.value("manifest_xxh64", "")) {
    ASC_FAIL(
        "{}: model.init_from's checkpoint {} is not the one the run started from (its "
        "manifest.pb hash {} differs from the recorded {})",
        L.run_dir, L.init_dir, xxh64_file(manifest), L.init_from.value("manifest_xxh64", ""));
  }
}

std::unique_ptr<LedgerLink> load_link(const std::string& run_dir, const std::string& via,
                                      int64_t min_step) {
  auto L = std::make_unique<LedgerLink>();
  L->run_dir = canonical_dir(run_dir);
  L->checkpoints = checkpoints_of(L->run_dir);
  if (via.empty() && L->checkpoints.empty())
    ASC_FAIL_HINT("give the run directory `asclepius train` wrote (checkpoint.dir)",
                  "{}: not a run with checkpoints (no step-N directory with a manifest.pb)",
                  run_dir);
  const Recipe r = run_recipe(L->run_dir, via);
  const nlohmann::json rec = run_record(via, L->checkpoints);
  L->stage = name(r.train.stage);
  open_link_corpus(*L, r, rec);
  resolve_init_from(*L, r, rec);
  L->seq_len = r.data.seq_len, L->global = r.train.global_batch_size;
  L->seed = uint64_t(r.train.seed);
  L->samples = L->pretrain() ? L->corpus->num_windows(L->seq_len) : L->corpus->info().num_docs;
  if (L->samples < L->global)
    ASC_FAIL("{}: {} holds {} samples, fewer than one global batch ({}): not the run's corpus?",
             L->run_dir, L->corpus_path, L->samples, L->global);
  L->last_step = min_step;
  for (const auto& c : L->checkpoints) L->last_step = std::max(L->last_step, c.step);
  return L;
}

}  // namespace

Ledger::Ledger(const std::string& run) {
  std::string dir = run;
  if (is_checkpoint_dir(dir) && step_of_dir_name(canonical_dir(dir)))
    dir = fs::path(canonical_dir(dir)).parent_path().string();
  if (!fs::is_directory(dir)) ASC_FAIL("{}: no such run directory", run);
  links_.push_back(load_link(dir, "", 0));
  while (!links_.back()->init_dir.empty()) {
    const LedgerLink& child = *links_.back();
    if (links_.size() > 64) ASC_FAIL("{}: model.init_from chains more than 64 runs", run);
    links_.push_back(load_link(fs::path(child.init_dir).parent_path().string(), child.init_dir,
                               child.init_step));
  }
}

Ledger::~Ledger() = default;

nlohmann::json Ledger::note(const std::string& id) const {
  nlohmann::json runs = nlohmann::json::array();
  bool known = false;
  // From the oldest run: what a run's checkpoint saw is inherited by the run started from it.
  std::vector<nlohmann::json> out(links_.size());
  bool inherited = false;  // the checkpoint the current run started from had seen the note
  for (size_t i = links_.size(); i-- > 0;) {
    const LedgerLink& L = *links_[i];
    auto it = L.docs_by_id.find(id);
    std::vector<int64_t> docs = it == L.docs_by_id.end() ? std::vector<int64_t>{} : it->second;
    known = known || !docs.empty();
    const std::vector<int64_t> steps = L.steps_of(docs, L.last_step);
    nlohmann::json j = L.header(), matches = nlohmann::json::array(),
                   ckpts = nlohmann::json::array();
    for (int64_t d : docs) matches.push_back(L.doc_json(d));
    for (const auto& c : L.checkpoints) {
      const bool direct = !steps.empty() && steps.front() <= c.step;
      ckpts.push_back({{"dir", c.dir},
                       {"step", c.step},
                       {"seen", direct || inherited},
                       {"direct", direct},
                       {"inherited", inherited}});
    }
    j["matches"] = matches, j["steps"] = steps, j["checkpoints"] = ckpts;
    j["inherited"] = inherited;
    out[i] = j;
    if (i > 0) {  // does the checkpoint run i-1 started from have it?
      const int64_t at = links_[i - 1]->init_step;
      inherited = inherited || (!steps.empty() && steps.front() <= at);
    }
  }
  if (!known) {
    std::vector<std::string> corpora;
    for (const auto& L : links_) corpora.push_back(L->corpus_path);
    ASC_FAIL_HINT(
        "ids are the input's id column, or FILE:RECORD where there was none "
        "(docs/provenance.md)",
        "note '{}' is in no corpus of run {} ({})", id, links_[0]->run_dir,
        fmt::join(corpora, ", "));
  }
  for (auto& j : out) runs.push_back(std::move(j));
  return {{"mode", "note"}, {"note", id}, {"runs", runs}};
}

nlohmann::json Ledger::step(int64_t n) const {
  const LedgerLink& L = *links_[0];
  if (n < 1 || n > L.last_step)
    ASC_FAIL_HINT("steps are 1-based, up to the newest checkpoint's",
                  "--step {}: run {} has steps 1..{} (its newest checkpoint is step {})", n,
                  L.run_dir, L.last_step, L.last_step);
  const StepPlace at = step_place(n, L.samples, L.global);
  const auto& ord = L.order(at.epoch);
  std::vector<int64_t> samples(ord.begin() + at.begin, ord.begin() + at.begin + L.global);
  std::vector<int64_t> docs;
  for (int64_t s : samples) {
    const auto [a, b] = L.docs_of_sample(s);
    for (int64_t d = a; d <= b; ++d) docs.push_back(d);
  }
  std::sort(docs.begin(), docs.end());
  docs.erase(std::unique(docs.begin(), docs.end()), docs.end());
  nlohmann::json notes = nlohmann::json::array();
  for (int64_t d : docs) notes.push_back(L.doc_json(d));
  nlohmann::json j = L.header();
  j["mode"] = "step", j["step"] = n, j["epoch"] = at.epoch, j["samples"] = samples;
  j["notes"] = notes;
  return j;
}

nlohmann::json Ledger::checkpoint(const std::string& dir_arg) const {
  std::string dir = dir_arg;
  if (!fs::exists(dir) && fs::exists(links_[0]->run_dir + "/" + dir_arg))
    dir = links_[0]->run_dir + "/" + dir_arg;
  if (!is_checkpoint_dir(dir))
    ASC_FAIL_HINT(
        "give a step-N directory of the run (e.g. " + links_[0]->run_dir + "/step-0000010)",
        "--checkpoint {}: not a checkpoint (no {})", dir_arg, kManifestFile);
  dir = canonical_dir(dir);
  const std::string run = fs::path(dir).parent_path().string();
  size_t i = 0;
  while (i < links_.size() && links_[i]->run_dir != run) ++i;
  if (i == links_.size())
    ASC_FAIL("--checkpoint {}: not a checkpoint of run {} or of the runs it started from", dir_arg,
             links_[0]->run_dir);
  const int64_t step = checkpoint_step(dir);
  nlohmann::json sources = nlohmann::json::array();
  std::unordered_set<std::string> ids;
  for (int64_t up_to = step; i < links_.size(); up_to = links_[i]->init_step, ++i) {
    const LedgerLink& L = *links_[i];
    const std::vector<int64_t> first = L.first_steps(up_to);
    nlohmann::json notes = nlohmann::json::array();
    for (size_t d = 0; d < first.size(); ++d) {
      if (first[d] == 0) continue;
      nlohmann::json n = L.doc_json(int64_t(d));
      n["first_step"] = first[d];
      notes.push_back(n);
      ids.insert(L.notes.ids[d]);
    }
    nlohmann::json j = L.header();
    j["steps"] = up_to, j["notes"] = notes;
    sources.push_back(j);
  }
  return {{"mode", "checkpoint"},
          {"checkpoint", dir},
          {"step", step},
          {"distinct_ids", ids.size()},
          {"sources", sources}};
}

nlohmann::json Ledger::exclude(const std::unordered_set<std::string>& wanted) const {
  std::vector<std::string> ids(wanted.begin(), wanted.end());
  std::sort(ids.begin(), ids.end());
  std::set<std::string> known, inherited;  // inherited: seen by the checkpoint a run started from
  std::vector<nlohmann::json> per_link(links_.size());
  for (size_t i = links_.size(); i-- > 0;) {
    const LedgerLink& L = *links_[i];
    const std::vector<int64_t> first = L.first_steps(L.last_step);
    std::map<std::string, int64_t> first_of;  // id -> first step of this run that held it
    for (const auto& id : ids) {
      auto it = L.docs_by_id.find(id);
      if (it == L.docs_by_id.end()) continue;
      known.insert(id);
      for (int64_t d : it->second)
        if (first[size_t(d)] > 0 && (!first_of.count(id) || first[size_t(d)] < first_of[id]))
          first_of[id] = first[size_t(d)];
    }
    nlohmann::json ckpts = nlohmann::json::array();
    for (const auto& c : L.checkpoints) {
      std::set<std::string> saw = inherited;
      for (const auto& [id, s] : first_of)
        if (s <= c.step) saw.insert(id);
      ckpts.push_back({{"dir", c.dir}, {"step", c.step}, {"run", L.run_dir}, {"notes", saw}});
    }
    per_link[i] = ckpts;
    if (i > 0)
      for (const auto& [id, s] : first_of)
        if (s <= links_[i - 1]->init_step) inherited.insert(id);
  }
  nlohmann::json saw = nlohmann::json::array(), clean = nlohmann::json::array(), unknown;
  for (const auto& ckpts : per_link)
    for (const auto& c : ckpts) (c["notes"].empty() ? clean : saw).push_back(c);
  unknown = nlohmann::json::array();
  for (const auto& id : ids)
    if (!known.count(id)) unknown.push_back(id);
  return {{"mode", "exclude"},  {"run", links_[0]->run_dir}, {"ids", ids.size()},
          {"unknown", unknown}, {"checkpoints", saw},        {"clean", clean}};
}

}  // namespace asc
