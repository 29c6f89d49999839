// nccl_backend.cpp — the Communicator over NCCL for CUDA tensors. Built when the CUDA toolkit,
// NCCL and a CUDA-enabled libtorch are found (CI compiles it; it runs only on GPU machines).
// Each collective runs on the communicator's own stream: it waits (event) for the caller's
// current stream, so it sees the tensors as produced, and Work::wait() makes the caller's stream
// wait for it in turn — compute and communication overlap, the host blocks only to enforce the
// deadline. Tensors used on the NCCL stream are recorded with the caching allocator so their
// memory is not reused before the collective ends. The unique id travels over MPI; arrival
// notices over MPI name ranks that never arrive, as in the MPI backend.
#include <cuda_runtime.h>
#include <nccl.h>

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <fmt/format.h>

#include <ATen/ATen.h>

#include "comm/communicator.h"
#include "comm/mpi_util.h"
#include "common/error.h"
#include "common/foreign_error.h"

namespace asc::comm {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  int v = 0;
  cudaRuntimeGetVersion(&v);
  const std::string version = fmt::format("runtime {}.{}", v / 1000, (v % 1000) / 10);
  fail_library_call("CUDA", version.c_str(), what, cudaGetErrorString(e), kCudaHint, __FILE__,
                    __LINE__);
}
void nccl_check(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  int v = 0;
  ncclGetVersion(&v);  // e.g. 22703 = 2.27.3
  const std::string version = fmt::format("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
  // ncclGetLastError holds the detail behind a generic code (e.g. "unhandled system error").
  std::string message = ncclGetErrorString(r);
  if (const char* last = ncclGetLastError(nullptr); last && *last)
    message += std::string(": ") + last;
  fail_library_call("NCCL", version.c_str(), what, message.c_str(), kNcclHint, __FILE__, __LINE__);
}

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kHalf:
      return ncclFloat16;
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    case at::kByte:
      return ncclUint8;
    default:
      ASC_FAIL("NCCL backend: {} tensors are not supported", c10::toString(t.scalar_type()));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::kMax ? ncclMax : ncclSum;
}

class NcclCommunicator;

class NcclWork final : public Work {
 public:
  NcclWork(NcclCommunicator* c, cudaEvent_t done, const char* op, int64_t seq, int64_t bytes)
      : c_(c), done_(done), op_(op), seq_(seq), bytes_(bytes) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override;
  bool test() override { return waited_ || cudaEventQuery(done_) == cudaSuccess; }

 private:
  NcclCommunicator* c_;
  cudaEvent_t done_;
  const char* op_;
  int64_t seq_, bytes_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(double timeout_s) : timeout_(timeout_s) {
    ASC_CHECK(timeout_s > 0, "collective timeout must be positive, got {}", timeout_s);
    rank_ = board_.rank(), size_ = board_.size();
    int devices = 0;
    cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    ASC_CHECK(devices > 0, "NCCL backend: no CUDA device visible on this node");
    device_ = local_rank() % devices;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id;
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    mpi_check(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast (NCCL id)");
    nccl_check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  int64_t sequence() const override { return seq_; }

  WorkPtr all_reduce(at::Tensor& t, const AllReduceOptions& o) override {
    check(t, "all_reduce");
    return launch("all_reduce", t.nbytes(), {t}, [&](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t),
                           nccl_op(o.op), comm_, s);
    });
  }
  WorkPtr reduce_scatter(at::Tensor& out, const at::Tensor& in,
                         const ReduceScatterOptions& o) override {
    check(out, "reduce_scatter output"), check(in, "reduce_scatter input");
    ASC_CHECK(in.numel() == out.numel() * size_ && in.scalar_type() == out.scalar_type(),
              "reduce_scatter: input of {} elements for {} ranks × output of {}", in.numel(), size_,
              out.numel());
    return launch("reduce_scatter", in.nbytes(), {out, in}, [&](cudaStream_t s) {
      return ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(out),
                               nccl_op(o.op), comm_, s);
    });
  }
  WorkPtr all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions&) override {
    check(out, "all_gather output"), check(in, "all_gather input");
    ASC_CHECK(out.numel() == in.numel() * size_ && in.scalar_type() == out.scalar_type(),
              "all_gather: output of {} elements for {} ranks × input of {}", out.numel(), size_,
              in.numel());
    return launch("all_gather", out.nbytes(), {out, in}, [&](cudaStream_t s) {
      return ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.numel()), nccl_type(in), comm_,
                           s);
    });
  }
  WorkPtr broadcast(at::Tensor& t, const BroadcastOptions& o) override {
    check(t, "broadcast");
    return launch("broadcast", t.nbytes(), {t}, [&](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t), o.root,
                           comm_, s);
    });
  }
  void barrier(const BarrierOptions&) override {  // the communicator's deadline

    at::Tensor one =
        at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    all_reduce(one, {})->wait();
    cuda_check(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(device_).stream()),
               "barrier sync");
  }

  // Host-side wait for the deadline, then order the caller's stream after the collective.
  void wait_event(cudaEvent_t done, const char* op, int64_t seq, int64_t bytes) {
    Deadline deadline(board_, op, seq, bytes, timeout_);
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      board_.drain();
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) cuda_check(q, "cudaEventQuery");
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        comm_fatal(rank_, size_,
                   fmt::format("{} #{} failed in NCCL: {}", op, seq, ncclGetErrorString(async)));
      deadline.check();
    }
    cuda_check(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device_).stream(), done, 0),
               "cudaStreamWaitEvent");
  }

 private:
  void check(const at::Tensor& t, const char* what) const {
    ASC_CHECK(t.is_cuda() && t.get_device() == device_,
              "NCCL backend: {} tensor is on {}, this rank's GPU is cuda:{}", what,
              t.device().str(), device_);
    ASC_CHECK(t.is_contiguous(), "NCCL backend: {} tensor is not contiguous", what);
  }

  template <class F>
  WorkPtr launch(const char* op, int64_t bytes, std::initializer_list<at::Tensor> used, F&& call) {
    const int64_t seq = ++seq_;
    board_.announce(seq);
    cudaStream_t caller = c10::cuda::getCurrentCUDAStream(device_).stream();
    cudaEvent_t ready, done;
    cuda_check(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventRecord(ready, caller), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
    for (const at::Tensor& t : used)
      c10::cuda::CUDACachingAllocator::recordStream(
          t.storage().data_ptr(), c10::cuda::getStreamFromExternal(stream_, device_));
    nccl_check(call(stream_), op);
    cuda_check(cudaEventRecord(done, stream_), "cudaEventRecord");
    return std::make_shared<NcclWork>(this, done, op, seq, bytes);
  }

  ArrivalBoard board_;
  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_;
  int64_t seq_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

void NcclWork::wait() {
  if (waited_) return;
  c_->wait_event(done_, op_, seq_, bytes_);
  waited_ = true;
}

}  // namespace

bool nccl_backend_built() {
  return true;
}

std::unique_ptr<Communicator> make_nccl_communicator(double timeout_s) {
  return std::make_unique<NcclCommunicator>(timeout_s);
}

}  // namespace asc::comm
