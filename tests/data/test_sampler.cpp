// ShardedSampler in one process: the global order is the seeded epoch permutation, epochs roll
// over dropping the tail, a restored data state continues exactly, coordinator errors surface.
#include <gmock/gmock.h>

#include <cstdint>
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/demo_corpus.h"
#include "data/sampler.h"

using namespace asc;

TEST(Sampler, GlobalBatchesFollowTheEpochPermutation) {
  LocalChannel ch;
  ShardedSampler s(ch, 5, 4, [] { return int64_t(10); });
  EXPECT_EQ(s.steps_per_epoch(), 2);  // 10 samples, batches of 4: 2 dropped per epoch
  auto e0 = epoch_order(10, 5, 0), e1 = epoch_order(10, 5, 1);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(s.next_local_batch(), std::vector<int64_t>(e0.begin(), e0.begin() + 4));
  EXPECT_EQ(s.next_local_batch(), std::vector<int64_t>(e0.begin() + 4, e0.begin() + 8));
  EXPECT_EQ(s.next_local_batch(), std::vector<int64_t>(e1.begin(), e1.begin() + 4));
  EXPECT_EQ(s.state(), (DataState{1, 4}));
}

TEST(Sampler, RestoredStateContinuesExactly) {
  LocalChannel ch;
  ShardedSampler a(ch, 9, 3, [] { return int64_t(20); });
  for (int i = 0; i < 7; ++i) a.next_local_batch();  // into the second epoch
  DataState saved = a.state();
  std::vector<std::vector<int64_t>> rest;
  for (int i = 0; i < 9; ++i) rest.push_back(a.next_local_batch());
  ShardedSampler b(ch, 9, 3, [] { return int64_t(20); });
  b.restore(saved);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(b.next_local_batch(), rest[size_t(i)]) << i;
  EXPECT_THROW(b.restore({0, 4}), Error);  // not a batch boundary
}

TEST(Sampler, CoordinatorErrorsReachTheCaller) {
  LocalChannel ch;
  try {
    ShardedSampler s(ch, 1, 4, []() -> int64_t { ASC_FAIL("corpus.h5: the corpus is empty"); });
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.message(),
                testing::HasSubstr("coordinator (rank 0): corpus.h5: the corpus is empty"));
  }
  EXPECT_THROW(ShardedSampler(ch, 1, 8, [] { return int64_t(5); }), Error);  // fewer than a batch
}
