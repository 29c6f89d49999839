#include "metrics/tensorboard.h"

#include <cstdint>

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "metrics/crc32c.h"
#include "tb_event.pb.h"

namespace asc {
namespace {
double now_s() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}
}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(int64_t(now_s())) + "." + host;
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) ASC_FAIL("cannot create TensorBoard file {}", path_);
  asclepius::tb::Event ev;
  ev.set_wall_time(now_s());
  ev.set_file_version("brain.Event:2");
  write_record(ev.SerializeAsString());
  flush();
}

void TensorBoardWriter::add_scalar(const std::string& tag, float value, int64_t step) {
  asclepius::tb::Event ev;
  ev.set_wall_time(now_s());
  ev.set_step(step);
  auto* v = ev.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(value);
  write_record(ev.SerializeAsString());
}

void TensorBoardWriter::write_record(const std::string& payload) {
  char len[8];
  uint64_t n = payload.size();
  for (int i = 0; i < 8; ++i) len[i] = char((n >> (8 * i)) & 0xff);
  auto put32 = [&](uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; ++i) b[i] = char((v >> (8 * i)) & 0xff);
    out_.write(b, 4);
  };
  out_.write(len, 8);
  put32(crc32c_masked(crc32c(len, 8)));
  out_.write(payload.data(), std::streamsize(payload.size()));
  put32(crc32c_masked(crc32c(payload.data(), payload.size())));
  if (!out_) ASC_FAIL("writing TensorBoard file {} failed", path_);
}

void TensorBoardWriter::flush() {
  out_.flush();
}

}  // namespace asc
