// cmd_verify_resume.cpp — `asclepius verify-resume RECIPE --steps K [--world-size N]
// [--resume-world-size M] [key=value ...]`: does resuming work on *this* setup? Runs K steps
// uninterrupted; runs them again, stopped after step K/2 as a preemption would stop it (the
// SIGTERM path: agree, save, exit); resumes that run (optionally on M ranks) to step K; then
// reports per-step loss differences and the final weights' and AdamW moments' differences and
// hashes. Exit 0 when the resumed run equals the uninterrupted one (bit for bit at the same
// world size, within --rtol otherwise), 1 when not.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint/hf_io.h"
#include "checkpoint/sharded.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "config/recipe.h"
#include "data/tokenizer.h"

extern char** environ;

namespace asc::cli {
namespace {

struct Opts {
  std::string recipe, work, launcher = "mpirun";
  std::vector<std::string> overrides;
  int64_t steps = 20, world = 1, resume_world = 0;
  double rtol = 1e-5;
};

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  ASC_CHECK(!ec, "cannot find this program's path (/proc/self/exe): {}", ec.message());
  return p.string();
}

// Runs `asclepius train` on n ranks with extra arguments; output to log. Returns the status.
int run_train(const Opts& o, int64_t n, const std::vector<std::string>& args,
              const std::string& log) {
  std::vector<std::string> argv;
  if (n > 1 && o.launcher == "srun") {
    argv = {"srun", "-n", std::to_string(n)};
  } else if (n > 1) {
    argv = {"mpirun", "-np", std::to_string(n), "--oversubscribe"};
  }
  argv.push_back(self_exe());
  argv.push_back("train");
  argv.push_back(o.recipe);
  argv.insert(argv.end(), o.overrides.begin(), o.overrides.end());
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ASC_CHECK(rc == 0, "cannot start {}: {}", argv[0], std::strerror(rc));
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<double> losses(const std::string& run) {
  std::vector<double> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) {
      auto j = nlohmann::json::parse(line);
      out.push_back(j["loss"].is_null() ? std::nan("") : j["loss"].get<double>());
    }
  return out;
}

struct Diff {
  double max_abs = 0, max_rel = 0;
  bool identical = true;
  std::string hash_a, hash_b;
};

// Compares one kind of state of two final checkpoints; hashes are of the fp32 bytes, name order.
Diff compare_state(const CheckpointReader& a, const CheckpointReader& b, const std::string& kind) {
  Diff d;
  std::string bytes_a, bytes_b;
  for (const auto& name : a.names()) {
    ASC_CHECK(b.has(name), "{}: no tensor '{}'", b.dir(), name);
    at::Tensor x = a.read_full(name, kind), y = b.read_full(name, kind);
    d.identical = d.identical && at::equal(x, y);
    d.max_abs = std::max(d.max_abs, (x - y).abs().max().item<double>());
    d.max_rel = std::max(d.max_rel, ((x - y).norm() / (y.norm() + 1e-30)).item<double>());
    bytes_a.append(static_cast<const char*>(x.data_ptr()), size_t(x.nbytes()));
    bytes_b.append(static_cast<const char*>(y.data_ptr()), size_t(y.nbytes()));
  }
  d.hash_a = xxh64_hex(bytes_a), d.hash_b = xxh64_hex(bytes_b);
  return d;
}

void verify(const Opts& o) {
  ASC_CHECK(o.steps >= 2, "--steps must be at least 2 (got {})", o.steps);
  const int64_t M = o.resume_world > 0 ? o.resume_world : o.world, half = o.steps / 2;
  load_recipe(o.recipe, o.overrides, o.world);  // a bad recipe fails here, once
  load_recipe(o.recipe, o.overrides, M);
  const std::string work = o.work.empty() ? (std::filesystem::temp_directory_path() /
                                             fmt::format("asclepius-verify-resume-{}", ::getpid()))
                                                .string()
                                          : o.work;
  if (!o.work.empty() && std::filesystem::exists(work) && !std::filesystem::is_empty(work))
    ASC_FAIL_HINT("give a new or empty directory", "--work-dir {} is not empty", work);
  std::filesystem::create_directories(work);
  const std::vector<std::string> common = {fmt::format("train.max_steps={}", o.steps),
                                           "checkpoint.every_steps=0", "logging.progress=false",
                                           "logging.tensorboard=false"};
  auto args = [&](const std::string& run, bool resume) {
    auto a = common;
    a.push_back("checkpoint.dir=" + work + "/" + run);
    a.push_back(std::string("checkpoint.resume=") + (resume ? "auto" : "never"));
    return a;
  };
  fmt::print(
      "verify-resume: {} steps on {} rank(s); stop after step {}; resume on {} rank(s)\n"
      "work directory {}\n",
      o.steps, o.world, half, M, work);
  int rc = run_train(o, o.world, args("reference", false), work + "/reference.log");
  ASC_CHECK(rc == 0, "the uninterrupted run failed (exit {}); see {}/reference.log", rc, work);
  auto stopped = args("resumed", false);
  stopped.insert(stopped.end(), {"--stop-after-step", std::to_string(half)});
  rc = run_train(o, o.world, stopped, work + "/stopped.log");
  ASC_CHECK(rc == 128 + SIGTERM,
            "the run to interrupt exited {} instead of stopping after step {} with {}; see "
            "{}/stopped.log",
            rc, half, 128 + SIGTERM, work);
  rc = run_train(o, M, args("resumed", true), work + "/resumed.log");
  ASC_CHECK(rc == 0, "the resumed run failed (exit {}); see {}/resumed.log", rc, work);

  const auto ref = losses(work + "/reference"), res = losses(work + "/resumed");
  ASC_CHECK(ref.size() == res.size(), "{} loss lines in the reference run, {} in the resumed one",
            ref.size(), res.size());
  fmt::print("\n step  uninterrupted loss  resumed loss   |difference|\n");
  double worst_loss = 0;
  bool losses_identical = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::abs(ref[i] - res[i]);
    losses_identical = losses_identical && ref[i] == res[i];
    worst_loss = std::max(worst_loss, d / std::max(std::abs(ref[i]), 1e-30));
    fmt::print("{:5d}  {:18.9g}  {:12.9g}   {:.3g}{}\n", i + 1, ref[i], res[i], d,
               int64_t(i) + 1 == half ? "   <- stopped and resumed here" : "");
  }
  CheckpointReader a(resolve_model_dir(work + "/reference")),
      b(resolve_model_dir(work + "/resumed"));
  fmt::print(
      "\n state        bit-identical  max |diff|   max rel diff  hash (uninterrupted / resumed)\n");
  bool identical = losses_identical;
  double worst = worst_loss;
  for (const char* kind : {"master", "exp_avg", "exp_avg_sq"}) {
    const Diff d = compare_state(a, b, kind);
    identical = identical && d.identical;
    worst = std::max(worst, d.max_rel);
    fmt::print(" {:11s}  {:13s}  {:10.3g}   {:12.3g}  {} / {}\n", kind, d.identical ? "yes" : "no",
               d.max_abs, d.max_rel, d.hash_a, d.hash_b);
  }
  const bool same_world = M == o.world;
  const bool ok = same_world ? identical : worst <= o.rtol;
  fmt::print("\n{}: {}\n", ok ? "PASS" : "FAIL",
             same_world ? (identical ? "the resumed run is bit-identical to the uninterrupted one"
                                     : "the resumed run differs from the uninterrupted one "
                                       "(expected bit-identical at the same world size)")
                        : fmt::format("largest relative difference {:.3g} (tolerance {:g})", worst,
                                      o.rtol));
  if (!ok) std::exit(1);
}

}  // namespace

void add_verify_resume(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "verify-resume",
      "Check that stopping and resuming a run gives the uninterrupted run's losses and weights");
  auto o = std::make_shared<Opts>();
  cmd->add_option("recipe", o->recipe, "Recipe YAML file")->required()->check(CLI::ExistingFile);
  cmd->add_option("overrides", o->overrides, "Dotted overrides, as for train");
  cmd->add_option("--steps", o->steps, "Steps of each run (stopped after steps/2)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 40));
  cmd->add_option("--world-size", o->world, "Ranks of the uninterrupted and the stopped run")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--resume-world-size", o->resume_world,
                  "Ranks of the resumed run (default: --world-size)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--launcher", o->launcher, "How to start several ranks")
      ->check(CLI::IsMember({"mpirun", "srun"}));
  cmd->add_option("--work-dir", o->work,
                  "Where the three runs go (default: a temporary directory)");
  cmd->add_option("--rtol", o->rtol, "Tolerance at another world size (relative)");
  cmd->callback([o] { verify(*o); });
}

}  // namespace asc::cli
