#include "common/host_memory.h"

#include <malloc.h>
#include <unistd.h>

namespace asc {

bool cache_host_memory() {
  bool ok = mallopt(M_MMAP_MAX, 0) == 1;                 // large blocks from the heap, not mmap
  ok = (mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1) && ok;  // keep up to 1 GiB of free top
  ok = (mallopt(M_TOP_PAD, 64 << 20) == 1) && ok;        // grow the heap in 64 MiB steps
  return ok;
}

long long physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? (long long)pages * size : 0;
}

}  // namespace asc
