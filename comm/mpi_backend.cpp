// mpi_backend.cpp — the Communicator over OpenMPI for CPU tensors. Non-blocking MPI collectives
// on a duplicate of MPI_COMM_WORLD; wait() polls them against the deadline. Arrival notices (one
// 8-byte message per peer and collective, on a second duplicate) let a rank that times out name
// the ranks that never entered the collective.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <ATen/ATen.h>

#include "comm/communicator.h"
#include "comm/mpi_util.h"
#include "common/error.h"
#include "common/stop_signal.h"

namespace asc::comm {
namespace {

MPI_Datatype mpi_type(const at::Tensor& t, bool reduce) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    case at::kByte:
      return MPI_UINT8_T;
    case at::kBFloat16:
    case at::kHalf:
      if (!reduce) return MPI_UINT16_T;  // moved, not added
      [[fallthrough]];
    default:
      ASC_FAIL("MPI backend: {} of {} tensors is not supported{}",
               reduce ? "reduction" : "transfer", c10::toString(t.scalar_type()),
               reduce ? " (reduce in fp32)" : "");
  }
}

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM;
}

int count_of(int64_t n, const char* what) {
  if (n > INT_MAX) ASC_FAIL("MPI backend: {} of {} elements exceeds MPI's int count", what, n);
  return int(n);
}

void check_cpu(const at::Tensor& t, const char* what) {
  ASC_CHECK(t.device().is_cpu(), "MPI backend: {} tensor is on {}; use the NCCL backend", what,
            t.device().str());
  ASC_CHECK(t.is_contiguous(), "MPI backend: {} tensor is not contiguous", what);
}

class MpiCommunicator;

// all_reduce from this size on runs on the communication thread (blocking MPI_Allreduce).
constexpr int64_t kThreadedAllReduceBytes = 64 << 10;

struct TaskState {
  std::atomic<int> rc{-1};  // the MPI return code once done
  std::string error;        // set (before rc) when the task threw
  std::mutex mu;
  std::condition_variable cv;
  void finish(int code, std::string what = {}) {
    {
      std::lock_guard<std::mutex> lock(mu);
      error = std::move(what);
      rc.store(code);
    }
    cv.notify_all();
  }
};

// The communication thread's queue: blocking MPI calls in submission order. Shared with the
// thread, so a communicator torn down by an exception can leave the thread behind (detached, its
// task perhaps blocked forever) without it touching freed memory.
struct CommQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;
  bool stopping = false;
  static void run(const std::shared_ptr<CommQueue>& q) {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(q->mu);
        q->cv.wait(lock, [&] { return q->stopping || !q->tasks.empty(); });
        if (q->tasks.empty()) return;  // stopping, nothing left
        task = std::move(q->tasks.front());
        q->tasks.pop_front();
      }
      task();
    }
  }
};

class ThreadWork final : public Work {
 public:
  ThreadWork(MpiCommunicator* c, std::shared_ptr<TaskState> done, const char* op, int64_t seq,
             int64_t bytes)
      : c_(c), done_(std::move(done)), op_(op), seq_(seq), bytes_(bytes) {}
  void wait() override;
  bool test() override { return done_->rc.load() >= 0; }

 private:
  MpiCommunicator* c_;
  std::shared_ptr<TaskState> done_;
  const char* op_;
  int64_t seq_, bytes_;
};

class MpiWork final : public Work {
 public:
  MpiWork(MpiCommunicator* c, MPI_Request r, const char* op, int64_t seq, int64_t bytes,
          std::vector<at::Tensor> keep, std::function<void()> after = {})
      : c_(c),
        req_(r),
        op_(op),
        seq_(seq),
        bytes_(bytes),
        keep_(std::move(keep)),
        after_(std::move(after)) {}
  // Not completed (an exception unwinds past it): MPI may still write into the buffers and a
  // collective cannot be cancelled, so they are deliberately leaked rather than freed.
  ~MpiWork() override {
    if (!done_ && req_ != MPI_REQUEST_NULL) new std::vector<at::Tensor>(std::move(keep_));
  }
  void wait() override;
  bool test() override;

 private:
  MpiCommunicator* c_;
  MPI_Request req_;
  const char* op_;
  int64_t seq_, bytes_;
  std::vector<at::Tensor> keep_;  // alive until done
  std::function<void()> after_;
  bool done_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) : timeout_(timeout_s) {
    ASC_CHECK(timeout_s > 0, "collective timeout must be positive, got {}", timeout_s);
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &coll_), "MPI_Comm_dup");
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &thread_comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(coll_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(thread_comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(coll_, &rank_);
    MPI_Comm_size(coll_, &size_);
    // Every rank must take the same path: agree on the setting (native if any rank asks).
    const char* rs = std::getenv("ASCLEPIUS_MPI_REDUCE_SCATTER");
    int via = !(rs && std::string(rs) == "native");
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, &via, 1, MPI_INT, MPI_MIN, coll_), "MPI_Allreduce");
    rs_via_all_reduce_ = via != 0;
    queue_ = std::make_shared<CommQueue>();
    worker_ = std::thread([q = queue_] { CommQueue::run(q); });
  }
  ~MpiCommunicator() override {
    const bool unwinding = std::uncaught_exceptions() > 0;
    {
      std::lock_guard<std::mutex> lock(queue_->mu);
      queue_->stopping = true;
      if (unwinding) queue_->tasks.clear();
    }
    queue_->cv.notify_one();
    if (unwinding) {  // a task may be blocked on a peer that is gone: leave it and MPI alone
      worker_.detach();
      return;
    }
    worker_.join();
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    MPI_Comm_free(&coll_);
    MPI_Comm_free(&thread_comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  int64_t sequence() const override { return seq_; }

  WorkPtr all_reduce(at::Tensor& t, const AllReduceOptions& o) override {
    check_cpu(t, "all_reduce");
    const int64_t seq = begin();
    if (t.nbytes() >= kThreadedAllReduceBytes && size_ > 1) {
      // OpenMPI's blocking all-reduce is 2-2.5x faster than its non-blocking one here: run it on
      // the communication thread (in submission order, on its own communicator) so the caller
      // still gets an asynchronous handle.
      auto done = std::make_shared<TaskState>();
      const MPI_Datatype ty = mpi_type(t, true);
      const MPI_Op op = mpi_op(o.op);
      const int n = count_of(t.numel(), "all_reduce");
      at::Tensor keep = t;
      const MPI_Comm comm = thread_comm_;
      enqueue([keep, done, ty, op, n, comm] {
        done->finish(MPI_Allreduce(MPI_IN_PLACE, keep.data_ptr(), n, ty, op, comm));
      });
      return std::make_shared<ThreadWork>(this, done, "all_reduce", seq, t.nbytes());
    }
    MPI_Request r;
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), count_of(t.numel(), "all_reduce"),
                             mpi_type(t, true), mpi_op(o.op), coll_, &r),
              "MPI_Iallreduce");
    return std::make_shared<MpiWork>(this, r, "all_reduce", seq, t.nbytes(),
                                     std::vector<at::Tensor>{t});
  }

  WorkPtr reduce_scatter(at::Tensor& out, const at::Tensor& in,
                         const ReduceScatterOptions& o) override {
    check_cpu(out, "reduce_scatter output");
    check_cpu(in, "reduce_scatter input");
    ASC_CHECK(in.numel() == out.numel() * size_ && in.scalar_type() == out.scalar_type(),
              "reduce_scatter: input of {} elements for {} ranks × output of {}", in.numel(), size_,
              out.numel());
    const int64_t seq = begin();
    if (in.nbytes() >= kThreadedAllReduceBytes && size_ > 1 && rs_via_all_reduce_) {
      // OpenMPI 4.1's reduce-scatter ran at 0.5-0.8 GB/s bus bandwidth on our machines, its
      // blocking all-reduce at 2-6.5: all-reduce a copy on the communication thread and keep this
      // rank's slice (twice the bytes, 3-4x faster there). ASCLEPIUS_MPI_REDUCE_SCATTER=native
      // uses MPI's own. A scratch input is reduced in place: no copy of a unit's size.
      auto done = std::make_shared<TaskState>();
      at::Tensor src = in, dst = out;
      const bool in_place = o.input_is_scratch && in.is_contiguous();
      const MPI_Datatype ty = mpi_type(in, true);
      const MPI_Op op = mpi_op(o.op);
      const int n = count_of(in.numel(), "reduce_scatter");
      const int64_t r = rank_;
      const MPI_Comm comm = thread_comm_;
      enqueue([src, dst, done, ty, op, n, r, comm, in_place]() mutable {
        try {
          at::Tensor tmp = in_place ? src.reshape({-1}) : src.reshape({-1}).clone();
          const int rc = MPI_Allreduce(MPI_IN_PLACE, tmp.data_ptr(), n, ty, op, comm);
          if (rc == MPI_SUCCESS)
            dst.copy_(tmp.narrow(0, r * dst.numel(), dst.numel()).view_as(dst));
          done->finish(rc);
        } catch (const std::exception& e) {
          done->finish(MPI_ERR_OTHER, e.what());
        }
      });
      return std::make_shared<ThreadWork>(this, done, "reduce_scatter", seq, in.nbytes());
    }
    // MPI's in-place form leaves the result at the start of the buffer, not at this rank's
    // slice: when the output lies inside the input, reduce into a temporary and copy after.
    const char* ib = static_cast<const char*>(in.data_ptr());
    const char* ob = static_cast<const char*>(out.data_ptr());
    const bool overlap = ob < ib + in.nbytes() && ib < ob + out.nbytes();
    at::Tensor dst = overlap ? at::empty_like(out) : out;
    MPI_Request r;
    mpi_check(MPI_Ireduce_scatter_block(in.data_ptr(), dst.data_ptr(),
                                        count_of(out.numel(), "reduce_scatter"),
                                        mpi_type(out, true), mpi_op(o.op), coll_, &r),
              "MPI_Ireduce_scatter_block");
    std::function<void()> after;
    if (overlap) after = [out, dst]() mutable { out.copy_(dst); };
    return std::make_shared<MpiWork>(this, r, "reduce_scatter", seq, in.nbytes(),
                                     std::vector<at::Tensor>{out, in, dst}, std::move(after));
  }

  WorkPtr all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions&) override {
    check_cpu(out, "all_gather output");
    check_cpu(in, "all_gather input");
    ASC_CHECK(out.numel() == in.numel() * size_ && in.scalar_type() == out.scalar_type(),
              "all_gather: output of {} elements for {} ranks × input of {}", out.numel(), size_,
              in.numel());
    const int64_t seq = begin();
    const bool in_place = static_cast<const char*>(in.data_ptr()) ==
                          static_cast<const char*>(out.data_ptr()) + rank_ * in.nbytes();
    const int n = count_of(in.numel(), "all_gather");
    const MPI_Datatype ty = mpi_type(in, false);
    MPI_Request r;
    mpi_check(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.data_ptr(), n, ty, out.data_ptr(), n, ty,
                             coll_, &r),
              "MPI_Iallgather");
    return std::make_shared<MpiWork>(this, r, "all_gather", seq, out.nbytes(),
                                     std::vector<at::Tensor>{out, in});
  }

  WorkPtr broadcast(at::Tensor& t, const BroadcastOptions& o) override {
    check_cpu(t, "broadcast");
    ASC_CHECK(o.root >= 0 && o.root < size_, "broadcast: root {} of {} ranks", o.root, size_);
    const int64_t seq = begin();
    MPI_Request r;
    mpi_check(MPI_Ibcast(t.data_ptr(), count_of(t.numel(), "broadcast"), mpi_type(t, false), o.root,
                         coll_, &r),
              "MPI_Ibcast");
    return std::make_shared<MpiWork>(this, r, "broadcast", seq, t.nbytes(),
                                     std::vector<at::Tensor>{t});
  }

  void barrier(const BarrierOptions& o) override {
    const int64_t seq = begin();
    MPI_Request r;
    mpi_check(MPI_Ibarrier(coll_, &r), "MPI_Ibarrier");
    wait_request(&r, "barrier", seq, 0, o.timeout_s > 0 ? o.timeout_s : timeout_, o.progress);
  }

  // Polls a communication-thread task until done, under the same deadline policy.
  // Sleeps on the task's condition variable (the thread needs the core), waking every 2 ms to
  // read arrival notices and check the deadline.
  void wait_flag(TaskState& done, const char* op, int64_t seq, int64_t bytes) {
    Deadline deadline(board_, op, seq, bytes, timeout_);
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(done.mu);
        done.cv.wait_for(lock, std::chrono::milliseconds(2), [&] { return done.rc.load() >= 0; });
      }
      board_.drain();
      const int rc = done.rc.load();
      if (rc >= 0) {
        if (!done.error.empty()) ASC_FAIL("{} #{}: {}", op, seq, done.error);
        mpi_check(rc, op);
        return;
      }
      deadline.check();
    }
  }

  // Polls `req` until done; the Deadline ends the process on a timeout or a signal.
  void wait_request(MPI_Request* req, const char* op, int64_t seq, int64_t bytes,
                    double timeout_s = 0, std::function<int64_t()> progress = {}) {
    Deadline deadline(board_, op, seq, bytes, timeout_s > 0 ? timeout_s : timeout_,
                      std::move(progress));
    for (;;) {
      int done = 0;
      mpi_check(MPI_Test(req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      board_.drain();
      if (done) return;
      deadline.check();
    }
  }

 private:
  int64_t begin() {
    const int64_t seq = ++seq_;
    board_.announce(seq);
    return seq;
  }

  void enqueue(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(queue_->mu);
      queue_->tasks.push_back(std::move(task));
    }
    queue_->cv.notify_one();
  }

  MPI_Comm coll_ = MPI_COMM_NULL, thread_comm_ = MPI_COMM_NULL;
  std::shared_ptr<CommQueue> queue_;
  std::thread worker_;
  bool rs_via_all_reduce_ = true;
  int rank_ = 0, size_ = 1;
  double timeout_;
  int64_t seq_ = 0;
  ArrivalBoard board_;
};

void MpiWork::wait() {
  if (done_) return;
  c_->wait_request(&req_, op_, seq_, bytes_);
  done_ = true;
  if (after_) after_();
  keep_.clear();
}

void ThreadWork::wait() {
  c_->wait_flag(*done_, op_, seq_, bytes_);
}

bool MpiWork::test() {
  if (done_) return true;
  int flag = 0;
  mpi_check(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE), "MPI_Test");
  if (flag) wait();  // completes: runs the follow-up, releases the buffers
  return done_;
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  return std::make_unique<MpiCommunicator>(timeout_s);
}

}  // namespace asc::comm
