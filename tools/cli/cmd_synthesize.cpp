// cmd_synthesize.cpp — `asclepius synthesize notes|questions|answers`: upstream's data pipeline
// (preprocessing/) with a local model instead of a paid API. Case reports become discharge
// summaries, each summary gets a question for one of the 8 tasks (upstream's bootstrapping: 3
// fixed examples + 2 from the pool of questions already made for the task), each question an
// answer; the prompts are files (data/synthesis/), the engine is the ranks' shared, resumable
// generation of `generate --input` (cli/sharded_job.h).
//
// Determinism: a line's sampling seed, task draw and example draw derive from (--seed, line);
// the question pool grows wave by wave (--wave-size lines in input order, each wave's prompts
// drawing from the questions of the waves before it), so every output is the same at any number
// of ranks and after any resume.
#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint/manifest.h"
#include "cli/commands.h"
#include "cli/output_path.h"
#include "cli/sharded_job.h"
#include "cli/text_generator.h"
#include "comm/communicator.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/host_memory.h"
#include "common/strings.h"
#include "data/ingest.h"
#include "data/synthesis.h"
#include "data/tokenizer.h"
#include "generate/answer.h"
#include "generate/generate.h"

namespace asc::cli {
namespace {

using Json = nlohmann::ordered_json;

// What one stage fills and writes.
struct Stage {
  std::string name;                 // notes | questions | answers (the prompt files' prefix)
  std::string field;                // the output field the model writes
  std::vector<std::string> fields;  // the prompt's placeholders
  std::string cut;                  // the placeholder cut when a prompt does not fit
  int64_t max_new_tokens;           // default (upstream: the rest of the context, 300, +400)
};
const Stage& stage_named(const std::string& name) {
  static const std::vector<Stage> stages = {
      {"notes", "note", {"pmc"}, "pmc", 1024},
      {"questions", "question", {"task", "note", "samples"}, "note", 300},
      {"answers", "answer", {"note", "question"}, "note", 400}};
  for (const auto& s : stages)
    if (s.name == name) return s;
  ASC_FAIL("unknown synthesis stage {}", name);
}

struct Opts {
  std::string input, out, model, tokenizer, prompt = "upstream", tasks = "upstream", chat = "none",
                                            dtype = "fp32", device = "cpu";
  std::vector<std::string> columns;
  int64_t batch_size = 8, wave_size = 64, threads = 0, max_new_tokens = 0;
  double timeout_s = 600;
  bool keep_unfinished = false, with_prompts = false, no_filters = false, greedy = false,
       convert_deid = false;
  GenerationOptions gen;
};

// One input line: what the stage reads, and the row it writes (the input's own fields first).
struct Row {
  NoteRecord rec;
  Json base;
  std::string where;
};

// The input's rows: the logical fields (ingest's column mapping) under canonical names, a
// JSONL line's other fields carried over (earlier stages' "synthesis" records among them).
// Unreadable lines and lines without what the stage needs go to `bad`.
std::vector<Row> read_rows(const Opts& o, const Stage& st, std::vector<std::string>* bad,
                           std::string* input_xxh64) {
  IngestOptions ingest;
  ingest.skip_bad = true;
  ingest.convert_deid = o.convert_deid;
  if (st.name == "notes") ingest.columns["note"] = "patient";  // PMC-Patients' case report
  for (const auto& c : o.columns) {
    const auto eq = c.find('=');
    ASC_CHECK(eq != std::string::npos && eq > 0, "--column '{}': expected NAME=COLUMN", c);
    const std::string logical = c.substr(0, eq) == "case_report" ? "note" : c.substr(0, eq);
    ingest.columns[logical] = c.substr(eq + 1);
  }
  const std::string bytes = read_file(o.input);
  *input_xxh64 = xxh64_hex(bytes);
  const std::string format = note_format_of(o.input);
  ASC_CHECK(format == "jsonl" || format == "csv", "--input {}: expected a .jsonl or .csv file",
            o.input);
  IngestReport report;
  auto records = parse_note_records(bytes, format, o.input, ingest, &report);
  *bad = report.errors;
  std::vector<std::string> lines;  // JSONL: the non-blank lines (a record's number indexes them)
  if (format == "jsonl") {
    std::istringstream in(bytes);
    for (std::string l; std::getline(in, l);)
      if (l.find_first_not_of(" \t\r\n\f\v") != std::string::npos) lines.push_back(l);
  }
  // Fields written under canonical names below (the notes stage's source is its case report).
  // The merge's own fields (`_line`, `_reject`, `reject_reason`) are never carried over: a row
  // fed back from a rejected file starts clean.
  std::vector<std::string> canonical = {"patient_id", "patient", "note",
                                        "question",   "answer",  "task",
                                        "_line",      "_reject", "reject_reason"};
  if (st.name == "notes") canonical.push_back("case_report");
  for (const auto& [logical, column] : ingest.columns) canonical.push_back(column);
  std::vector<Row> rows;
  for (auto& r : records) {
    Row row{r, Json::object(), fmt::format("{} record {}", o.input, r.record)};
    if (!r.id.empty()) row.base["patient_id"] = r.id;
    if (format == "jsonl") {
      const Json given = Json::parse(lines[size_t(r.record - 1)]);
      for (const auto& [k, v] : given.items())
        if (std::find(canonical.begin(), canonical.end(), k) == canonical.end()) row.base[k] = v;
    }
    row.base[st.name == "notes" ? "case_report" : "note"] = r.note;
    if (!r.question.empty() && st.name != "notes") row.base["question"] = r.question;
    if (!r.task.empty()) row.base["task"] = r.task;
    const char* missing =
        r.note.find_first_not_of(" \t\r\n") == std::string::npos
            ? (st.name == "notes" ? "an empty case report" : "an empty note")
        : st.name == "answers" && r.question.find_first_not_of(" \t\r\n") == std::string::npos
            ? "an empty question"
            : nullptr;
    if (missing)
      bad->push_back(fmt::format("{}: {}", row.where, missing));
    else
      rows.push_back(std::move(row));
  }
  return rows;
}

// The stage's generation settings and model (cli/text_generator.h).
TextGenerator make_generator(const Opts& o, const Stage& st) {
  TextGeneratorOptions t{o.model, o.tokenizer, o.dtype, o.chat, o.gen, o.device};
  t.gen.do_sample = !o.greedy;
  t.gen.max_new_tokens = o.max_new_tokens > 0 ? o.max_new_tokens : st.max_new_tokens;
  return TextGenerator(t);
}

// Seed streams of a line (cli/sharded_job.h line_seed): sampling is stream 0, as in generate.
constexpr uint64_t kTaskStream = 1, kExampleStream = 2;

// The questions stage's state: the tasks and the pool of questions made so far, per task.
struct Bootstrap {
  std::vector<SynthTask> tasks;
  std::string tasks_xxh64;
  std::vector<std::vector<std::string>> pool;
  size_t task_of(const Row& r, uint64_t seed, size_t line) const {
    if (r.rec.task.empty())
      return SynthRng(line_seed(seed, int64_t(line), kTaskStream)).below(tasks.size());
    for (size_t t = 0; t < tasks.size(); ++t)
      if (tasks[t].name == r.rec.task) return t;
    ASC_FAIL("{}: task '{}' is none of the tasks file's ({})", r.where, r.rec.task, tasks.size());
  }
  bool has_task(const std::string& name) const {
    return name.empty() || std::any_of(tasks.begin(), tasks.end(),
                                       [&](const SynthTask& t) { return t.name == name; });
  }
};

// One line's prompt, ready for the model, and what its output row records about it.
struct Prepared {
  std::vector<int32_t> ids;
  std::string text;
  Json meta;
};

Prepared prepare(const Opts& o, const Stage& st, const Row& r, size_t line, const SynthPrompt& p,
                 const TextGenerator& s, const Bootstrap& b) {
  std::map<std::string, std::string> values;
  Prepared out;
  out.meta = {{"prompt", p.name}, {"prompt_xxh64", p.xxh64}};
  out.meta.update(s.record());
  if (st.name == "notes") {
    values["pmc"] = r.rec.note;
  } else if (st.name == "questions") {
    const size_t t = b.task_of(r, s.options().seed, line);
    const auto examples = draw_examples(b.tasks[t], b.pool[t],
                                        line_seed(s.options().seed, int64_t(line), kExampleStream));
    values = {{"task", b.tasks[t].name},
              {"note", r.rec.note},
              {"samples", fmt::format("{}", fmt::join(examples, "\n"))}};
    out.meta["task"] = b.tasks[t].name;
    out.meta["tasks_xxh64"] = b.tasks_xxh64;
    out.meta["examples"] = examples;
    out.meta["pool_examples"] = std::min<size_t>(2, b.pool[t].size());
  } else {
    values = {{"note", r.rec.note}, {"question", r.rec.question}};
  }
  size_t kept = 0;
  try {
    out.ids = s.fit(p, values, st.cut, &kept, &out.text);
  } catch (const Error& e) {  // the prompt without the cut field is too long: a rejected row
    out.meta["error"] = e.message();
    return out;
  }
  if (kept < values[st.cut].size())
    out.meta["input_cut"] = {
        {"field", st.cut}, {"bytes_kept", kept}, {"bytes", values[st.cut].size()}};
  if (o.with_prompts) out.meta["prompt_text"] = out.text;
  return out;
}

// The output row of one line: the input's fields, the model's text, the stage's record under
// "synthesis" (a name without "answer": upstream's scorer takes such columns for models), and
// "_reject" when the row is not kept (cli/sharded_job.h).
// `g` null: the prompt could not be made (p.meta["error"] says why), the row is rejected.
Json output_row(const Opts& o, const Stage& st, const Row& r, size_t line, Prepared p,
                const Generated* g, const std::string& text) {
  Json row = r.base;
  if (p.meta.contains("task")) row["task"] = p.meta["task"];
  if (g) row[st.field] = text;
  if (g) p.meta["finish_reason"] = g->ended_with_eos ? "stop" : "length";
  if (!row.contains("synthesis") || !row["synthesis"].is_object())
    row["synthesis"] = Json::object();
  row["synthesis"][st.field] = p.meta;
  std::string reason = !g ? "prompt_too_long" : text.empty() ? "empty" : "";
  if (reason.empty() && !g->ended_with_eos && !o.keep_unfinished) reason = "length";
  if (reason.empty() && st.name == "answers" && !o.no_filters)
    reason = upstream_filter_reason(r.rec.note, r.rec.question, text);
  if (!reason.empty()) row["_reject"] = reason;
  row["_line"] = line;
  return row;
}

std::string plan_settings(const Opts& o, const Stage& st, const TextGenerator& s,
                          const SynthPrompt& p, const Bootstrap& b, const std::string& input_xxh64,
                          size_t rows) {
  Json j = s.settings();
  j["stage"] = st.name;
  j["input_xxh64"] = input_xxh64;
  j["rows"] = rows;
  j["prompt_xxh64"] = p.xxh64;
  j["tasks_xxh64"] = b.tasks_xxh64;
  j["batch_size"] = o.batch_size;
  j["wave_size"] = o.wave_size;
  j["dtype"] = o.dtype;
  j["keep_unfinished"] = o.keep_unfinished;
  j["filters"] = !o.no_filters;
  j["with_prompts"] = o.with_prompts;
  j["columns"] = o.columns;
  j["convert_deid"] = o.convert_deid;
  return j.dump(1);
}

// This rank's share of a wave of `lines`: batches r, r + N, ... of ceil(lines / batch), and
// how many lines they hold.
std::pair<int64_t, int64_t> my_share(size_t lines, int64_t batch, int rank, int world) {
  std::pair<int64_t, int64_t> share{0, 0};
  for (int64_t k = rank; k * batch < int64_t(lines); k += world)
    ++share.first, share.second += std::min<int64_t>(batch, int64_t(lines) - k * batch);
  return share;
}

// The questions of a finished wave join the pool, in input order.
void grow_pool(ShardedJob& job, const std::vector<std::string>& names, Bootstrap& b) {
  auto lines = job.read(names);
  std::sort(lines.begin(), lines.end(), [](const Json& x, const Json& y) {
    return x["_line"].get<size_t>() < y["_line"].get<size_t>();
  });
  for (const auto& l : lines) {
    if (l.contains("_reject")) continue;
    const std::string task = l["task"].get<std::string>();
    for (size_t t = 0; t < b.tasks.size(); ++t)
      if (b.tasks[t].name == task) b.pool[t].push_back(l["question"].get<std::string>());
  }
}

// Decodes one batch of a wave and writes it to the parts.
void run_one_batch(const Opts& o, const Stage& st, const std::vector<Row>& rows,
                   const std::vector<size_t>& batch, std::vector<Prepared>& prepared, size_t w0,
                   TextGenerator& s, ShardedJob& job, const std::string& name) {
  std::vector<std::vector<int32_t>> ps;
  std::vector<uint64_t> seeds;
  for (size_t i : batch)
    if (!prepared[i - w0].ids.empty()) {  // empty: no prompt could be made (rejected)
      ps.push_back(prepared[i - w0].ids);
      seeds.push_back(line_seed(s.options().seed, int64_t(i)));
    }
  const auto gens = ps.empty() ? std::vector<Generated>{} : s.run(ps, seeds);
  std::string text;
  size_t next = 0;
  for (size_t i : batch) {
    Prepared& p = prepared[i - w0];
    const Generated* g = p.ids.empty() ? nullptr : &gens[next++];
    text += jsonl_line(output_row(o, st, rows[i], i, std::move(p), g,
                                  g ? tidy_reply(s.decode(g->ids)) : std::string()));
  }
  job.write(name, text);
}

void report(const ShardedJob& job, const Stage& st, std::pair<int64_t, int64_t> counts,
            const std::vector<std::string>& bad) {
  std::map<std::string, int64_t> reasons;
  if (counts.second > 0) {
    std::istringstream in(read_file(job.rejected_output()));
    for (std::string l; std::getline(in, l);)
      ++reasons[Json::parse(l)["reject_reason"].get<std::string>()];
  }
  fmt::print(stderr, "wrote {} {} to {}", counts.first, st.name, job.output());
  if (counts.second > 0) {
    std::vector<std::string> parts;
    for (const auto& [k, v] : reasons) parts.push_back(fmt::format("{} {}", v, k));
    fmt::print(stderr, "; {} rejected ({}) to {}", counts.second, fmt::join(parts, ", "),
               job.rejected_output());
  }
  fmt::print(stderr, "\n");
  if (!bad.empty()) {
    fmt::print(stderr, "{} input record(s) skipped:\n", bad.size());
    for (const auto& m : bad) fmt::print(stderr, "  {}\n", m);
  }
}

void run_stage(const Opts& o, const Stage& st, comm::Communicator& comm) {
  const int rank = comm.rank(), world = comm.size();
  std::vector<std::string> bad;
  std::string input_xxh64;
  // The prompt and tasks are checked before anything else (a missing placeholder is refused at
  // start, not after the model loaded).
  const SynthPrompt prompt = SynthPrompt::resolve(o.prompt, st.name, st.fields, "--prompt");
  Bootstrap b;
  if (st.name == "questions") {
    b.tasks = load_synth_tasks(o.tasks, &b.tasks_xxh64);
    b.pool.resize(b.tasks.size());
  }
  auto rows = read_rows(o, st, &bad, &input_xxh64);
  if (st.name == "questions")  // a task the tasks file does not have: listed, not a crash
    rows.erase(std::remove_if(rows.begin(), rows.end(),
                              [&](const Row& r) {
                                if (b.has_task(r.rec.task)) return false;
                                bad.push_back(fmt::format("{}: task '{}' is none of {}'s", r.where,
                                                          r.rec.task, o.tasks));
                                return true;
                              }),
               rows.end());
  ASC_CHECK(!rows.empty() || !bad.empty(), "--input {}: holds no records", o.input);
  TextGenerator s = make_generator(o, st);
  ShardedJob job(o.out, plan_settings(o, st, s, prompt, b, input_xxh64, rows.size()), comm,
                 o.timeout_s);
  const size_t wave =
      st.name == "questions" ? size_t(o.wave_size) : std::max<size_t>(1, rows.size());
  int64_t units = 0, mine = 0;
  for (size_t w0 = 0; w0 < rows.size(); w0 += wave) {
    const size_t n = std::min(rows.size(), w0 + wave) - w0;
    const auto [k, l] = my_share(n, o.batch_size, rank, world);
    units += k;
    mine += l;
  }
  Progress progress(rank, world, units, mine);
  std::vector<std::string> names;
  for (size_t w0 = 0; w0 < rows.size(); w0 += wave) {
    const size_t w1 = std::min(rows.size(), w0 + wave);
    std::vector<Prepared> prepared;
    std::vector<size_t> lines, length(w1);
    for (size_t i = w0; i < w1; ++i) {
      prepared.push_back(prepare(o, st, rows[i], i, prompt, s, b));
      if (prepared.back().meta.contains("input_cut") && rank == 0)
        fmt::print(stderr, "warning: {}: {} cut to {} of {} bytes to fit the context\n",
                   rows[i].where, st.cut,
                   prepared.back().meta["input_cut"]["bytes_kept"].get<size_t>(),
                   prepared.back().meta["input_cut"]["bytes"].get<size_t>());
      if (prepared.back().meta.contains("error") && rank == 0)
        fmt::print(stderr, "rejected: {}: {}\n", rows[i].where,
                   prepared.back().meta["error"].get<std::string>());
      length[i] = prepared.back().ids.size();
      lines.push_back(i);
    }
    const auto batches = plan_batches(lines, length, size_t(o.batch_size));
    std::vector<std::string> wave_names;
    for (size_t k = 0; k < batches.size(); ++k)
      wave_names.push_back(wave == rows.size()
                               ? fmt::format("batch-{:06d}", k)
                               : fmt::format("wave-{:06d}-batch-{:06d}", w0 / wave, k));
    for (size_t k = size_t(rank); k < batches.size(); k += size_t(world)) {
      if (job.done(wave_names[k])) {
        progress.skip(int64_t(batches[k].size()));
        continue;
      }
      const int64_t before = s.tokens;
      run_one_batch(o, st, rows, batches[k], prepared, w0, s, job, wave_names[k]);
      progress.add(int64_t(batches[k].size()), s.tokens - before);
    }
    names.insert(names.end(), wave_names.begin(), wave_names.end());
    if (st.name == "questions" && w1 < rows.size()) {
      job.wait_for_all();
      grow_pool(job, wave_names, b);
    }
  }
  const auto counts = job.finish(names, rows.size());
  if (rank == 0) report(job, st, counts, bad);
}

void add_stage(CLI::App& parent, const std::string& name, const std::string& help) {
  auto* cmd = parent.add_subcommand(name, help);
  auto o = std::make_shared<Opts>();
  o->gen.temperature = 1.0;  // upstream's requests
  cmd->add_option("--input", o->input,
                  name == "notes" ? "Case reports (.jsonl/.csv; the text in 'patient', as "
                                    "PMC-Patients, or --column case_report=COL)"
                                  : "Rows of the previous stage (.jsonl/.csv)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Rows as JSON lines (rejected rows: <out>.rejected.jsonl)")
      ->required();
  cmd->add_option("--model", o->model, "Run directory, step checkpoint or Hugging Face directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", o->tokenizer, "The model's tokenizer (file or directory)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--prompt", o->prompt,
                  "Prompt: 'upstream' (data/synthesis/" + name + "-upstream.txt) or a file");
  if (name == "questions") {
    cmd->add_option("--tasks", o->tasks, "Tasks and their example questions: 'upstream' or a file");
    cmd->add_option(
           "--wave-size", o->wave_size,
           "Lines per wave: a wave's prompts draw examples from the questions of the waves "
           "before it")
        ->check(CLI::PositiveNumber);
  }
  cmd->add_option(
      "--chat-template", o->chat,
      "Wrap each prompt for an instruction-tuned model: none, llama3, mistral or a file "
      "with {prompt}");
  cmd->add_option("--column", o->columns, "Column mapping, e.g. note=patient or case_report=text");
  cmd->add_flag("--convert-deid", o->convert_deid,
                "Convert MIMIC-style [** ... **] placeholders in the input text as upstream's "
                "convert_deid_tag.py (real notes, Asclepius-R)");
  cmd->add_option("--max-new-tokens", o->max_new_tokens,
                  fmt::format("Reply length limit (default {})", stage_named(name).max_new_tokens))
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", o->gen.temperature, "Sampling temperature (upstream: 1)")
      ->check(CLI::Range(1e-4, 1e4));
  cmd->add_option("--top-k", o->gen.top_k, "Sample among the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->gen.top_p, "Nucleus sampling mass (1: off)")
      ->check(CLI::Range(1e-9, 1.0));
  cmd->add_flag("--greedy", o->greedy, "Take the most likely token instead of sampling");
  cmd->add_option("--seed", o->gen.seed, "Seed of sampling, task and example draws");
  cmd->add_flag("--keep-unfinished", o->keep_unfinished,
                "Keep rows whose reply hit --max-new-tokens (default: rejected)");
  if (name == "answers")
    cmd->add_flag("--no-filters", o->no_filters,
                  "Keep rows upstream's filter drops (self-references, answers ending in '?')");
  cmd->add_flag("--with-prompts", o->with_prompts,
                "Record each filled prompt in the row (synthesis.<field>.prompt_text)");
  add_job_options(cmd, &o->dtype, &o->device, &o->batch_size, &o->threads, &o->timeout_s,
                  "Prompts decoded together");
  cmd->callback([o, name] {
    // <out>.rejected.jsonl is written (or an old one removed) too: never an input.
    for (const auto& f : {o->out, o->out + ".rejected.jsonl"})
      check_output_file("--out", f, {o->input, o->model, o->tokenizer});
    auto comm = start_job(o->device, o->threads, o->timeout_s);
    if (!std::isfinite(o->gen.temperature) || !std::isfinite(o->gen.top_p))
      ASC_FAIL("--temperature and --top-p must be numbers");
    run_stage(*o, stage_named(name), *comm);
  });
}

}  // namespace

void add_synthesize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "synthesize",
      "Upstream's data pipeline with a local model: case reports -> notes -> questions -> answers");
  cmd->require_subcommand(1);
  add_stage(*cmd, "notes", "Rewrite case reports as discharge summaries (upstream's note prompt)");
  add_stage(*cmd, "questions",
            "A question per note for one of the 8 tasks, with upstream's bootstrapped examples");
  add_stage(*cmd, "answers", "Answer each question from its note (upstream's answer prompt)");
}

}  // namespace asc::cli
