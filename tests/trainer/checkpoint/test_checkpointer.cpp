// The Checkpointer (checkpoint/checkpointer.h) in one process: a stop after step k saves k and a
// resume continues bit-identically to the uninterrupted run; background saves hold the state of
// their step although training goes on while they are written; metrics of redone steps are
// trimmed; a resumed recipe that changes what is trained is refused naming the key. (Under
// mpirun, with ranks killed at every point of a save: tests/parallel/checkpoint_test.sh.)
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>

#include "checkpoint/checkpointer.h"
#include "checkpoint/hf_io.h"
#include "checkpoint/sharded.h"
#include "common/error.h"
#include "common/fs.h"
#include "config/recipe.h"
#include "test_util.h"
#include "train.h"

using namespace asc;
namespace fs = std::filesystem;

namespace {
Recipe recipe(const std::string& dir, std::vector<std::string> ov) {
  ov.insert(ov.begin(),
            {"train.micro_batch_size=4", "train.max_steps=8", "train.weight_decay=0.1"});
  return test::tiny_recipe(dir, std::move(ov));
}
at::Tensor master_of(const std::string& step_dir, const std::string& name) {
  return CheckpointReader(step_dir).read_full(name, "master");
}
}  // namespace

TEST(Checkpointer, StopAfterStepSavesAndResumeContinuesBitIdentically) {
  const std::string straight = test::temp_dir("ckpt_straight"), run = test::temp_dir("ckpt_stop");
  const TrainResult whole = train(recipe(straight, {}));
  TrainOptions stop;
  stop.stop_after_step = 3;
  const TrainResult first = train(recipe(run, {}), stop);
  EXPECT_EQ(first.stopped_by_signal, SIGTERM);
  EXPECT_EQ(first.steps, 3);
  EXPECT_EQ(read_file(run + "/latest"), step_dir_name(3) + "\n");
  const TrainResult rest = train(recipe(run, {"checkpoint.resume=auto"}));
  EXPECT_EQ(rest.steps, 8);
  ASSERT_EQ(rest.losses.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(rest.losses[i], whole.losses[i + 3]) << "step " << i + 4;
  for (const char* name : {"model.embed_tokens.weight", "model.norm.weight"})
    EXPECT_TRUE(at::equal(master_of(run + "/" + step_dir_name(8), name),
                          master_of(straight + "/" + step_dir_name(8), name)))
        << name;
  // One metrics line per step, steps 1..8.
  std::ifstream in(run + "/metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 8);
}

TEST(Checkpointer, BackgroundSavesHoldTheStateOfTheirStep) {
  const std::string sync = test::temp_dir("ckpt_sync"), async = test::temp_dir("ckpt_async");
  train(recipe(sync, {"checkpoint.every_steps=2", "checkpoint.keep_last=0"}));
  TrainOptions slow;
  slow.hooks.async_write_delay_ms = 150;  // training has moved on before the copy is written
  train(recipe(async,
               {"checkpoint.every_steps=2", "checkpoint.async=true", "checkpoint.keep_last=0"}),
        slow);
  for (int64_t step : {2, 4, 6, 8})
    for (const char* name : {"model.layers.0.mlp.up_proj.weight", "lm_head.weight"})
      EXPECT_TRUE(at::equal(master_of(async + "/" + step_dir_name(step), name),
                            master_of(sync + "/" + step_dir_name(step), name)))
          << "step " << step << " " << name;
  EXPECT_EQ(read_file(async + "/latest"), step_dir_name(8) + "\n");
}

TEST(Checkpointer, MetricsOfStepsToBeRedoneAreDropped) {
  const std::string dir = test::temp_dir("ckpt_metrics");
  fs::create_directories(dir);
  const std::string path = dir + "/metrics.jsonl";
  write_file_atomic(
      path,
      "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2.9}\n{\"step\":3,\"loss\":2.8}\n"
      "{\"step\":4,\"loss\":2.7}\n{\"step\":5,\"lo");  // torn by a kill
  EXPECT_EQ(drop_metrics_after(path, 2), 3);
  EXPECT_EQ(read_file(path), "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2.9}\n");
  EXPECT_EQ(drop_metrics_after(path, 2), 0);
  EXPECT_EQ(drop_metrics_after(dir + "/none.jsonl", 2), 0);
}

TEST(Checkpointer, AResumeThatChangesWhatIsTrainedIsRefused) {
  const std::string run = test::temp_dir("ckpt_compat");
  TrainOptions stop;
  stop.stop_after_step = 2;
  train(recipe(run, {}), stop);
  try {
    train(recipe(run, {"checkpoint.resume=auto", "train.lr=1e-3"}));
    FAIL() << "a changed learning rate must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.lr"), std::string::npos) << e.what();
  }
  // Logging may change (the run was written without TensorBoard).
  EXPECT_EQ(train(recipe(run, {"checkpoint.resume=auto", "logging.tensorboard=true"})).steps, 8);
}
