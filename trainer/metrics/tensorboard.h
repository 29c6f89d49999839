// tensorboard.h — a small writer of TensorBoard event files (written by hand: no C++ library
// for them is packaged here). File events.out.tfevents.<unix time>.<host>, TFRecord framing:
// uint64 length (LE), masked CRC32C of the length, the Event proto, masked CRC32C of the proto.
// The first record carries file_version "brain.Event:2". Not thread-safe: one writer per rank 0.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace asc {

class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);
  void add_scalar(const std::string& tag, float value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::ofstream out_;
};

}  // namespace asc
