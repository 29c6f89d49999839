#pragma once
// Step profiling: libtorch's own profiler (Kineto; CUPTI on a GPU) around a window of training
// steps, saved as a Chrome trace (chrome://tracing, Perfetto, TensorBoard's profiler plugin).
// tools/bench/trace_summary.py ranks the kernels of such a trace and says how busy the GPU was.
#include <cstdint>
#include <string>

namespace asc {

class StepProfiler {
 public:
  // Records steps [first_step, first_step + steps) (1-based; first_step 0: off) of this rank
  // into `path`, CPU operators and, when `cuda`, the device's kernels and copies.
  StepProfiler(int64_t first_step, int64_t steps, std::string path, bool cuda);
  ~StepProfiler();  // a window the run did not finish is saved as far as it got
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  void before_step(int64_t step);
  void after_step(int64_t step);

 private:
  void stop();
  int64_t first_, last_;
  std::string path_;
  bool cuda_, on_ = false;
};

}  // namespace asc
