// The communicator of a one-process job (comm/self_backend.cpp): the collectives over one rank —
// a reduction leaves the tensor as it is, a gather or scatter copies (or does nothing in place),
// every Work is done at once — and sizes that could not hold in a world of one are refused.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "comm/communicator.h"

using namespace asc;

TEST(SelfCommunicator, CollectivesOverOneRank) {
  auto comm = comm::make_self_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->backend(), "self");

  at::Tensor t = at::arange(6, at::kFloat);
  const at::Tensor before = t.clone();
  auto w = comm->all_reduce(t, {comm::ReduceOp::kSum});
  EXPECT_TRUE(w->test());
  w->wait();
  EXPECT_TRUE(at::equal(t, before));
  comm->all_reduce(t, {comm::ReduceOp::kMax})->wait();
  EXPECT_TRUE(at::equal(t, before));

  at::Tensor out = at::zeros({6});
  comm->all_gather(out, t)->wait();
  EXPECT_TRUE(at::equal(out, before));
  at::Tensor shard = at::zeros({6});
  comm->reduce_scatter(shard, t)->wait();
  EXPECT_TRUE(at::equal(shard, before));
  comm->all_gather(t, t)->wait();  // in place
  EXPECT_TRUE(at::equal(t, before));
  comm->broadcast(t)->wait();
  EXPECT_TRUE(at::equal(t, before));
  comm->barrier();
  EXPECT_EQ(comm->sequence(), 7);  // every collective counted, as on the other backends
}

TEST(SelfCommunicator, RefusesWhatCannotHoldInAWorldOfOne) {
  auto comm = comm::make_self_communicator();
  at::Tensor in = at::zeros({6}), out = at::zeros({3});
  EXPECT_THROW(comm->all_gather(out, in), std::exception);
  EXPECT_THROW(comm->reduce_scatter(out, in), std::exception);
  EXPECT_THROW(comm->broadcast(in, {/*root=*/1}), std::exception);
  at::Tensor strided = at::zeros({4, 4}).t();
  EXPECT_THROW(comm->all_reduce(strided), std::exception);
}
