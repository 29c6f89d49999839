// host_memory.h — keep freed host memory for reuse instead of returning it to the kernel.
//
// libtorch's CPU allocator is plain malloc. glibc serves every block above its mmap threshold
// (at most 32 MiB) with a fresh mmap and unmaps it on free, so each training step page-faults
// its large activations and logits in again (measured: ~35% of a CPU step for the `small`
// preset; see docs/PERFORMANCE.md). With mmap disabled and trimming off, a step reuses the
// previous step's pages. Cost: the process keeps its peak heap (measured +12% RSS).
// Call once, early, before large allocations; process-wide.
#pragma once

namespace asc {

// Returns false when the C library refused a setting (the run goes on with defaults).
bool cache_host_memory();

// The memory this process may use, in bytes: the least of the machine's physical memory, the
// address-space limit (ulimit -v) and the cgroup's limit (memory.max, v2; memory.limit_in_bytes,
// v1); 0 when none is known.
long long usable_memory_bytes();

// The memory of this node its processes share: the least of its physical memory and the
// cgroup's limit; 0 when unknown. And the limit of one process's address space (ulimit -v); 0
// when none.
long long node_memory_bytes();
long long process_memory_limit_bytes();

// The machine's MemAvailable (/proc/meminfo) in bytes: what new allocations can get without
// swapping; 0 when unknown.
long long available_memory_bytes();

// This process's resident memory now (VmRSS) and its peak so far (VmHWM), in bytes; 0 unknown.
long long resident_bytes();
long long peak_resident_bytes();

// Refuses (asc::Error naming `what`) a thread count far beyond the machine: more than
// max(64, 4 x its cores). 100,000 threads would exhaust the process table of a shared node.
void check_thread_count(long long threads, const char* what);

}  // namespace asc
