// fs.h — crash-safe file output. AtomicFile writes to "<path>.tmp.<pid>", and commit() fsyncs
// it, renames it over `path` and fsyncs the directory; destroyed without commit() it removes
// the temporary, so `path` is always either the old complete file or the new complete file.
#pragma once

#include <cstddef>
#include <string>

namespace asc {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// Writes a whole small file atomically.
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);
void fsync_dir(const std::string& dir);

}  // namespace asc
