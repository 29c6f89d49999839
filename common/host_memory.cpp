#include "common/host_memory.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "common/error.h"

namespace asc {

bool cache_host_memory() {
  bool ok = mallopt(M_MMAP_MAX, 0) == 1;                 // large blocks from the heap, not mmap
  ok = (mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1) && ok;  // keep up to 1 GiB of free top
  ok = (mallopt(M_TOP_PAD, 64 << 20) == 1) && ok;        // grow the heap in 64 MiB steps
  return ok;
}

namespace {
// A number from the first line of `path`, or 0 ("max", absent, unreadable).
long long limit_in(const char* path) {
  std::ifstream in(path);
  long long v = 0;
  return in >> v && v > 0 ? v : 0;
}
}  // namespace

void check_thread_count(long long threads, const char* what) {
  const long long cores = std::max(1u, std::thread::hardware_concurrency());
  const long long most = std::max(64LL, 4 * cores);
  if (threads > most)
    ASC_FAIL_HINT("use about the number of cores per rank (0: libtorch's default)",
                  "{} = {} threads on a machine of {} cores (at most {})", what, threads, cores,
                  most);
}

namespace {
// The value (kB in the file) of `key` in a /proc file of "Key:   N kB" lines, in bytes; 0 absent.
long long proc_kb(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) return std::atoll(line.c_str() + key.size()) * 1024;
  return 0;
}
}  // namespace

long long available_memory_bytes() {
  return proc_kb("/proc/meminfo", "MemAvailable:");
}

long long resident_bytes() {
  return proc_kb("/proc/self/status", "VmRSS:");
}

long long peak_resident_bytes() {
  return proc_kb("/proc/self/status", "VmHWM:");
}

long long node_memory_bytes() {
  long long best = 0;
  auto take = [&](long long v) {
    if (v > 0 && (best == 0 || v < best)) best = v;
  };
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && size > 0) take((long long)pages * size);
  take(limit_in("/sys/fs/cgroup/memory.max"));
  take(limit_in("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
  return best;
}

long long process_memory_limit_bytes() {
  struct rlimit as {};
  return getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY ? (long long)as.rlim_cur
                                                                        : 0;
}

long long usable_memory_bytes() {
  long long best = 0;
  auto take = [&](long long v) {
    if (v > 0 && (best == 0 || v < best)) best = v;
  };
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && size > 0) take((long long)pages * size);
  struct rlimit as {};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) take((long long)as.rlim_cur);
  take(limit_in("/sys/fs/cgroup/memory.max"));
  take(limit_in("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
  return best;
}

}  // namespace asc
