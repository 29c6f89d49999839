// cmd_generate.cpp — `asclepius generate`: answers to questions about discharge summaries with
// the exact Asclepius prompt, one at a time (--note/--question), for a whole JSONL/CSV file in
// batches (--input/--output), or interactively (--interactive).
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli/commands.h"
#include "cli/output_path.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/host_memory.h"
#include "data/corpus.h"
#include "data/ingest.h"
#include "generate/answer.h"
#include "generate/generate.h"

namespace asc::cli {
namespace {

struct Opts {
  std::string model, tokenizer, note_file, question, input, output, model_name = "asclepius";
  std::string dtype = "fp32", stats_json, prompt_template;
  bool allow_prompt_mismatch = false;
  std::vector<std::string> columns;
  bool interactive = false, with_ids = false, ignore_eos = false;
  int64_t batch_size = 8, threads = 0;
  GenerationOptions gen;
};

struct Stats {
  int64_t answers = 0, tokens = 0, truncated = 0;
  double seconds = 0;
};

class Answerer {
 public:
  explicit Answerer(const Opts& o) : o_(o), tok_(o.tokenizer) {
    const auto dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    model_ = load_model_for_inference(o.model, dtype, &dir_);
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
  }

  // Prompt ids for one (note, question); `where` names the record in warnings.
  std::vector<int32_t> prompt(const std::string& note, const std::string& question,
                              const std::string& where) {
    const int64_t budget = generation_context(model_->config()) - gen_.max_new_tokens;
    PromptIds p = asclepius_prompt_ids(tok_, prompt_, note, question, budget);
    if (p.truncated()) {
      ++stats.truncated;
      fmt::print(stderr,
                 "warning: {}: note cut to {} of {} bytes so that the prompt fits {} tokens "
                 "(context {} - max-new-tokens {})\n",
                 where, p.note_bytes_kept, p.note_bytes_total, budget,
                 generation_context(model_->config()), gen_.max_new_tokens);
    }
    return p.ids;
  }

  std::vector<Generated> answer(const std::vector<std::vector<int32_t>>& prompts) {
    check_fits(prompts);
    const auto t0 = std::chrono::steady_clock::now();
    auto out = generate(model_, prompts, gen_);
    stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& g : out) stats.tokens += int64_t(g.ids.size()) + (g.ended_with_eos ? 1 : 0);
    stats.answers += int64_t(out.size());
    return out;
  }
  std::string text(const Generated& g) const { return tok_.decode(g.ids); }

  Stats stats;

 private:
  // The decoding state grows with beams x prompts x (prompt + new tokens) x layers: checked
  // against the machine's memory before anything is allocated, so a wide beam stops with the
  // numbers instead of being killed by the kernel (or failing deep inside libtorch).
  void check_fits(const std::vector<std::vector<int32_t>>& prompts) const {
    const LlamaConfig& c = model_->config();
    size_t longest = 0;
    for (const auto& p : prompts) longest = std::max(longest, p.size());
    const double rows = double(prompts.size()) * double(gen_.num_beams);
    const double es = o_.dtype == "bf16" ? 2 : 4;
    const double cache = rows * 2.0 * double(c.num_hidden_layers) * double(c.num_key_value_heads) *
                         double(c.head_dim()) * double(int64_t(longest) + gen_.max_new_tokens) * es;
    const double logits = rows * double(c.vocab_size) * 4.0 * 3;  // logits, log-probs, scores
    // The prompt pass runs every beam's row at once: one layer's attention scores (heads x T x
    // T) and MLP and residual activations, in fp32, on top of the cache.
    const double T = double(longest);
    const double prefill = rows * T *
                           (double(c.num_attention_heads) * T + 3.0 * double(c.intermediate_size) +
                            8.0 * double(c.hidden_size)) *
                           4.0;
    const double need = cache + logits + prefill;
    const long long host = usable_memory_bytes();
    if (host <= 0 || need <= 0.8 * double(host)) return;
    ASC_FAIL_HINT("use fewer --num-beams, a smaller --batch-size or fewer --max-new-tokens",
                  "--num-beams {} over {} prompt(s) of up to {} tokens + {} new needs about "
                  "{:.1f} GiB (key/value cache {:.1f}, prompt pass {:.1f}, scores {:.1f}); this "
                  "machine has {:.1f} GiB",
                  gen_.num_beams, prompts.size(), longest, gen_.max_new_tokens,
                  need / double(1 << 30), cache / double(1 << 30), prefill / double(1 << 30),
                  logits / double(1 << 30), double(host) / double(1 << 30));
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

void run_batch(const Opts& o, Answerer& a) {
  IngestOptions ingest;
  ingest.skip_bad = true;
  for (const auto& c : o.columns) {
    const auto eq = c.find('=');
    ASC_CHECK(eq != std::string::npos && eq > 0, "--column '{}': expected NAME=COLUMN", c);
    ingest.columns[c.substr(0, eq)] = c.substr(eq + 1);
  }
  IngestReport report;
  auto records = read_note_records(o.input, ingest, &report);
  if (records.empty() && report.skipped == 0)
    ASC_FAIL_HINT("give a CSV or JSONL file of notes and questions", "--input {}: holds no records",
                  o.input);
  std::vector<std::string> bad = report.errors;
  int64_t bad_count = report.skipped;
  const std::string tmp = o.output + ".partial";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  ASC_CHECK(out, "cannot write {}", tmp);
  const std::string field = o.model_name + "_answer";
  size_t i = 0;
  while (i < records.size()) {
    std::vector<const NoteRecord*> batch;
    std::vector<std::vector<int32_t>> prompts;
    for (; i < records.size() && int64_t(batch.size()) < o.batch_size; ++i) {
      const NoteRecord& r = records[i];
      const std::string where = fmt::format("{} record {}", o.input, r.record);
      try {
        check_question(r.question, where);
        prompts.push_back(a.prompt(r.note, r.question, where));
        batch.push_back(&r);
      } catch (const Error& e) {  // reported at the end; the run goes on
        ++bad_count;
        bad.push_back(e.message());
        fmt::print(stderr, "skipped: {}\n", e.message());
      }
    }
    if (batch.empty()) continue;
    auto answers = a.answer(prompts);
    for (size_t j = 0; j < batch.size(); ++j) {
      nlohmann::ordered_json line;
      line["note"] = batch[j]->note;
      line["question"] = batch[j]->question;
      if (!batch[j]->answer.empty()) line["answer"] = batch[j]->answer;
      if (!batch[j]->task.empty()) line["task"] = batch[j]->task;
      if (!batch[j]->id.empty()) line["id"] = batch[j]->id;
      line[field] = a.text(answers[j]);
      if (o.with_ids) {
        line["prompt_ids"] = prompts[j];
        // Names without "answer": upstream's scorer takes every column containing "answer" as
        // a model's answer.
        line[o.model_name + "_ids"] = answers[j].ids;
        line[o.model_name + "_ended_with_eos"] = answers[j].ended_with_eos;
      }
      out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    out.flush();
    fmt::print(stderr, "answered {}/{}\n", a.stats.answers, records.size());
  }
  out.close();
  ASC_CHECK(out, "writing {} failed", tmp);
  std::filesystem::rename(tmp, o.output);
  fmt::print(stderr, "wrote {} answers to {}\n", a.stats.answers, o.output);
  if (bad_count > 0) {
    fmt::print(stderr, "{} input record(s) skipped:\n", bad_count);
    for (const auto& m : bad) fmt::print(stderr, "  {}\n", m);
    if (int64_t(bad.size()) < bad_count)
      fmt::print(stderr, "  ... and {} more\n", bad_count - int64_t(bad.size()));
    ASC_FAIL("{} of {} records in {} could not be answered (listed above)", bad_count,
             bad_count + a.stats.answers, o.input);
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
  cmd->add_option("--max-new-tokens", o->gen.max_new_tokens, "Answer length limit")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--num-beams", o->gen.num_beams, "Beam search width (the paper used 5)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--do-sample", o->gen.do_sample, "Sample instead of taking the best token");
  cmd->add_option("--temperature", o->gen.temperature, "Sampling temperature")
      ->check(CLI::Range(1e-4, 1e4));  // below, logits / temperature overflow to inf
  cmd->add_option("--top-k", o->gen.top_k, "Sample among the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->gen.top_p, "Nucleus sampling mass (1: off)")
      ->check(CLI::Range(1e-9, 1.0));
  cmd->add_option("--length-penalty", o->gen.length_penalty, "Beam score = logprob / len^this")
      ->check(CLI::Range(-1e3, 1e3));
  cmd->add_option("--seed", o->gen.seed, "Sampling seed");
  cmd->add_option("--dtype", o->dtype, "Compute dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--batch-size", o->batch_size, "Prompts decoded together with --input")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "CPU threads (0: libtorch's default)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stats-json", o->stats_json, "Write timing (tokens/s) as JSON");
  cmd->callback([o] {
    if (o->note_file.empty() && o->input.empty() && !o->interactive)
      ASC_FAIL_HINT("see asclepius generate --help",
                    "generate needs --note and --question, --input and --output, or "
                    "--interactive");
    if (!o->output.empty()) {
      check_output_file("--output", o->output, {o->input, o->model, o->tokenizer});
      check_output_file("--output", o->output + ".partial", {o->input});
    }
    if (!o->stats_json.empty())
      check_output_file("--stats-json", o->stats_json,
                        {o->input, o->note_file, o->model, o->tokenizer, o->output,
                         o->output.empty() ? "" : o->output + ".partial"});
    // CLI11's ranges let NaN through (every comparison with it is false).
    for (const auto& [name, v] :
         {std::pair<const char*, double>{"--temperature", o->gen.temperature},
          {"--top-p", o->gen.top_p},
          {"--length-penalty", o->gen.length_penalty}})
      if (!std::isfinite(v)) ASC_FAIL("{}: {} is not a number", name, v);
    check_thread_count(o->threads, "--threads");
    if (o->threads > 0) torch::set_num_threads(int(o->threads));
    Answerer a(*o);
    if (!o->note_file.empty())
      run_one(*o, a);
    else if (!o->input.empty())
      run_batch(*o, a);
    else
      run_interactive(*o, a);
    const double tps = a.stats.seconds > 0 ? double(a.stats.tokens) / a.stats.seconds : 0.0;
    fmt::print(stderr, "{} answers, {} tokens generated in {:.2f} s ({:.1f} tokens/s)\n",
               a.stats.answers, a.stats.tokens, a.stats.seconds, tps);
    if (!o->stats_json.empty()) {
      nlohmann::json j = {
          {"answers", a.stats.answers},           {"tokens", a.stats.tokens},
          {"seconds", a.stats.seconds},           {"tokens_per_s", tps},
          {"truncated_notes", a.stats.truncated}, {"threads", torch::get_num_threads()}};
      std::ofstream(o->stats_json) << j.dump(2) << "\n";
    }
  });
}

}  // namespace asc::cli
