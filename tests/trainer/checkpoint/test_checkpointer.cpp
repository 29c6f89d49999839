// The Checkpointer (checkpoint/checkpointer.h) in one process: a stop after step k saves k and a
// resume continues bit-identically to the uninterrupted run; background saves hold the state of
// their step although training goes on while they are written; metrics of redone steps are
// trimmed; a resumed recipe that changes what is trained is refused naming the key. (Under
// mpirun, with ranks killed at every point of a save: tests/parallel/checkpoint_test.sh.)
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>

#include <ATen/ATen.h>

#include "checkpoint/checkpointer.h"
#include "checkpoint/manifest.h"
#include "checkpoint/manifest_edit.h"
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

// Crafted manifests (issue 23): each is refused by the reader every command uses (train's
// resume, export, ckpt inspect) or by the manifest check resuming runs first, naming what is
// wrong; resuming then skips to an older checkpoint. None makes a reader hash or read a file
// outside the step directory.
TEST(Checkpointer, CraftedManifestsAreRefusedNamingTheProblem) {
  const std::string run = test::temp_dir("ckpt_crafted");
  train(recipe(run, {"train.max_steps=4", "checkpoint.every_steps=2"}));
  const std::string good = run + "/" + step_dir_name(4);
  const std::string manifest_path = good + "/" + kManifestFile;
  const std::string original = read_file(manifest_path);
  auto reader_error = [&] {
    try {
      CheckpointReader r(good);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // Expected in the reader's error and in verify_checkpoint's problem ("": not checked there).
  const std::map<std::string, std::pair<std::string, std::string>> expect = {
      {"slice-file-outside", {"slice file '../x' leaves the directory", ""}},
      {"file-outside", {"", "lists '../../../../etc/passwd', which is not a file of the step"}},
      {"gap", {"has a gap at element 0", ""}},
      {"overlap", {"has overlapping slices", ""}},
      {"past-end", {"lies past the end of the file", ""}},
      {"dtype", {"stored as F64 (expected F32 or BF16)", ""}},
      {"shape", {"of its", ""}},
      {"format-99", {"format_version 99; this build reads 1 to 2", "format_version 99"}},
      {"other-step", {"", "holds the checkpoint of step 3"}},
  };
  ASSERT_EQ(expect.size(), test::manifest_edits().size());
  for (const std::string& edit : test::manifest_edits()) {
    write_file_atomic(manifest_path, original);
    test::edit_manifest(good, edit);
    const auto& [in_reader, in_verify] = expect.at(edit);
    const std::string err = reader_error(), problem = verify_checkpoint(good);
    if (!in_reader.empty())
      EXPECT_NE(err.find(in_reader), std::string::npos) << edit << ": " << err;
    if (!in_verify.empty()) {
      EXPECT_NE(problem.find(in_verify), std::string::npos) << edit << ": " << problem;
      EXPECT_EQ(newest_complete_checkpoint(run), run + "/" + step_dir_name(2)) << edit;
    }
    EXPECT_TRUE(!err.empty() || !problem.empty()) << edit << " was accepted";
  }
  write_file_atomic(manifest_path, original);
  EXPECT_EQ(reader_error(), "");
  EXPECT_EQ(verify_checkpoint(good), "");
}
