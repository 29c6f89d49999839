// metrics.h — what a step reports, and where it goes: metrics.jsonl (one JSON object per step,
// with eval_loss / eval_ppl / eval_tokens on the steps that validated),
// optional TensorBoard scalars, and rank 0's live one-line progress display on stderr
// (redrawn in place on a terminal, a full line every ~5% of the run otherwise).
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

namespace asc {

class TensorBoardWriter;

struct StepMetrics {
  int64_t step = 0, total_steps = 0;  // step is 1-based here: updates done
  double loss = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0;  // over this step
  double tflops = 0;        // achieved model TFLOP/s (6N + attention), recomputation excluded
  double mfu = -1;          // tflops / peak, or < 0 when the peak is unknown
  int64_t tokens = 0;       // target tokens seen so far
  double elapsed_s = 0;     // since training started
  double step_s = 0;        // wall time of this step
  double data_wait_s = 0;   // of which the loop waited for its batch (prefetch not ready)
  int64_t device_peak_bytes = -1;  // GPU: peak allocated by libtorch so far (rank 0); CPU: -1
  // Validation after this step (eval/validator.h), when it ran: held-out mean token loss.
  bool has_eval = false;
  double eval_loss = 0;
  int64_t eval_tokens = 0;
};

class MetricsLogger {
 public:
  MetricsLogger(const std::string& run_dir, bool tensorboard, bool progress);
  ~MetricsLogger();
  void log(const StepMetrics& m);
  void finish();  // ends the progress line

 private:
  std::ofstream jsonl_;
  std::unique_ptr<TensorBoardWriter> tb_;
  bool progress_, tty_;
  bool line_open_ = false;
};

std::string format_duration(double seconds);

}  // namespace asc
