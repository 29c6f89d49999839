// self_backend.cpp — the communicator of a job of one process (parallel.mode none): world size 1,
// no MPI. A reduction over one rank is the rank's own tensor, a gather or scatter a copy; every
// Work is done when returned. It works on any device (the copies are the tensor library's), so
// the one-process trainer runs through the same engine as the parallel modes.
#include "comm/communicator.h"

#include <ATen/ATen.h>

#include "common/error.h"

namespace asc::comm {
namespace {

class Done final : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
  WorkPtr all_reduce(at::Tensor& t, const AllReduceOptions&) override {
    ASC_CHECK(t.is_contiguous(), "all_reduce: the tensor is not contiguous");
    return issue();
  }
  WorkPtr reduce_scatter(at::Tensor& out, const at::Tensor& in,
                         const ReduceScatterOptions&) override {
    ASC_CHECK(in.numel() == out.numel(), "reduce_scatter: in has {} elements, out {} (world 1)",
              in.numel(), out.numel());
    copy(out, in);
    return issue();
  }
  WorkPtr all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions&) override {
    ASC_CHECK(in.numel() == out.numel(), "all_gather: in has {} elements, out {} (world 1)",
              in.numel(), out.numel());
    copy(out, in);
    return issue();
  }
  WorkPtr broadcast(at::Tensor&, const BroadcastOptions& o) override {
    ASC_CHECK(o.root == 0, "broadcast: root {} in a world of one rank", o.root);
    return issue();
  }
  void barrier(const BarrierOptions&) override { ++sequence_; }
  int64_t sequence() const override { return sequence_; }

 private:
  static void copy(at::Tensor& out, const at::Tensor& in) {
    if (in.data_ptr() == out.data_ptr()) return;  // in place
    out.view({-1}).copy_(in.reshape({-1}));
  }
  WorkPtr issue() {
    ++sequence_;
    return std::make_shared<Done>();
  }
  int64_t sequence_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() {
  return std::make_unique<SelfCommunicator>();
}

}  // namespace asc::comm
