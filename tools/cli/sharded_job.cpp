#include "cli/sharded_job.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/error.h"
#include "common/fs.h"

namespace asc::cli {

namespace fs = std::filesystem;

uint64_t line_seed(uint64_t seed, int64_t line, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * uint64_t(line + 1) +
               0xD1B54A32D192ED03ull * stream;  // splitmix64 of (seed, line, stream)
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<std::vector<size_t>> plan_batches(std::vector<size_t> lines,
                                              const std::vector<size_t>& length, size_t unit) {
  std::stable_sort(lines.begin(), lines.end(),
                   [&](size_t x, size_t y) { return length[x] > length[y]; });
  std::vector<std::vector<size_t>> batches;
  for (size_t k = 0; k < lines.size(); k += unit)
    batches.emplace_back(lines.begin() + long(k),
                         lines.begin() + long(std::min(lines.size(), k + unit)));
  return batches;
}

std::string jsonl_line(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

// Rank 0: a new parts directory with its plan, or the one of an interrupted job with this plan.
void open_parts(const std::string& parts, const std::string& settings) {
  if (fs::exists(parts / fs::path("plan.json"))) {
    if (read_file(parts + "/plan.json") != settings)
      ASC_FAIL_HINT(
          "run with the settings of the interrupted job, or remove " + parts + " to start over",
          "{} holds an interrupted job with other settings (input, model, prompt "
          "or decoding options)",
          parts);
    fmt::print(stderr, "resuming from {}\n", parts);
    return;
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parts, ec))
    if (e.path().extension() == ".jsonl")
      ASC_FAIL_HINT("remove " + parts + " to start over",
                    "{} holds results but no plan.json: they cannot be matched to this job", parts);
  fs::create_directories(parts);
  write_file_atomic(parts + "/plan.json", settings);
}

// Results first, plan.json last: a kill during the clean-up leaves no results that a later job
// with other settings could take for its own.
void remove_parts(const std::string& parts) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parts, ec))
    if (e.path().filename() != "plan.json") fs::remove(e.path(), ec);
  fs::remove_all(parts);
}

}  // namespace

ShardedJob::ShardedJob(std::string output, const std::string& settings, comm::Communicator& comm,
                       double timeout_s)
    : output_(std::move(output)), parts_(output_ + ".parts"), comm_(comm), timeout_s_(timeout_s) {
  if (comm_.rank() == 0) open_parts(parts_, settings);
  comm_.barrier();
  // A rank's heartbeat file grows (a byte every 5 s) while it works: the waits then see a slow
  // rank still working, not only finished batches.
  heartbeat_ = std::thread([this, path = fmt::format("{}/alive-{}", parts_, comm_.rank())] {
    for (int64_t beat = 0; beating_; ++beat) {
      if (beat % 50 == 0 && !waiting_) std::ofstream(path, std::ios::app) << '.';
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

ShardedJob::~ShardedJob() {
  stop_heartbeat();
}

void ShardedJob::stop_heartbeat() {
  beating_ = false;
  if (heartbeat_.joinable()) heartbeat_.join();
}

std::string ShardedJob::part_file(const std::string& name) const {
  return parts_ + "/" + name + ".jsonl";
}

bool ShardedJob::done(const std::string& name) const {
  return fs::exists(part_file(name));
}

void ShardedJob::write(const std::string& name, const std::string& jsonl) const {
  write_file_atomic(part_file(name), jsonl);
}

std::vector<nlohmann::ordered_json> ShardedJob::read(const std::vector<std::string>& names) const {
  std::vector<nlohmann::ordered_json> out;
  for (const auto& n : names) {
    std::istringstream in(read_file(part_file(n)));
    for (std::string l; std::getline(in, l);) out.push_back(nlohmann::ordered_json::parse(l));
  }
  return out;
}

void ShardedJob::wait_for_all() {
  // Waiting is not working: this rank's heartbeat pauses, so that ranks waiting for each other
  // do not keep the deadline alive for one that stopped.
  waiting_ = true;
  struct Resume {
    std::atomic<bool>& w;
    ~Resume() { w = false; }
  } resume{waiting_};
  comm::BarrierOptions bo;
  bo.timeout_s = timeout_s_;
  bo.progress = [parts = parts_] {
    int64_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(parts, ec)) n += 1 + int64_t(e.file_size(ec));
    return n;
  };
  comm_.barrier(bo);
}

std::pair<int64_t, int64_t> ShardedJob::finish(const std::vector<std::string>& names,
                                               size_t lines) {
  if (comm_.rank() != 0) stop_heartbeat();  // done; rank 0's beats on through the merge
  wait_for_all();
  int64_t kept = 0, rejected = 0;
  if (comm_.rank() == 0) {
    std::vector<std::string> rows(lines);
    std::vector<bool> is_rejected(lines);
    for (const auto& n : names) {
      std::istringstream in(read_file(part_file(n)));
      for (std::string l; std::getline(in, l);) {
        auto j = nlohmann::ordered_json::parse(l);
        const size_t i = j["_line"].get<size_t>();
        j.erase("_line");
        ASC_CHECK(i < rows.size() && rows[i].empty(), "{}: line {} twice or out of range",
                  part_file(n), i);
        is_rejected[i] = j.contains("_reject");
        if (is_rejected[i]) j["reject_reason"] = j["_reject"], j.erase("_reject");
        rows[i] = jsonl_line(j);
      }
    }
    std::string out, rej;
    for (size_t i = 0; i < rows.size(); ++i)
      if (!rows[i].empty())
        (is_rejected[i] ? rej : out) += rows[i], ++(is_rejected[i] ? rejected : kept);
    // A rejected file of an earlier run at this output would pass for this run's.
    std::error_code ec;
    if (rejected > 0)
      write_file_atomic(rejected_output(), rej);
    else
      fs::remove(rejected_output(), ec);
    write_file_atomic(output_, out);
    stop_heartbeat();
    remove_parts(parts_);
  }
  wait_for_all();  // no rank stops (and takes the job down) before rank 0 wrote the output
  return {kept, rejected};
}

Progress::Progress(int rank, int world, int64_t units, int64_t lines)
    : rank_(rank), world_(world), units_(units), lines_(lines) {}

void Progress::add(int64_t lines, int64_t new_tokens) {
  ++done_units_;
  done_lines_ += lines;
  tokens_ += new_tokens;
  print();
}

void Progress::skip(int64_t lines) {
  add(lines, 0);
}

void Progress::print() const {
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double lps = double(done_lines_) / std::max(sec, 1e-9);
  fmt::print(stderr, "{}batch {}/{}: {}/{} lines, {:.2f} lines/s, {:.1f} tokens/s, ETA {:.0f} s\n",
             world_ > 1 ? fmt::format("rank {}: ", rank_) : "", done_units_, units_, done_lines_,
             lines_, lps, double(tokens_) / std::max(sec, 1e-9),
             double(lines_ - done_lines_) / std::max(lps, 1e-9));
}

}  // namespace asc::cli
