// sharded_job.h — generation work shared by the ranks of mpirun/srun, resumable after a kill:
// the machinery behind `generate --input` and `synthesize`.
//
// The work is a list of lines (input order) cut into fixed batches that do not depend on the
// number of ranks; rank r of N takes batches r, r + N, ... Each finished batch is written
// atomically as JSON lines to <output>.parts/<name>.jsonl, every line carrying "_line" (its
// input position). Run again with the same settings (plan.json), a job skips what the directory
// already holds, at any number of ranks. When every rank has arrived, rank 0 merges the parts in
// input order into the output (lines carrying "_reject" go to <output>.rejected.jsonl instead)
// and removes the directory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/communicator.h"

namespace asc::cli {

// One seed per input line (sampling): a line's result does not depend on its batch or rank.
// `stream` separates independent uses of the same line (sampling, a task draw, example draws).
uint64_t line_seed(uint64_t seed, int64_t line, uint64_t stream = 0);

// Lines sorted by `length` (longest first, ties in input order) and cut into groups of `unit`.
std::vector<std::vector<size_t>> plan_batches(std::vector<size_t> lines,
                                              const std::vector<size_t>& length, size_t unit);

class ShardedJob {
 public:
  // `settings`: everything a result depends on (a parts directory left by other settings is
  // refused, not mixed in). Rank 0 creates or resumes <output>.parts; every rank waits for it.
  ShardedJob(std::string output, const std::string& settings, comm::Communicator& comm,
             double timeout_s);
  ~ShardedJob();

  std::string part_file(const std::string& name) const;
  bool done(const std::string& name) const;
  void write(const std::string& name, const std::string& jsonl) const;  // atomically
  // Every line of the named parts, in file order, then line order.
  std::vector<nlohmann::ordered_json> read(const std::vector<std::string>& names) const;

  // Waits for every rank; the deadline restarts while the parts or the heartbeats of ranks still
  // working grow (a waiting rank's heartbeat pauses).
  void wait_for_all();
  // The end: waits for every rank, rank 0 merges `names` into the output (lines 0 .. lines-1;
  // each at most once) and removes the parts, everyone waits for that. Returns (on rank 0) how
  // many lines went to the output and how many to <output>.rejected.jsonl.
  std::pair<int64_t, int64_t> finish(const std::vector<std::string>& names, size_t lines);

  const std::string& output() const { return output_; }
  std::string rejected_output() const { return output_ + ".rejected.jsonl"; }

 private:
  void stop_heartbeat();
  std::string output_, parts_;
  comm::Communicator& comm_;
  double timeout_s_;
  std::atomic<bool> beating_{true}, waiting_{false};
  std::thread heartbeat_;
};

// The progress line: lines done of this rank's share, lines/s, tokens/s, ETA.
class Progress {
 public:
  Progress(int rank, int world, int64_t units, int64_t lines);
  void add(int64_t lines, int64_t new_tokens);  // one unit more (lines 0 when skipped)
  void skip(int64_t lines);                     // one unit found done already

 private:
  void print() const;
  int rank_, world_;
  int64_t units_, lines_, done_units_ = 0, done_lines_ = 0, tokens_ = 0;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

std::string jsonl_line(const nlohmann::ordered_json& j);  // one line, invalid UTF-8 replaced

}  // namespace asc::cli
