// communicator.h — collectives between the data-parallel ranks of one job.
//
// One interface, three backends: a job of one process (make_self_communicator), else chosen by
// where the tensors live (make_communicator):
//   self (self_backend.cpp) world size 1 without MPI: reductions are the identity, gathers copies;
//   MPI  (mpi_backend.cpp)  CPU tensors, OpenMPI non-blocking collectives;
//   NCCL (nccl_backend.cpp) CUDA tensors, on a dedicated stream ordered against the caller's
//        stream with events; the NCCL communicator is created from a unique id broadcast over MPI.
// Every collective returns a Work handle at once; wait() blocks until it is done. Every
// collective has a sequence number (the same on every rank) and a deadline: a rank that does not
// arrive within the timeout makes each waiting rank print ONE line naming the collective, its
// sequence number and the ranks that have not arrived, and exit non-zero (see kCommExitCode) —
// never a silent hang. The deadline counts time without progress: a peer seen arriving at the
// collectives it was behind on (or a barrier's own progress probe) restarts it. A stop signal that
// arrives while a rank waits (mpirun tearing the job down after another rank died, or a graceful
// stop) is reported at once in one line naming the collective; the wait goes on (a graceful stop
// must still finish the step and save).
//
// Ranks must issue the same collectives in the same order, from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

namespace asc::comm {

// Exit status of a rank that ended because a collective failed (timeout, peer gone, signal).
constexpr int kCommExitCode = 75;

enum class ReduceOp { kSum, kMax };

struct AllReduceOptions {
  ReduceOp op = ReduceOp::kSum;
};
struct ReduceScatterOptions {
  ReduceOp op = ReduceOp::kSum;
  // The caller drops `in` after the reduction: a backend may use it as its work buffer (the MPI
  // backend's all-reduce path then reduces in place instead of in a copy of `in`).
  bool input_is_scratch = false;
};
struct AllGatherOptions {};
struct BroadcastOptions {
  int root = 0;
};
struct BarrierOptions {
  double timeout_s = 0;  // > 0: this barrier's own deadline (e.g. while rank 0 writes a checkpoint)
  // Optional: a value that changes while the ranks still to arrive are seen working (the sizes
  // and times of the files a checkpoint's ranks write). Each change restarts the deadline: the
  // barrier fails after timeout_s without progress, however long the work takes.
  std::function<int64_t()> progress;
};

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done (MPI) or until the caller's stream is ordered after it (NCCL).
  virtual void wait() = 0;
  // Whether it is done, without blocking. With MPI this also drives the transfer on: OpenMPI
  // progresses non-blocking collectives only inside MPI calls, so callers that compute between
  // collectives call test() on what is in flight to overlap communication with compute.
  virtual bool test() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // Contiguous tensors; shapes as in torch.distributed.
  virtual WorkPtr all_reduce(at::Tensor& t, const AllReduceOptions& o = {}) = 0;
  // in: size() * out.numel() elements; rank r receives the reduction of slice r. `in` may be
  // any buffer holding out's storage (in-place use is allowed when out is slice rank() of in).
  virtual WorkPtr reduce_scatter(at::Tensor& out, const at::Tensor& in,
                                 const ReduceScatterOptions& o = {}) = 0;
  // out: size() * in.numel() elements, slice r = rank r's `in`. `in` may be slice rank() of out.
  virtual WorkPtr all_gather(at::Tensor& out, const at::Tensor& in,
                             const AllGatherOptions& o = {}) = 0;
  virtual WorkPtr broadcast(at::Tensor& t, const BroadcastOptions& o = {}) = 0;
  virtual void barrier(const BarrierOptions& o = {}) = 0;
  // Collectives issued so far (the next one's sequence number).
  virtual int64_t sequence() const = 0;
};

// A world of this process alone (rank 0 of 1), on any device; no MPI.
std::unique_ptr<Communicator> make_self_communicator();
// The world of this process's launch (MPI_Init_thread when needed). timeout_s > 0.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s);
// NCCL over the same world; the GPU is the local rank's (local_rank() modulo the device count).
// Throws when this build has no NCCL backend.
std::unique_ptr<Communicator> make_nccl_communicator(double timeout_s);
bool nccl_backend_built();
// The backend for tensors on `device`.
std::unique_ptr<Communicator> make_communicator(const c10::Device& device, double timeout_s);

// Launch facts from the environment: world size and rank before MPI starts (OpenMPI, PMI,
// Slurm), and the rank within the node (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID; else 0).
int64_t launched_world_size();
int local_rank();
// The ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS, a uniform
// SLURM_STEP_TASKS_PER_NODE), 0 when the launcher does not say.
int local_size();

}  // namespace asc::comm
