// test_util.h — shared helpers for the libtorch tests: temporary directories, running the Python
// oracles of the test environment, the Hugging Face fixtures (made once per process).
#pragma once

#include <string>

#include <ATen/Tensor.h>

#include "checkpoint/safetensors.h"

namespace asc::test {

std::string temp_dir(const std::string& name);  // fresh, empty
// Runs ASC_PYTHON tests/oracle/<script> args...; returns the exit status; output to stderr.
int run_oracle(const std::string& script, const std::string& args);
// Directory with the Hugging Face fixtures (tests/oracle/make_hf_fixtures.py), made on first use.
const std::string& hf_fixtures();
// A tensor copied out of a safetensors file.
at::Tensor load_tensor(const asc::st::SafetensorsFile& f, const std::string& name);
void save_tensors(const std::string& path,
                  const std::vector<std::pair<std::string, at::Tensor>>& t);

}  // namespace asc::test
