// cmd_judge_run.cpp — `asclepius judge run`: the judge's replies to `judge export`'s requests
// from a local model through our own generation, so that notes never leave the cluster. The
// replies are OpenAI batch output lines, which `judge import` reads as it reads a remote
// judge's. Under mpirun the ranks share the requests; a killed job continues (cli/sharded_job.h).
#include <filesystem>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint/manifest.h"
#include "cli/commands.h"
#include "cli/output_path.h"
#include "cli/sharded_job.h"
#include "cli/text_generator.h"
#include "generate/answer.h"
#include "comm/communicator.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/host_memory.h"
#include "common/json_limits.h"

namespace asc::cli {
namespace {

using Json = nlohmann::ordered_json;

struct Opts {
  std::string requests, out, model, tokenizer, chat = "none", dtype = "fp32", device = "cpu";
  int64_t batch_size = 4, threads = 0;
  double timeout_s = 600;
  bool sample = false;
  GenerationOptions gen;
};

// One request: its id and the prompt (the content of its single user message), or why not.
struct Request {
  std::string id, prompt, problem;
};

std::vector<Request> read_requests(const std::string& path, std::vector<std::string>* unreadable) {
  std::vector<Request> out;
  std::istringstream in(read_file(path));
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, n);
    Json j;
    try {
      (void)parse_json_bounded(line, where);
      j = Json::parse(line);
    } catch (const std::exception& e) {
      unreadable->push_back(fmt::format("{}: not JSON ({})", where, e.what()));
      continue;
    }
    if (!j.is_object() || !j.contains("custom_id") || !j["custom_id"].is_string()) {
      unreadable->push_back(where + ": no custom_id");
      continue;
    }
    Request r{j["custom_id"].get<std::string>(), "", ""};
    try {
      const Json& msgs = j.at("body").at("messages");
      if (msgs.size() != 1 || msgs[0].at("role") != "user")
        r.problem = "the request is not one user message (judge export writes one)";
      else
        r.prompt = msgs[0].at("content").get<std::string>();
    } catch (const nlohmann::json::exception&) {
      r.problem = "no body.messages[0].content";
    }
    out.push_back(std::move(r));
  }
  return out;
}

// An OpenAI batch output line with the reply, or with an error (judge import lists those).
Json reply_line(const Request& r, const TextGenerator& g, size_t prompt_tokens,
                const Generated* gen) {
  Json j{{"custom_id", r.id}};
  if (!gen) {
    j["response"] = nullptr;
    j["error"] = {
        {"code", r.problem.find("context") != std::string::npos ? "context_length_exceeded"
                                                                : "invalid_request"},
        {"message", r.problem}};
    return j;
  }
  Json choice{{"index", 0},
              {"message", {{"role", "assistant"}, {"content", g.decode(gen->ids)}}},
              {"finish_reason", gen->ended_with_eos ? "stop" : "length"}};
  Json body{{"object", "chat.completion"},
            {"model", g.record()["model"]},
            {"choices", Json::array({choice})},
            {"usage",
             {{"prompt_tokens", prompt_tokens},
              {"completion_tokens", gen->ids.size() + (gen->ended_with_eos ? 1 : 0)}}}};
  j["response"] = {{"status_code", 200}, {"body", body}};
  j["error"] = nullptr;
  return j;
}

void run(const Opts& o, comm::Communicator& comm) {
  const int rank = comm.rank(), world = comm.size();
  std::vector<std::string> unreadable;
  auto reqs = read_requests(o.requests, &unreadable);
  ASC_CHECK(!reqs.empty(), "--requests {}: holds no requests{}", o.requests,
            unreadable.empty() ? "" : fmt::format(" ({} unreadable lines)", unreadable.size()));
  TextGeneratorOptions t{o.model, o.tokenizer, o.dtype, o.chat, o.gen, o.device};
  t.gen.do_sample = o.sample;
  TextGenerator g(t);
  // Prompts are never cut (the candidates' answers come last): too long is an error reply.
  std::vector<std::vector<int32_t>> ids(reqs.size());
  std::vector<size_t> good, length(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (!reqs[i].problem.empty()) continue;
    ids[i] = g.ids(reqs[i].prompt);
    if (int64_t(ids[i].size()) > g.budget()) {
      reqs[i].problem = fmt::format(
          "the prompt takes {} tokens; the judge model's context leaves {} after --max-new-tokens "
          "{}",
          ids[i].size(), g.budget(), g.options().max_new_tokens);
      continue;
    }
    length[i] = ids[i].size();
    good.push_back(i);
  }
  Json settings = g.settings();
  settings["requests_xxh64"] = xxh64_file(o.requests);
  settings["batch_size"] = o.batch_size;
  settings["dtype"] = o.dtype;
  ShardedJob job(o.out, settings.dump(1), comm, o.timeout_s);
  auto batches = plan_batches(good, length, size_t(o.batch_size));
  std::vector<size_t> failed;  // one batch of the error replies, written by rank 0
  for (size_t i = 0; i < reqs.size(); ++i)
    if (!reqs[i].problem.empty()) failed.push_back(i);
  std::vector<std::string> names;
  for (size_t k = 0; k < batches.size(); ++k) names.push_back(fmt::format("batch-{:06d}", k));
  if (rank == 0 && !failed.empty() && !job.done("failed")) {
    std::string text;
    for (size_t i : failed) {
      Json l = reply_line(reqs[i], g, 0, nullptr);
      l["_line"] = i;
      text += jsonl_line(l);
    }
    job.write("failed", text);
  }
  if (!failed.empty()) names.push_back("failed");
  int64_t units = 0, lines = 0;
  for (size_t k = size_t(rank); k < batches.size(); k += size_t(world))
    ++units, lines += int64_t(batches[k].size());
  Progress progress(rank, world, units, lines);
  for (size_t k = size_t(rank); k < batches.size(); k += size_t(world)) {
    if (job.done(names[k])) {
      progress.skip(int64_t(batches[k].size()));
      continue;
    }
    std::vector<std::vector<int32_t>> ps;
    std::vector<uint64_t> seeds;
    for (size_t i : batches[k])
      ps.push_back(ids[i]), seeds.push_back(line_seed(o.gen.seed, int64_t(i)));
    const int64_t before = g.tokens;
    const auto out = g.run(ps, seeds);
    std::string text;
    for (size_t j = 0; j < out.size(); ++j) {
      Json l = reply_line(reqs[batches[k][j]], g, ps[j].size(), &out[j]);
      l["_line"] = batches[k][j];
      text += jsonl_line(l);
    }
    job.write(names[k], text);
    progress.add(int64_t(out.size()), g.tokens - before);
  }
  const auto counts = job.finish(names, reqs.size());
  if (rank == 0) {
    fmt::print(stderr, "wrote {} replies to {} ({} error replies: too long or malformed)\n",
               counts.first, o.out, failed.size());
    for (size_t i : failed) fmt::print(stderr, "  {}: {}\n", reqs[i].id, reqs[i].problem);
  }
  if (!unreadable.empty()) {
    if (rank == 0)
      for (const auto& u : unreadable) fmt::print(stderr, "  {}\n", u);
    ASC_FAIL("{} line(s) of {} could not be read as requests (listed above; no reply written)",
             unreadable.size(), o.requests);
  }
}

}  // namespace

void add_judge_run(CLI::App& judge) {
  auto* cmd = judge.add_subcommand(
      "run", "The judge's replies from a local model (nothing leaves the machine)");
  auto o = std::make_shared<Opts>();
  o->gen.max_new_tokens = 256;
  cmd->add_option("--requests", o->requests, "The requests .jsonl that judge export wrote")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Replies .jsonl (OpenAI batch output lines) for judge import")
      ->required();
  cmd->add_option("--judge-model", o->model,
                  "The judge: run directory, step checkpoint or Hugging Face directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--tokenizer", o->tokenizer, "The judge model's tokenizer (file or directory)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--chat-template", o->chat,
                  "Wrap each prompt: none, llama3, mistral or a file with {prompt}");
  cmd->add_option("--max-new-tokens", o->gen.max_new_tokens, "Reply length limit (default 256)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--do-sample", o->sample, "Sample (default: greedy, the requests' temperature 0)");
  cmd->add_option("--temperature", o->gen.temperature, "Sampling temperature")
      ->check(CLI::Range(1e-4, 1e4));
  cmd->add_option("--seed", o->gen.seed, "Sampling seed (one per request)");
  add_job_options(cmd, &o->dtype, &o->device, &o->batch_size, &o->threads, &o->timeout_s,
                  "Requests decoded together");
  cmd->callback([o] {
    // <out>.rejected.jsonl is written (or an old one removed) too: never an input.
    for (const auto& f : {o->out, o->out + ".rejected.jsonl"})
      check_output_file("--out", f, {o->requests, o->model, o->tokenizer});
    auto comm = start_job(o->device, o->threads, o->timeout_s);
    run(*o, *comm);
  });
}

}  // namespace asc::cli
