#include "metrics/metrics.h"

#include <cmath>
#include <cstdint>

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "metrics/tensorboard.h"

namespace asc {

std::string format_duration(double s) {
  if (s < 0 || s != s) return "?";
  int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

MetricsLogger::MetricsLogger(const std::string& run_dir, bool tensorboard, bool progress)
    : progress_(progress), tty_(isatty(STDERR_FILENO)) {
  const std::string path = run_dir + "/metrics.jsonl";
  jsonl_.open(path, std::ios::out | std::ios::app);
  if (!jsonl_) ASC_FAIL("cannot open {} for writing", path);
  if (tensorboard) tb_ = std::make_unique<TensorBoardWriter>(run_dir + "/tensorboard");
}

MetricsLogger::~MetricsLogger() {
  finish();
}

void MetricsLogger::log(const StepMetrics& m) {
  nlohmann::json j = {{"step", m.step},
                      {"loss", m.loss},
                      {"lr", m.lr},
                      {"grad_norm", m.grad_norm},
                      {"tokens_per_s", m.tokens_per_s},
                      {"tflops", m.tflops},
                      {"tokens", m.tokens},
                      {"elapsed_s", m.elapsed_s},
                      {"step_s", m.step_s},
                      {"data_wait_s", m.data_wait_s}};
  if (m.mfu >= 0) j["mfu"] = m.mfu;
  if (m.device_peak_bytes >= 0) j["device_peak_bytes"] = m.device_peak_bytes;
  if (m.has_eval) {
    j["eval_loss"] = m.eval_loss;
    j["eval_ppl"] = std::exp(m.eval_loss);
    j["eval_tokens"] = m.eval_tokens;
  }
  jsonl_ << j.dump() << "\n";
  jsonl_.flush();
  if (tb_) {
    tb_->add_scalar("train/loss", float(m.loss), m.step);
    tb_->add_scalar("train/lr", float(m.lr), m.step);
    tb_->add_scalar("train/grad_norm", float(m.grad_norm), m.step);
    tb_->add_scalar("train/tokens_per_s", float(m.tokens_per_s), m.step);
    if (m.has_eval) {
      tb_->add_scalar("eval/loss", float(m.eval_loss), m.step);
      tb_->add_scalar("eval/perplexity", float(std::exp(m.eval_loss)), m.step);
    }
    tb_->flush();
  }
  if (!progress_) return;
  const double eta =
      m.step > 0 ? m.elapsed_s / double(m.step) * double(m.total_steps - m.step) : -1;
  std::string mfu = m.mfu >= 0 ? fmt::format("mfu {:.1f}%", 100 * m.mfu)
                               : fmt::format("{:.3f} TFLOP/s", m.tflops);
  std::string line = fmt::format(
      "step {}/{} | loss {:.4f} | lr {:.3e} | gnorm {:.3f} | {:.0f} tok/s | {} | eta {}", m.step,
      m.total_steps, m.loss, m.lr, m.grad_norm, m.tokens_per_s, mfu, format_duration(eta));
  if (m.has_eval)
    line += fmt::format(" | val loss {:.4f} ppl {:.2f}", m.eval_loss, std::exp(m.eval_loss));
  const int64_t every = std::max<int64_t>(1, m.total_steps / 20);
  if (tty_) {
    fmt::print(stderr, "\r\033[K{}", line);
    line_open_ = true;
    if (m.step == m.total_steps || m.has_eval) finish();  // a validation line stays
  } else if (m.step == 1 || m.step % every == 0 || m.step == m.total_steps || m.has_eval) {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

void MetricsLogger::finish() {
  if (line_open_) fmt::print(stderr, "\n");
  line_open_ = false;
}

}  // namespace asc
