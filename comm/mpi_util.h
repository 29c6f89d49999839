// mpi_util.h — pieces both backends share: MPI start-up, the arrival board that names missing
// ranks, the wait loop's deadline/signal policy, and the one-line fatal exit. Internal to comm/.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace asc::comm {

void mpi_check(int rc, const char* what);
// MPI_Init_thread(MPI_THREAD_MULTIPLE) unless MPI is running; MPI_Finalize at exit.
void mpi_init_once();
[[noreturn]] void comm_fatal(int rank, int size, const std::string& msg);
double now_s();

// Each rank announces every collective it enters (one 8-byte message per peer, on its own
// communicator); a rank that times out then knows which peers never entered it.
class ArrivalBoard {
 public:
  ArrivalBoard();
  ~ArrivalBoard();
  void announce(int64_t seq);
  void drain();
  // "; ranks that did not arrive: 1, 3" (or that every rank entered it).
  std::string missing_text(int64_t seq) const;
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Collectives the peers have announced, summed: grows while any peer makes progress.
  int64_t arrivals() const;
  // While waiting in collective `seq` (since `since`), once a second: a heartbeat to rank 0
  // (from rank 0: to every peer, with the ranks it has not heard from), sent only to peers that
  // entered `seq` too (they are waiting, so they drain; a busy peer gets none), so that a rank
  // stopped or hung inside a collective every rank entered can be named on every rank.
  void heartbeat(int64_t seq, double since, double now);
  // "; not heard from while waiting (stopped or hung?): rank 1" for the peers that entered `seq`
  // and that this rank hears heartbeats from (rank 0: all; others: rank 0), silent since `since`
  // for a few seconds; else, on the other ranks, those rank 0 last reported silent ("; not heard
  // from by rank 0 while waiting (stopped or hung?): ranks 2, 3"); "" otherwise.
  std::string silent_text(int64_t seq, double since, double now) const;

 private:
  void send(int peer, std::vector<int64_t> values, int tag);  // non-blocking; done in drain()
  std::vector<int> silent_ranks(int64_t seq, double since, double now) const;
  struct Notice {
    MPI_Request req;
    std::vector<int64_t> values;
  };
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<int64_t> arrived_;
  std::vector<double> heard_;         // when each peer's last heartbeat came
  std::vector<int64_t> zero_report_;  // rank 0's last heartbeat: [seq, count, silent ranks]
  std::deque<Notice> sends_;
};

// The waiting policy, checked between polls: fails the process (comm_fatal) past the timeout; a
// stop signal during a wait is reported at once (one line per process) but does not end it.
class Deadline {
 public:
  // timeout_s without progress: peers arriving (the board's count) or, when given, a change of
  // progress() (probed every few seconds) restart it.
  Deadline(ArrivalBoard& board, const char* op, int64_t seq, int64_t bytes, double timeout_s,
           std::function<int64_t()> progress = {});
  void check();  // between polls
 private:
  double probe_interval() const;
  ArrivalBoard& board_;
  const char* op_;
  int64_t seq_, bytes_;
  double timeout_, begin_, start_;  // start_: the last progress seen
  int spins_ = 0;
  std::function<int64_t()> progress_;
  int64_t arrivals_ = 0, last_progress_ = 0;
  double next_probe_ = 0, next_heartbeat_ = 0;
};

}  // namespace asc::comm
