#include "common/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace asc {

namespace {
constexpr size_t kDirectAlign = 4096;
constexpr size_t kDirectBlock = size_t(16) << 20;
}  // namespace

AtomicFile::AtomicFile(std::string path, bool direct) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  if (direct) {
    fd_ = ::open(tmp_.c_str(), flags | O_DIRECT, 0644);
    if (fd_ >= 0) {
      void *a = nullptr, *b = nullptr;
      if (::posix_memalign(&a, kDirectAlign, kDirectBlock) != 0 ||
          ::posix_memalign(&b, kDirectAlign, kDirectBlock) != 0) {
        std::free(a);
        ::close(fd_);
        ::unlink(tmp_.c_str());
        ASC_FAIL("cannot allocate the write buffers for {}", tmp_);
      }
      buf_ = static_cast<char*>(a), spare_ = static_cast<char*>(b);
      return;
    }
  }
  fd_ = ::open(tmp_.c_str(), flags, 0644);
  if (fd_ < 0) ASC_FAIL("cannot create {}: {}", tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (in_flight_.valid()) in_flight_.wait();
  std::free(buf_);
  std::free(spare_);
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::wait_block() {
  if (in_flight_.valid()) in_flight_.get();
}

void AtomicFile::flush_block() {
  wait_block();
  const size_t n = fill_, padded = (n + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  std::memset(buf_ + n, 0, padded - n);
  std::swap(buf_, spare_);
  fill_ = 0;
  in_flight_ = std::async(std::launch::async, [this, data = spare_, padded, at = written_] {
    size_t done = 0;
    while (done < padded) {
      ssize_t w = ::pwrite(fd_, data + done, padded - done, off_t(at + done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EINVAL) {  // O_DIRECT accepted at open, refused here: write normally
        const int flags = ::fcntl(fd_, F_GETFL);
        if (flags >= 0 && (flags & O_DIRECT) && ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) == 0)
          continue;
      }
      if (w < 0) ASC_FAIL("writing {}: {}", tmp_, std::strerror(errno));
      done += size_t(w);
    }
  });
  written_ += n;
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  if (buf_) {
    while (n > 0) {
      const size_t take = std::min(n, kDirectBlock - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take, p += take, n -= take;
      if (fill_ == kDirectBlock) flush_block();
    }
    return;
  }
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) ASC_FAIL("writing {}: {}", tmp_, std::strerror(errno));
    p += w, n -= size_t(w);
  }
}

void AtomicFile::commit() {
  if (buf_) {  // the last block, zero-padded to the alignment; then the file cut to size
    if (fill_ > 0) flush_block();
    wait_block();
    if (::ftruncate(fd_, off_t(written_)) != 0)
      ASC_FAIL("truncating {}: {}", tmp_, std::strerror(errno));
  }
  if (::fsync(fd_) != 0) ASC_FAIL("fsync {}: {}", tmp_, std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp_.c_str());
    ASC_FAIL("rename {} -> {}: {}", tmp_, path_, std::strerror(e));
  }
  auto parent = std::filesystem::path(path_).parent_path();
  fsync_dir(parent.empty() ? "." : parent.string());
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems do not allow opening directories
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content);
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ASC_FAIL("cannot open {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace asc
