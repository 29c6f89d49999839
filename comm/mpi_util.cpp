#include "comm/mpi_util.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "comm/communicator.h"
#include "common/error.h"
#include "common/foreign_error.h"
#include "common/stop_signal.h"

namespace asc::comm {

constexpr int kNoticeTag = 7;
constexpr int kHeartbeatTag = 8;
constexpr double kHeartbeatS = 1.0;  // while waiting; silent for 3 of them: named
constexpr size_t kMaxReported = 64;  // silent ranks listed in rank 0's heartbeat
// A wait shorter than this is not worth a line when a stop signal arrives during it (mpirun
// follows its SIGTERM with SIGKILL about a second later, so this must be well under that).
constexpr double kSignalGraceS = 0.2;

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int lib_len = 0;
  MPI_Get_library_version(lib, &lib_len);
  std::string version(lib, size_t(lib_len));
  version = version.substr(0, version.find(','));
  fail_library_call("MPI", version.c_str(), what, std::string(msg, size_t(len)).c_str(),
                    "check the launch (mpirun/srun, the same MPI on every node) and each rank's "
                    "own error line",
                    __FILE__, __LINE__);
}

void mpi_init_once() {
  int inited = 0;
  mpi_check(MPI_Initialized(&inited), "MPI_Initialized");
  if (inited) {  // started by someone else: it must still allow calls from several threads
    int level = 0;
    mpi_check(MPI_Query_thread(&level), "MPI_Query_thread");
    if (level < MPI_THREAD_MULTIPLE)
      ASC_FAIL(
          "MPI was started with thread level {}; the data channel and the collectives need "
          "MPI_THREAD_MULTIPLE ({})",
          level, int(MPI_THREAD_MULTIPLE));
    return;
  }
  // A rank waiting in a blocking collective (the communication thread's all-reduce) polls; on a
  // shared or oversubscribed node that poll would starve the ranks it waits for. OpenMPI then
  // yields the core between polls (as mpirun --oversubscribe sets); a user's own value stays.
  ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
  int provided = 0;
  // The data sampler's channel runs on the prefetch thread while collectives run on the main one.
  mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  if (provided < MPI_THREAD_MULTIPLE)
    ASC_FAIL("MPI: this MPI library does not provide MPI_THREAD_MULTIPLE (got level {})", provided);
  std::atexit([] {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
  });
}

void comm_fatal(int rank, int size, const std::string& msg) {
  std::fprintf(stderr, "asclepius: rank %d of %d: %s\n", rank, size, msg.c_str());
  std::fflush(stderr);
  std::_Exit(kCommExitCode);  // no MPI_Finalize: it would wait for the peer that is gone
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

ArrivalBoard::ArrivalBoard() {
  mpi_init_once();
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  arrived_.assign(size_t(size_), 0);
  heard_.assign(size_t(size_), 0.0);
}

ArrivalBoard::~ArrivalBoard() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin) return;
  while (!sends_.empty()) {  // notices still in flight: finish them before freeing
    MPI_Wait(&sends_.front().req, MPI_STATUS_IGNORE);
    sends_.pop_front();
  }
  MPI_Comm_free(&comm_);
}

void ArrivalBoard::send(int peer, std::vector<int64_t> values, int tag) {
  // The buffer is the deque element's own: it stays in place (std::deque never moves its
  // elements on push_back/pop_front) until the send completes.
  sends_.push_back({MPI_REQUEST_NULL, std::move(values)});
  Notice& n = sends_.back();
  mpi_check(MPI_Isend(n.values.data(), int(n.values.size()), MPI_INT64_T, peer, tag, comm_, &n.req),
            tag == kNoticeTag ? "MPI_Isend (arrival notice)" : "MPI_Isend (heartbeat)");
}

void ArrivalBoard::announce(int64_t seq) {
  for (int p = 0; p < size_; ++p)
    if (p != rank_) send(p, {seq}, kNoticeTag);
  drain();
}

void ArrivalBoard::heartbeat(int64_t seq, double since, double now) {
  // [seq, how many silent, the first kMaxReported of them]: rank 0's heartbeat carries the
  // ranks it has not heard from while waiting in `seq`, so that every rank waiting there can
  // name them, not rank 0 alone (the others hear only rank 0). Kept small (eager sends).
  std::vector<int64_t> msg{seq, 0};
  if (rank_ == 0) {
    const std::vector<int> silent = silent_ranks(seq, since, now);
    msg[1] = int64_t(silent.size());
    for (size_t i = 0; i < silent.size() && i < kMaxReported; ++i) msg.push_back(silent[i]);
  }
  for (int p = 0; p < size_; ++p)
    if (p != rank_ && (rank_ == 0 || p == 0) && arrived_[size_t(p)] >= seq)
      send(p, msg, kHeartbeatTag);
}

std::vector<int> ArrivalBoard::silent_ranks(int64_t seq, double since, double now) const {
  std::vector<int> silent;
  if (now - since < 3 * kHeartbeatS) return silent;
  for (int p = 0; p < size_; ++p)
    if (p != rank_ && (rank_ == 0 || p == 0) && arrived_[size_t(p)] >= seq &&
        now - std::max(heard_[size_t(p)], since) > 3 * kHeartbeatS)
      silent.push_back(p);
  return silent;
}

std::string ArrivalBoard::silent_text(int64_t seq, double since, double now) const {
  auto ranks = [](const auto& v) {
    return fmt::format("{} {}", v.size() == 1 ? "rank" : "ranks", fmt::join(v, ", "));
  };
  const std::vector<int> silent = silent_ranks(seq, since, now);
  if (!silent.empty())
    return fmt::format("; not heard from while waiting (stopped or hung?): {}", ranks(silent));
  // What rank 0 last reported silent in this same collective, if that is recent.
  const std::vector<int64_t>& z = zero_report_;
  if (rank_ == 0 || z.size() < 2 || z[0] != seq || z[1] == 0 || now - heard_[0] > 3 * kHeartbeatS)
    return "";
  const std::vector<int64_t> listed(z.begin() + 2, z.end());
  const int64_t more = z[1] - int64_t(listed.size());
  return fmt::format("; not heard from by rank 0 while waiting (stopped or hung?): {}{}",
                     ranks(listed), more > 0 ? fmt::format(" and {} more", more) : "");
}

void ArrivalBoard::drain() {
  // Every message of `tag` waiting, as (source, value).
  auto receive = [this](int tag, const auto& on) {
    for (;;) {
      int flag = 0, n = 0;
      MPI_Status st;
      mpi_check(MPI_Iprobe(MPI_ANY_SOURCE, tag, comm_, &flag, &st), "MPI_Iprobe");
      if (!flag) return;
      mpi_check(MPI_Get_count(&st, MPI_INT64_T, &n), "MPI_Get_count");
      n = std::max(n, 0);  // MPI_UNDEFINED is negative
      std::vector<int64_t> v(static_cast<size_t>(n));
      mpi_check(MPI_Recv(v.data(), n, MPI_INT64_T, st.MPI_SOURCE, tag, comm_, MPI_STATUS_IGNORE),
                "MPI_Recv (arrival notice or heartbeat)");
      on(size_t(st.MPI_SOURCE), v);
    }
  };
  receive(kHeartbeatTag, [this](size_t p, const std::vector<int64_t>& v) {
    heard_[p] = now_s();
    if (p == 0) zero_report_ = v;
  });
  receive(kNoticeTag, [this](size_t p, const std::vector<int64_t>& v) {
    if (!v.empty()) arrived_[p] = std::max(arrived_[p], v[0]);
  });
  while (!sends_.empty()) {
    int done = 0;
    MPI_Test(&sends_.front().req, &done, MPI_STATUS_IGNORE);
    if (!done) break;
    sends_.pop_front();
  }
}

std::string ArrivalBoard::missing_text(int64_t seq) const {
  std::vector<int> missing;
  for (int p = 0; p < size_; ++p)
    if (p != rank_ && arrived_[size_t(p)] < seq) missing.push_back(p);
  if (missing.empty()) return "; every rank entered it (the transfer itself stalled)";
  return fmt::format("; ranks that did not arrive: {}", fmt::join(missing, ", "));
}

int64_t ArrivalBoard::arrivals() const {
  int64_t n = 0;
  for (int p = 0; p < size_; ++p)
    if (p != rank_) n += arrived_[size_t(p)];
  return n;
}

Deadline::Deadline(ArrivalBoard& board, const char* op, int64_t seq, int64_t bytes,
                   double timeout_s, std::function<int64_t()> progress)
    : board_(board),
      op_(op),
      seq_(seq),
      bytes_(bytes),
      timeout_(timeout_s),
      begin_(now_s()),
      start_(begin_),
      progress_(std::move(progress)),
      arrivals_(board.arrivals()) {
  if (progress_) last_progress_ = progress_(), next_probe_ = begin_ + probe_interval();
  next_heartbeat_ = begin_ + kHeartbeatS;
}

double Deadline::probe_interval() const {
  return std::clamp(timeout_ / 4, 1.0, 10.0);
}

void Deadline::check() {
  const double t = now_s();
  // A stop signal while waiting is either a graceful stop (the collective completes, the step
  // ends, the run saves) or the launcher ending the job after a rank died (SIGKILL follows
  // within about a second). Say so at once, once per process, and keep waiting: the line is
  // then out in the second case and harmless in the first; the deadline still applies.
  static bool told = false;
  if (stop_signal() != 0 && !told && t - begin_ > kSignalGraceS) {
    told = true;
    std::fprintf(stderr,
                 "asclepius: rank %d of %d: %s #%lld (%lld bytes) interrupted by %s while waiting "
                 "%.1f s%s; waiting on (a graceful stop finishes the step; if the launcher is "
                 "ending the job, another rank failed: see its message)\n",
                 board_.rank(), board_.size(), op_, (long long)seq_, (long long)bytes_,
                 signal_name(stop_signal()), t - begin_, board_.missing_text(seq_).c_str());
    std::fflush(stderr);
  }
  // Progress restarts the deadline: a peer arriving at a collective it was behind on, or the
  // caller's probe changing (a checkpoint's files growing while a rank writes).
  if (const int64_t a = board_.arrivals(); a != arrivals_) arrivals_ = a, start_ = t;
  if (progress_ && t >= next_probe_) {
    next_probe_ = t + probe_interval();
    if (const int64_t v = progress_(); v != last_progress_) last_progress_ = v, start_ = t;
  }
  if (t >= next_heartbeat_) next_heartbeat_ = t + kHeartbeatS, board_.heartbeat(seq_, begin_, t);
  if (t - start_ > timeout_)
    comm_fatal(board_.rank(), board_.size(),
               fmt::format("{} #{} ({} bytes) timed out after {:.0f} s (parallel.timeout_s){}{}{}",
                           op_, seq_, bytes_, timeout_, board_.missing_text(seq_),
                           board_.silent_text(seq_, begin_, t),
                           start_ > begin_ ? fmt::format(" (no progress for {:.0f} s of {:.0f} s "
                                                         "waited)",
                                                         t - start_, t - begin_)
                                           : std::string()));
  if (++spins_ > 2000) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

}  // namespace asc::comm
