#include "metrics/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <utility>

#include <fmt/core.h>

#include "kernels/cuda_device.h"

namespace asc {

namespace prof = torch::profiler::impl;

StepProfiler::StepProfiler(int64_t first_step, int64_t steps, std::string path, bool cuda)
    : first_(first_step), last_(first_step + steps - 1), path_(std::move(path)), cuda_(cuda) {}

StepProfiler::~StepProfiler() {
  try {
    stop();
  } catch (const std::exception& e) {  // never let a trace take the run's own error away
    fmt::print(stderr, "warning: the profile of steps {}..{} was not saved: {}\n", first_, last_,
               e.what());
  }
}

void StepProfiler::before_step(int64_t step) {
  if (first_ <= 0 || step != first_) return;
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (cuda_)
    activities.insert(prof::ActivityType::CUDA);
  else  // Kineto reports a failed GPU count as an ERROR on a machine without one: not ours
    ::setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  torch::autograd::profiler::prepareProfiler(config, activities);
  torch::autograd::profiler::enableProfiler(config, activities);
  on_ = true;
}

void StepProfiler::after_step(int64_t step) {
  if (!on_ || step != last_) return;
  try {
    stop();
  } catch (const std::exception& e) {  // a trace that cannot be saved does not stop the run
    fmt::print(stderr, "warning: the profile of steps {}..{} was not saved: {}\n", first_, last_,
               e.what());
  }
}

void StepProfiler::stop() {
  if (!on_) return;
  on_ = false;
  if (cuda_) kernels::cuda_synchronize();  // the window's kernels finish inside the trace
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result =
      torch::autograd::profiler::disableProfiler();
  // A bare file name has no parent to create (create_directories("") throws).
  if (const auto dir = std::filesystem::path(path_).parent_path(); !dir.empty())
    std::filesystem::create_directories(dir);
  result->save(path_);
  fmt::print(stderr, "profile of steps {}..{} saved to {}\n", first_, last_, path_);
}

}  // namespace asc
