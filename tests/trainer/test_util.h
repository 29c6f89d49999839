// test_util.h — shared helpers for the libtorch tests: temporary directories, running the Python
// oracles of the test environment, the Hugging Face fixtures (made once per process).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "checkpoint/safetensors.h"
#include "comm/communicator.h"
#include "config/recipe.h"
#include "optim/flat_adamw.h"
#include "parallel/engine.h"
#include "train.h"

namespace asc::test {

std::string temp_dir(const std::string& name);  // fresh, empty
// Runs ASC_PYTHON tests/oracle/<script> args...; returns the exit status; output to stderr.
int run_oracle(const std::string& script, const std::string& args);
// Directory with the Hugging Face fixtures (tests/oracle/make_hf_fixtures.py), made on first use.
const std::string& hf_fixtures();
// A tiny recipe on the built-in demo stream (preset tiny-gqa, sequence 32, global batch 8 in
// one micro-batch, 6 steps, one thread, no progress line) with run directory `dir`, then
// `overrides` ("train.max_steps=3").
asc::Recipe tiny_recipe(const std::string& dir, std::vector<std::string> overrides = {});
// One process as train() builds it for parallel.mode none: the self communicator, the engine
// over `model` (fp32 when given; the engine casts it to bf16 when asked) and the optimizer.
struct LocalTrainer {
  LocalTrainer(asc::LlamaForCausalLM& model, bool bf16, asc::AdamWOptions opt = {},
               asc::OptimizerKind kind = asc::OptimizerKind::kFused,
               bool activation_checkpointing = false);
  asc::BatchLoss accumulate(const asc::GlobalBatch& batch) {
    return asc::accumulate_gradients(model, *engine, batch, *comm);
  }
  double clip_and_step(double lr, double max_grad_norm) {
    return engine->step(opt, lr, max_grad_norm);
  }
  void zero_grad() { engine->zero_grad(); }
  asc::OptimizerState state() const;  // full tensors, with the step count
  asc::LlamaForCausalLM model;
  std::unique_ptr<asc::comm::Communicator> comm;
  std::unique_ptr<asc::ParallelEngine> engine;
  asc::FlatAdamW opt;
  asc::TrainingState saved;  // what a checkpoint saves
};
// A tensor copied out of a safetensors file.
at::Tensor load_tensor(const asc::st::SafetensorsFile& f, const std::string& name);
void save_tensors(const std::string& path,
                  const std::vector<std::pair<std::string, at::Tensor>>& t);

}  // namespace asc::test
