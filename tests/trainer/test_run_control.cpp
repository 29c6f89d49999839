// RunControl (run_control.h): the non-finite-step policy and the per-step stop agreement in one
// process; the same through train() with the NaN fault hook and --stop-after-step. (Across ranks:
// tests/parallel/faults_test.sh and checkpoint_test.sh under mpirun.)
#include <gtest/gtest.h>

#include <csignal>
#include <cmath>

#include "common/error.h"
#include "config/recipe.h"
#include "run_control.h"
#include "test_util.h"
#include "train.h"

using namespace asc;

TEST(RunControl, SkipsNonFiniteStepsAndStopsAfterTooManyInARow) {
  RunControl c(nullptr, /*max_bad_steps=*/2);
  EXPECT_TRUE(c.account(1, 2.5, 1.0));
  EXPECT_FALSE(c.account(2, std::nan(""), 1.0));
  EXPECT_FALSE(c.account(3, 2.4, INFINITY));
  EXPECT_TRUE(c.account(4, 2.3, 0.9));  // a good step resets the count in a row
  EXPECT_FALSE(c.account(5, std::nan(""), std::nan("")));
  EXPECT_FALSE(c.account(6, std::nan(""), std::nan("")));
  EXPECT_EQ(c.skipped_steps(), 4);
  try {
    c.account(7, std::nan(""), std::nan(""));
    FAIL() << "a third bad step in a row must stop the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train.max_bad_steps: 2"), std::string::npos) << e.what();
  }
}

TEST(RunControl, StopAfterStepActsAsSigtermAtThatStepOnly) {
  RunControl c(nullptr, 0, /*stop_after_step=*/3);
  for (int64_t step : {1, 2, 4}) EXPECT_EQ(c.agree(step, false).stop_signal, 0) << step;
  EXPECT_EQ(c.agree(3, false).stop_signal, SIGTERM);
  EXPECT_TRUE(c.agree(1, false).all_written);
  EXPECT_FALSE(c.agree(1, true).all_written);
}

namespace {
Recipe small_recipe(const std::string& dir, std::vector<std::string> ov) {
  ov.insert(ov.begin(), {"train.micro_batch_size=4"});
  return test::tiny_recipe(dir, std::move(ov));
}
}  // namespace

TEST(RunControl, AFaultyStepIsSkippedAndTrainingGoesOn) {
  TrainOptions o;
  o.hooks.nan_at = {{2, 0}};
  const TrainResult res = train(small_recipe(test::temp_dir("rc_nan"), {}), o);
  EXPECT_EQ(res.steps, 6);
  EXPECT_EQ(res.skipped_steps, 1);
  ASSERT_EQ(res.losses.size(), 6u);
  EXPECT_TRUE(std::isnan(res.losses[1]));
  for (size_t i : {0u, 2u, 3u, 4u, 5u}) EXPECT_TRUE(std::isfinite(res.losses[i])) << i;
}
