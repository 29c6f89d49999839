// test_util.h — shared helpers for the libtorch tests: temporary directories, running the Python
// oracles of the test environment, the Hugging Face fixtures (made once per process).
#pragma once

#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "checkpoint/safetensors.h"
#include "config/recipe.h"

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
// A tensor copied out of a safetensors file.
at::Tensor load_tensor(const asc::st::SafetensorsFile& f, const std::string& name);
void save_tensors(const std::string& path,
                  const std::vector<std::pair<std::string, at::Tensor>>& t);

}  // namespace asc::test
