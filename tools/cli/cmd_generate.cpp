// cmd_generate.cpp — `asclepius generate`: answers to questions about discharge summaries with
// the exact Asclepius prompt, one at a time (--note/--question), for a whole JSONL/CSV file in
// batches (--input/--output), or interactively (--interactive).
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>
#include <atomic>
#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "cli/sharded_job.h"
#include "cli/text_generator.h"
#include "common/error.h"
#include "common/fs.h"
#include "comm/communicator.h"
#include "common/host_memory.h"
#include "data/corpus.h"
#include "data/ingest.h"
#include "generate/answer.h"
#include "generate/generate.h"
#include "kernels/cuda_device.h"
#include "metrics/profiler.h"

namespace asc::cli {
namespace {

struct Opts {
  std::string model, tokenizer, note_file, question, input, output, model_name = "asclepius";
  std::string dtype = "fp32", device = "cpu", stats_json, prompt_template, preset, profile;
  bool allow_prompt_mismatch = false;
  std::vector<std::string> columns;
  bool interactive = false, with_ids = false, ignore_eos = false;
  int64_t batch_size = 8, threads = 0;
  double timeout_s = 600;
  GenerationOptions gen;
};

struct Stats {
  int64_t answers = 0, tokens = 0, truncated = 0;
  double seconds = 0;
};

class Answerer {
 public:
  Answerer(const Opts& o, c10::Device device) : o_(o), device_(device), tok_(o.tokenizer) {
    const auto dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    model_ = load_model_for_inference(o.model, dtype, &dir_, device);
    check_tokenizer_matches(tok_, model_->config(), dir_);
    gen_ = o.gen;
    gen_.eos_id = o.ignore_eos ? -1 : tok_.eos_id();
    // The model's other end ids too (Llama 3 lists several in config.json).
    if (!o.ignore_eos) gen_.more_eos_ids = model_->config().end_token_ids();
    gen_.pad_id = tok_.pad_id();
    prompt_ = choose_prompt(o, model_->config(), dir_);
    ASC_CHECK(gen_.max_new_tokens < generation_context(model_->config()),
              "--max-new-tokens {} leaves no room for a prompt in the model's context of {}",
              gen_.max_new_tokens, generation_context(model_->config()));
    if (device.is_cuda()) warm_up();
  }

  // Prompt ids for one (note, question); `where` names the record in warnings.
  std::vector<int32_t> prompt(const std::string& note, const std::string& question,
                              const std::string& where, bool warn = true) {
    const int64_t budget = generation_context(model_->config()) - gen_.max_new_tokens;
    PromptIds p = asclepius_prompt_ids(tok_, prompt_, note, question, budget);
    if (p.truncated() && warn) {
      ++stats.truncated;
      fmt::print(stderr,
                 "warning: {}: note cut to {} of {} bytes so that the prompt fits {} tokens "
                 "(context {} - max-new-tokens {})\n",
                 where, p.note_bytes_kept, p.note_bytes_total, budget,
                 generation_context(model_->config()), gen_.max_new_tokens);
    }
    return p.ids;
  }

  // `seeds`: one per prompt (sampling), or none (one generator for the batch).
  std::vector<Generated> answer(const std::vector<std::vector<int32_t>>& prompts,
                                const std::vector<uint64_t>& seeds = {}) {
    check_fits(prompts);
    const auto t0 = std::chrono::steady_clock::now();
    GenerationOptions g = gen_;
    g.prompt_seeds = seeds;
    auto out = generate(model_, prompts, g);
    stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& g : out) stats.tokens += int64_t(g.ids.size()) + (g.ended_with_eos ? 1 : 0);
    stats.answers += int64_t(out.size());
    return out;
  }
  std::string text(const Generated& g) const { return tok_.decode(g.ids); }
  const std::string& model_dir() const { return dir_; }
  const std::string& tokenizer_xxh64() const { return tok_.checksum(); }
  const std::string& prompt_xxh64() const { return prompt_.xxh64; }

  Stats stats;

 private:
  // One token of one prompt before any timing: CUDA's lazy start (cuBLAS handles, kernel
  // loading) is not counted in tokens/s. Its answer is discarded.
  void warm_up() {
    GenerationOptions g = gen_;
    g.max_new_tokens = 1;
    g.do_sample = false;
    g.num_beams = 1;
    g.prompt_seeds.clear();
    generate(model_, {{int32_t(tok_.bos_id())}}, g);
  }

  // The decoding state grows with beams x prompts x (prompt + new tokens) x layers: checked
  // against the memory it will take (the GPU's free memory with --device cuda, else the host's)
  // before anything is allocated, so a wide beam stops with the numbers instead of being killed
  // by the kernel (or failing deep inside libtorch).
  void check_fits(const std::vector<std::vector<int32_t>>& prompts) const {
    const LlamaConfig& c = model_->config();
    size_t longest = 0;
    for (const auto& p : prompts) longest = std::max(longest, p.size());
    // Continuous batching holds --batch-size rows (slots), not every prompt of the call, plus
    // the prefill cache of the prompts taken in one round (packed back to back).
    const bool slots = gen_.continuous && gen_.num_beams == 1;
    const double rows = slots ? double(std::min<size_t>(prompts.size(), size_t(o_.batch_size)))
                              : double(prompts.size()) * double(gen_.num_beams);
    const double es = o_.dtype == "bf16" ? 2 : 4;
    const double slots_per_row =
        double(int64_t(longest) + gen_.max_new_tokens) + (slots ? double(longest) : 0.0);
    const double cache = rows * 2.0 * double(c.num_hidden_layers) * double(c.num_key_value_heads) *
                         double(c.head_dim()) * slots_per_row * es;
    const double logits = rows * double(c.vocab_size) * 4.0 * 3;  // logits, log-probs, scores
    // The prompt pass runs every beam's row (every prompt of a round) at once: one layer's
    // attention scores (heads x T x T) and MLP and residual activations, in fp32, on top of the
    // cache.
    const double T = double(longest);
    const double prefill = rows * T *
                           (double(c.num_attention_heads) * T + 3.0 * double(c.intermediate_size) +
                            8.0 * double(c.hidden_size)) *
                           4.0;
    const double need = cache + logits + prefill;
    const bool gpu = device_.is_cuda();
    const long long have =
        gpu ? kernels::cuda_free_memory_bytes(device_.index()) : usable_memory_bytes();
    if (have <= 0 || need <= 0.8 * double(have)) return;
    ASC_FAIL_HINT(
        "use fewer --num-beams, a smaller --batch-size or fewer --max-new-tokens",
        "--num-beams {} over {} prompt(s) of up to {} tokens + {} new needs about "
        "{:.1f} GiB (key/value cache {:.1f}, prompt pass {:.1f}, scores {:.1f}); {}",
        gen_.num_beams, prompts.size(), longest, gen_.max_new_tokens, need / double(1 << 30),
        cache / double(1 << 30), prefill / double(1 << 30), logits / double(1 << 30),
        gpu ? fmt::format("{} has {:.1f} GiB free", device_.str(), double(have) / double(1 << 30))
            : fmt::format("this machine has {:.1f} GiB", double(have) / double(1 << 30)));
  }

  // --prompt-template, else the one the model was instruction-tuned with, else the default;
  // another than the model's is refused unless --allow-prompt-mismatch.
  static PromptTemplate choose_prompt(const Opts& o, const LlamaConfig& c, const std::string& dir) {
    if (o.prompt_template.empty())
      return c.prompt_template_xxh64.empty()
                 ? PromptTemplate::builtin(kDefaultPrompt)
                 : PromptTemplate::from_text(c.prompt_template, c.prompt_template_text,
                                             dir + "/config.json");
    PromptTemplate p = PromptTemplate::resolve(o.prompt_template, "--prompt-template");
    if (!c.prompt_template_xxh64.empty() && p.xxh64 != c.prompt_template_xxh64 &&
        !o.allow_prompt_mismatch)
      ASC_FAIL_HINT("drop --prompt-template, or add --allow-prompt-mismatch",
                    "--prompt-template {} (xxh64 {}) is not the template the model in {} was "
                    "instruction-tuned with: {} (xxh64 {})",
                    p.name, p.xxh64, dir, c.prompt_template, c.prompt_template_xxh64);
    return p;
  }

  const Opts& o_;
  c10::Device device_;
  Tokenizer tok_;
  PromptTemplate prompt_;
  LlamaForCausalLM model_{nullptr};
  std::string dir_;
  GenerationOptions gen_;
};

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ASC_CHECK(f, "cannot read the note file {}", path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void check_question(const std::string& q, const std::string& where) {
  ASC_CHECK(q.find_first_not_of(" \t\r\n") != std::string::npos, "{}: the question is empty",
            where);
}

void run_one(const Opts& o, Answerer& a) {
  check_question(o.question, "--question");
  const std::string note = read_text(o.note_file);
  ASC_CHECK(note.find_first_not_of(" \t\r\n") != std::string::npos, "note file {} is empty",
            o.note_file);
  auto g = a.answer({a.prompt(note, o.question, o.note_file)});
  std::cout << a.text(g[0]) << "\n";
}

// Everything an answer depends on: a parts directory left by another setting is not resumed.
std::string plan_settings(const Opts& o, const Answerer& a, const std::string& input_xxh64,
                          int64_t lines) {
  const auto& g = o.gen;
  auto j = nlohmann::json{{"input_xxh64", input_xxh64},
                          {"lines", lines},
                          {"model", std::filesystem::absolute(a.model_dir()).string()},
                          {"tokenizer_xxh64", a.tokenizer_xxh64()},
                          {"prompt_xxh64", a.prompt_xxh64()},
                          {"batch_size", o.batch_size},
                          {"dtype", o.dtype},
                          {"model_name", o.model_name},
                          {"with_ids", o.with_ids},
                          {"columns", o.columns},
                          {"max_new_tokens", g.max_new_tokens},
                          {"num_beams", g.num_beams},
                          {"do_sample", g.do_sample},
                          {"temperature", g.temperature},
                          {"top_k", g.top_k},
                          {"top_p", g.top_p},
                          {"length_penalty", g.length_penalty},
                          {"seed", g.seed},
                          {"ignore_eos", o.ignore_eos},
                          {"continuous", g.continuous}};
  // Sampled and bf16 answers depend on the device: a job is resumed on the one it started on
  // (recorded only off the CPU, so that earlier CPU jobs still resume).
  if (o.device != "cpu") j["device"] = o.device;
  return j.dump(1);
}

// One output line ("_line": the input order, removed by the merge).
nlohmann::ordered_json answer_line(const Opts& o, const NoteRecord& r, size_t input_line,
                                   bool has_answers, const std::vector<int32_t>& prompt,
                                   const Generated& g, const Answerer& a) {
  nlohmann::ordered_json line;
  line["_line"] = input_line;
  line["note"] = r.note;
  line["question"] = r.question;
  if (has_answers) line["answer"] = r.answer;  // on every line (judge export's candidates)
  if (!r.task.empty()) line["task"] = r.task;
  if (!r.id.empty()) line["id"] = r.id;
  line[o.model_name + "_answer"] = a.text(g);
  if (o.with_ids) {
    line["prompt_ids"] = prompt;
    // Names without "answer": upstream's scorer takes every column containing "answer" as a
    // model's answer.
    line[o.model_name + "_ids"] = g.ids;
    line[o.model_name + "_ended_with_eos"] = g.ended_with_eos;
  }
  return line;
}

// Batch answering at scale (cli/sharded_job.h): fixed batches of prompts sorted by length, rank
// r of N answering batches r, r + N, ...; killed and run again with the same command, a job
// skips the batches already written (at any number of ranks): nothing lost, nothing twice.
void run_batch(const Opts& o, Answerer& a, comm::Communicator& comm) {
  const int rank = comm.rank(), world = comm.size();
  IngestOptions ingest;
  ingest.skip_bad = true;
  for (const auto& c : o.columns) {
    const auto eq = c.find('=');
    ASC_CHECK(eq != std::string::npos && eq > 0, "--column '{}': expected NAME=COLUMN", c);
    ingest.columns[c.substr(0, eq)] = c.substr(eq + 1);
  }
  IngestReport report;
  const std::string bytes = read_file(o.input);
  auto records = parse_note_records(bytes, note_format_of(o.input), o.input, ingest, &report);
  if (records.empty() && report.skipped == 0)
    ASC_FAIL_HINT("give a CSV or JSONL file of notes and questions", "--input {}: holds no records",
                  o.input);
  std::vector<std::string> bad = report.errors;
  int64_t bad_count = report.skipped;
  ShardedJob job(
      o.output, plan_settings(o, a, xxh64_hex(bytes.data(), bytes.size()), int64_t(records.size())),
      comm, o.timeout_s);
  // Prompts for every record (warnings and skips reported by rank 0 only).
  std::vector<std::vector<int32_t>> prompts(records.size());
  std::vector<size_t> good, length(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const NoteRecord& r = records[i];
    const std::string where = fmt::format("{} record {}", o.input, r.record);
    try {
      check_question(r.question, where);
      prompts[i] = a.prompt(r.note, r.question, where, /*warn=*/rank == 0);
      length[i] = prompts[i].size();
      good.push_back(i);
    } catch (const Error& e) {  // reported at the end; the run goes on
      ++bad_count;
      bad.push_back(e.message());
      if (rank == 0) fmt::print(stderr, "skipped: {}\n", e.message());
    }
  }
  // A unit of work: one batch, or with continuous batching 8 batches' worth of lines decoded
  // through --batch-size slots.
  const size_t unit = size_t(o.batch_size) * (o.gen.continuous && o.gen.num_beams == 1 ? 8 : 1);
  const auto batches = plan_batches(good, length, unit);
  auto name = [](size_t k) { return fmt::format("batch-{:06d}", k); };
  const bool has_answers = std::any_of(records.begin(), records.end(),
                                       [](const NoteRecord& r) { return !r.answer.empty(); });
  int64_t mine = 0, mine_lines = 0;
  for (size_t k = size_t(rank); k < batches.size(); k += size_t(world))
    ++mine, mine_lines += int64_t(batches[k].size());
  Progress progress(rank, world, mine, mine_lines);
  for (size_t k = size_t(rank); k < batches.size(); k += size_t(world)) {
    const auto& batch = batches[k];
    if (job.done(name(k))) {
      progress.skip(int64_t(batch.size()));
      continue;
    }
    std::vector<std::vector<int32_t>> ps;
    std::vector<uint64_t> seeds;
    for (size_t i : batch) {
      ps.push_back(prompts[i]);
      seeds.push_back(line_seed(o.gen.seed, int64_t(i)));
    }
    const int64_t tokens_before = a.stats.tokens;
    auto answers = a.answer(ps, seeds);
    std::string text;
    for (size_t j = 0; j < batch.size(); ++j)
      text += jsonl_line(
          answer_line(o, records[batch[j]], batch[j], has_answers, ps[j], answers[j], a));
    job.write(name(k), text);
    progress.add(int64_t(batch.size()), a.stats.tokens - tokens_before);
  }
  std::vector<std::string> names;
  for (size_t k = 0; k < batches.size(); ++k) names.push_back(name(k));
  const int64_t answered = job.finish(names, records.size()).first;
  if (rank == 0) {
    ASC_CHECK(answered == int64_t(good.size()), "{} answers for {} good lines", answered,
              good.size());
    fmt::print(stderr, "wrote {} answers to {}\n", answered, o.output);
  }
  if (bad_count > 0) {
    if (rank == 0) {
      fmt::print(stderr, "{} input record(s) skipped:\n", bad_count);
      for (const auto& m : bad) fmt::print(stderr, "  {}\n", m);
      if (int64_t(bad.size()) < bad_count)
        fmt::print(stderr, "  ... and {} more\n", bad_count - int64_t(bad.size()));
    }
    ASC_FAIL("{} of {} records in {} could not be answered (listed above)", bad_count,
             bad_count + int64_t(good.size()), o.input);
  }
}

bool read_block(std::string* text) {  // lines up to an empty one; false at end of input
  text->clear();
  std::string line;
  bool any = false;
  while (std::getline(std::cin, line)) {
    any = true;
    if (line.empty() || line == "\r") return true;
    *text += line + "\n";
  }
  return any;
}

void run_interactive(const Opts& o, Answerer& a) {
  (void)o;
  for (int64_t n = 1;; ++n) {
    std::cout << "Discharge summary (end with an empty line; an empty summary quits):\n"
              << std::flush;
    std::string note, question;
    if (!read_block(&note) || note.empty()) break;
    std::cout << "Instruction:\n" << std::flush;
    if (!std::getline(std::cin, question)) break;
    try {
      check_question(question, "instruction");
      auto g = a.answer({a.prompt(note, question, fmt::format("question {}", n))});
      std::cout << "Answer:\n" << a.text(g[0]) << "\n\n" << std::flush;
    } catch (const Error& e) {
      std::cout << "error: " << e.message() << "\n\n" << std::flush;
    }
  }
}

// --preset: upstream's evaluation settings for what the user did not set explicitly.
void apply_preset(Opts& o, const CLI::App& cmd) {
  if (o.preset == "asclepius-eval") {  // what the user did not set explicitly
    auto unset = [&](const char* flag) { return cmd.count(flag) == 0; };
    if (unset("--dtype")) o.dtype = "bf16";
    if (unset("--num-beams")) o.gen.num_beams = 5;
    if (unset("--do-sample")) o.gen.do_sample = true;
    if (unset("--temperature")) o.gen.temperature = 1.0;
    if (unset("--top-k")) o.gen.top_k = 50;  // transformers' default, left on upstream
    if (unset("--max-new-tokens")) o.gen.max_new_tokens = 400;
    fmt::print(stderr,
               "preset asclepius-eval: {}, {} beams, {}, temperature {}, top-k {}, {} new "
               "tokens\n",
               o.dtype, o.gen.num_beams, o.gen.do_sample ? "sampling" : "no sampling",
               o.gen.temperature, o.gen.top_k, o.gen.max_new_tokens);
  }
}

// The decoding options: length, beams, sampling and its warpers, seed.
void add_decoding_options(CLI::App* cmd, GenerationOptions& gen) {
  cmd->add_option("--max-new-tokens", gen.max_new_tokens, "Answer length limit")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--num-beams", gen.num_beams, "Beam search width (the paper used 5)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--do-sample", gen.do_sample, "Sample instead of taking the best token");
  cmd->add_option("--temperature", gen.temperature, "Sampling temperature")
      ->check(CLI::Range(1e-4, 1e4));  // below, logits / temperature overflow to inf
  cmd->add_option("--top-k", gen.top_k, "Sample among the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", gen.top_p, "Nucleus sampling mass (1: off)")
      ->check(CLI::Range(1e-9, 1.0));
  cmd->add_option("--length-penalty", gen.length_penalty, "Beam score = logprob / len^this")
      ->check(CLI::Range(-1e3, 1e3));
  cmd->add_option("--seed", gen.seed, "Sampling seed");
}

// The command itself, once its options are parsed.
void run_generate(Opts& o, const CLI::App& cmd) {
  if (!o.preset.empty()) apply_preset(o, cmd);
  if (o.note_file.empty() && o.input.empty() && !o.interactive)
    ASC_FAIL_HINT("see asclepius generate --help",
                  "generate needs --note and --question, --input and --output, or "
                  "--interactive");
  const c10::Device device = inference_device(o.device);  // before loading anything
  if (!o.output.empty())
    for (const auto& f : {o.output, o.output + ".rejected.jsonl"})  // removed if stale
      check_output_file("--output", f, {o.input, o.model, o.tokenizer});
  if (!o.stats_json.empty())
    check_output_file("--stats-json", o.stats_json,
                      {o.input, o.note_file, o.model, o.tokenizer, o.output});
  // Under mpirun (or srun) the ranks share the --input lines; the other modes run alone.
  auto comm = start_job(o.device, o.threads, o.timeout_s);
  // Under mpirun each rank writes its own trace (FILE.rankN): the name checked is the one written.
  const std::string trace = o.profile.empty() || comm->size() == 1
                                ? o.profile
                                : fmt::format("{}.rank{}", o.profile, comm->rank());
  if (!trace.empty())
    check_output_file("--profile", trace,
                      {o.input, o.note_file, o.model, o.tokenizer, o.output, o.stats_json});
  if (comm->size() > 1 && o.input.empty())
    ASC_FAIL(
        "generate under {} ranks needs --input/--output (--note and --interactive run "
        "in one process)",
        comm->size());
  // CLI11's ranges let NaN through (every comparison with it is false).
  for (const auto& [name, v] : {std::pair<const char*, double>{"--temperature", o.gen.temperature},
                                {"--top-p", o.gen.top_p},
                                {"--length-penalty", o.gen.length_penalty}})
    if (!std::isfinite(v)) ASC_FAIL("{}: {} is not a number", name, v);
  o.gen.continuous_slots = o.batch_size;
  Answerer a(o, device);
  {
    // --profile: libtorch's profiler over everything after the model is loaded (one "step").
    StepProfiler profiler(trace.empty() ? 0 : 1, 1, trace, device.is_cuda());
    profiler.before_step(1);
    if (!o.note_file.empty())
      run_one(o, a);
    else if (!o.input.empty())
      run_batch(o, a, *comm);
    else
      run_interactive(o, a);
    profiler.after_step(1);
  }
  const double tps = a.stats.seconds > 0 ? double(a.stats.tokens) / a.stats.seconds : 0.0;
  fmt::print(stderr, "{} answers, {} tokens generated in {:.2f} s ({:.1f} tokens/s)\n",
             a.stats.answers, a.stats.tokens, a.stats.seconds, tps);
  if (!o.stats_json.empty() && comm->rank() == 0) {  // rank 0's share
    nlohmann::json j = {{"answers", a.stats.answers},
                        {"tokens", a.stats.tokens},
                        {"seconds", a.stats.seconds},
                        {"tokens_per_s", tps},
                        {"truncated_notes", a.stats.truncated},
                        {"threads", torch::get_num_threads()},
                        {"device", o.device},
                        {"dtype", o.dtype}};
    std::ofstream(o.stats_json) << j.dump(2) << "\n";
  }
}

}  // namespace

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate",
                                 "Answer questions about discharge summaries with a trained model");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Run directory, step checkpoint or Hugging Face directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.model (SentencePiece), tokenizer.json (byte-level BPE) or a model "
                  "directory holding one")
      ->required()
      ->check(CLI::ExistingPath);
  auto* note = cmd->add_option("--note", o->note_file, "A discharge summary (text file)")
                   ->check(CLI::ExistingFile);
  auto* q = cmd->add_option("--question", o->question, "The instruction about the note");
  auto* input = cmd->add_option("--input", o->input, "Notes and questions (.jsonl, .csv, .json)")
                    ->check(CLI::ExistingFile);
  auto* output = cmd->add_option("--output", o->output, "Answers as JSON lines");
  auto* inter = cmd->add_flag("--interactive", o->interactive, "Ask in a loop");
  note->needs(q);
  q->needs(note);
  input->needs(output);
  output->needs(input);
  note->excludes(input)->excludes(inter);
  input->excludes(inter);
  cmd->add_option("--column", o->columns, "Column mapping for --input, e.g. note=patient");
  cmd->add_option("--model-name", o->model_name,
                  "Answers go to the field <model-name>_answer (the GPT-4 scoring layout)");
  cmd->add_flag("--with-ids", o->with_ids,
                "Also write prompt_ids, <model-name>_ids and <model-name>_ended_with_eos");
  cmd->add_option("--prompt-template", o->prompt_template,
                  "Prompt template: a built-in name (" +
                      fmt::format("{}", fmt::join(builtin_prompt_names(), ", ")) +
                      ") or a file; default: the one the model was instruction-tuned with "
                      "(config.json), else asclepius");
  cmd->add_flag("--allow-prompt-mismatch", o->allow_prompt_mismatch,
                "Use --prompt-template even when the model was tuned with another");
  cmd->add_flag("--ignore-eos", o->ignore_eos,
                "Always generate --max-new-tokens tokens (benchmarks)");
  add_decoding_options(cmd, o->gen);
  cmd->add_option("--dtype", o->dtype, "Compute dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--device", o->device,
                  "Where the weights and the KV cache live: cpu or cuda (GPU 0); the run's "
                  "train.device is not read")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--batch-size", o->batch_size, "Prompts decoded together with --input")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--continuous-batching", o->gen.continuous,
                "Greedy/sampling with --input: a finished row takes the next prompt at once "
                "(--batch-size rows decode together)");
  cmd->add_option("--threads", o->threads, "CPU threads (0: libtorch's default)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stats-json", o->stats_json, "Write timing (tokens/s) as JSON");
  cmd->add_option("--profile", o->profile,
                  "Write a Chrome trace of the generation (libtorch's profiler: CPU operators, "
                  "and kernels on cuda) to this file (FILE.rankN under mpirun); every operator "
                  "is kept in memory until the end, so profile a small input; "
                  "tools/bench/trace_summary.py --cpu ranks its operators");
  cmd->add_option("--preset", o->preset,
                  "asclepius-eval: upstream's evaluation settings (src/evaluate.py): bf16, 5 "
                  "beams with sampling, temperature 1, top-k 50, 400 new tokens; options given "
                  "explicitly win")
      ->check(CLI::IsMember({"asclepius-eval"}));
  cmd->add_option("--timeout-s", o->timeout_s,
                  "Under mpirun: how long ranks wait for a silent rank before stopping")
      ->check(CLI::Range(1.0, 1e6));
  cmd->callback([o, cmd] { run_generate(*o, *cmd); });
}

}  // namespace asc::cli
