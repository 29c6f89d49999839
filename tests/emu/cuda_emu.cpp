// cuda_emu.cpp — the scheduler behind cuda_emu.h: each block's threads are Boost.Context fibers
// (fcontext: a switch is a few instructions, no system call) on stacks carved from one mapping (a
// guard page under each), resumed in turn (alternating direction) until each finishes or waits at
// a barrier; a barrier opens when every thread it concerns is there.
#include "emu/cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/fiber.hpp>
#include <boost/context/preallocated.hpp>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace asc::emu {
namespace {

constexpr size_t kStackBytes = 128 << 10;
constexpr int kMaxThreads = 1024;
constexpr int kBlockBarrier = -1;  // the key of __syncthreads; warp w's shuffles wait at key w

// AddressSanitizer must be told when the stack changes (the kernels are instrumented in the
// test build, so their out-of-bounds accesses are reported as compute-sanitizer would).
#if defined(__SANITIZE_ADDRESS__)
void switching_to(void** fake_stack, const void* bottom, size_t size) {
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
}
void switched(void* fake_stack, const void** bottom, size_t* size) {
  __sanitizer_finish_switch_fiber(fake_stack, bottom, size);
}
#else
void switching_to(void**, const void*, size_t) {}
void switched(void*, const void**, size_t*) {}
#endif

namespace ctx = boost::context;

enum class State { kRunnable, kWaiting, kDone };
struct Fiber {
  ctx::fiber cont;  // where it resumes
  State state = State::kDone;
  int key = 0;
  int64_t warp_waits = 0;      // shuffle waits so far and the shuffle's call site: lanes
  const void* site = nullptr;  // released together must agree on both
};

// The stacks belong to the emulator (carved from its mapping): nothing to free.
struct KeepStack {
  ctx::stack_context allocate() { return {}; }
  void deallocate(ctx::stack_context&) noexcept {}
};

// Thrown inside the fibers a failed block leaves waiting, so each unwinds and ends.
struct Abandoned {};

struct Emulator {
  char* stacks = nullptr;
  size_t page = 4096;
  std::vector<Fiber> fibers = std::vector<Fiber>(kMaxThreads);
  ctx::fiber scheduler;                   // while a fiber runs: where it returns to
  const void* scheduler_stack = nullptr;  // as ASan knows it
  size_t scheduler_stack_size = 0;
  bool abandoning = false;
  int current = -1;  // the running fiber, -1 on the scheduler
  int count = 0;     // threads per block
  const std::function<void()>* body = nullptr;
  std::exception_ptr error;
  alignas(8) unsigned char slots[kMaxThreads][8];  // shuffle exchange, one slot per thread
  cudaError_t sticky = cudaSuccess;
  std::string fault;
  Stats stats;

  Emulator() {
    page = size_t(sysconf(_SC_PAGESIZE));
    void* m = mmap(nullptr, kStackBytes * kMaxThreads, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    stacks = static_cast<char*>(m);
    for (int i = 0; i < kMaxThreads; ++i)  // a stack overflow faults instead of corrupting
      mprotect(stacks + size_t(i) * kStackBytes, page, PROT_NONE);
  }
};

Emulator& emu() {
  static Emulator e;
  return e;
}

[[noreturn]] void fail(const std::string& why) {
  throw std::runtime_error(why);
}

void set_coordinates(int linear) {
  threadIdx.x = unsigned(linear) % blockDim.x;
  threadIdx.y = (unsigned(linear) / blockDim.x) % blockDim.y;
  threadIdx.z = unsigned(linear) / (blockDim.x * blockDim.y);
}

ctx::fiber fiber_main(ctx::fiber&& scheduler) {
  Emulator& e = emu();
  e.scheduler = std::move(scheduler);
  switched(nullptr, &e.scheduler_stack, &e.scheduler_stack_size);
  try {
    if (!e.abandoning) (*e.body)();
  } catch (const Abandoned&) {
  } catch (const ctx::detail::forced_unwind&) {
    throw;
  } catch (...) {
    e.error = std::current_exception();
  }
  e.fibers[size_t(e.current)].state = State::kDone;
  switching_to(nullptr, e.scheduler_stack, e.scheduler_stack_size);  // this stack is done with
  return std::move(e.scheduler);
}

// Parks the running fiber at barrier `key` (a shuffle's: called from `site`) until the scheduler
// opens it.
void wait_at(int key, const void* site = nullptr) {
  Emulator& e = emu();
  if (e.current < 0) fail("a barrier outside a kernel");
  Fiber& f = e.fibers[size_t(e.current)];
  f.state = State::kWaiting;
  f.key = key;
  if (key != kBlockBarrier) ++f.warp_waits, f.site = site;
  ++e.stats.barriers;
  void* fake = nullptr;
  switching_to(&fake, e.scheduler_stack, e.scheduler_stack_size);
  e.scheduler = std::move(e.scheduler).resume();
  switched(fake, &e.scheduler_stack, &e.scheduler_stack_size);
  if (e.abandoning) throw Abandoned{};
}

// All fibers are waiting or done: open the barriers that everyone concerned has reached.
void open_barriers() {
  Emulator& e = emu();
  int live = 0, at_block = 0;
  for (int i = 0; i < e.count; ++i) {
    const Fiber& f = e.fibers[size_t(i)];
    live += f.state != State::kDone;
    at_block += f.state == State::kWaiting && f.key == kBlockBarrier;
  }
  bool opened = false;
  if (live > 0 && at_block == live) {  // exited threads count as arrived, as on the hardware
    for (int i = 0; i < e.count; ++i)
      if (e.fibers[size_t(i)].state == State::kWaiting)
        e.fibers[size_t(i)].state = State::kRunnable;
    return;
  }
  for (int w = 0; w * 32 < e.count; ++w) {
    const int lo = w * 32, hi = std::min(lo + 32, e.count);
    int waiting = 0, done = 0;
    for (int i = lo; i < hi; ++i) {
      waiting += e.fibers[size_t(i)].state == State::kWaiting && e.fibers[size_t(i)].key == w;
      done += e.fibers[size_t(i)].state == State::kDone;
    }
    if (waiting == 0) continue;
    if (hi - lo < 32)
      fail("a full-mask warp shuffle in warp " + std::to_string(w) + " of " +
           std::to_string(hi - lo) + " threads (block not a multiple of 32)");
    if (done > 0)
      fail("a full-mask warp shuffle in warp " + std::to_string(w) + " after " +
           std::to_string(done) + " of its lanes exited");
    if (waiting == 32) {
      for (int i = lo + 1; i < hi; ++i)
        if (e.fibers[size_t(i)].warp_waits != e.fibers[size_t(lo)].warp_waits ||
            e.fibers[size_t(i)].site != e.fibers[size_t(lo)].site)
          fail("lanes " + std::to_string(lo) + " and " + std::to_string(i) +
               " of a warp at different warp shuffles (divergent shuffles)");
      for (int i = lo; i < hi; ++i) e.fibers[size_t(i)].state = State::kRunnable;
      opened = true;
    }
  }
  if (!opened)
    fail(std::to_string(at_block) + " of " + std::to_string(live) +
         " live threads wait at __syncthreads, the others at warp shuffles: a barrier in "
         "divergent code (deadlock)");
}

// Resumes fiber i until it waits or ends.
void resume(int i) {
  Emulator& e = emu();
  e.current = i;
  set_coordinates(i);
  void* fake = nullptr;
  switching_to(&fake, e.stacks + size_t(i) * kStackBytes + e.page, kStackBytes - e.page);
  e.fibers[size_t(i)].cont = std::move(e.fibers[size_t(i)].cont).resume();
  switched(fake, nullptr, nullptr);
  e.current = -1;
}

// After a fault: every fiber still waiting unwinds (its wait throws Abandoned) and ends; those
// not started yet end without running the kernel.
void abandon_block() {
  Emulator& e = emu();
  e.abandoning = true;
  for (int i = 0; i < e.count; ++i)
    if (e.fibers[size_t(i)].state != State::kDone) resume(i);
  e.abandoning = false;
}

void run_block(const std::function<void()>& body) {
  Emulator& e = emu();
  e.body = &body;
  e.error = nullptr;
  for (int i = 0; i < e.count; ++i) {
    char* bottom = e.stacks + size_t(i) * kStackBytes + e.page;
    ctx::stack_context sc;
    sc.size = kStackBytes - e.page;
    sc.sp = bottom + sc.size;
    Fiber& f = e.fibers[size_t(i)];
    f.cont = ctx::fiber(std::allocator_arg, ctx::preallocated(sc.sp, sc.size, sc), KeepStack{},
                        fiber_main);
    f.state = State::kRunnable;
    f.warp_waits = 0;
  }
  // Between barriers the threads run one after another, in ascending order in one pass and
  // descending in the next, starting the other way in every other block: a race between two
  // threads of a phase (a read of what another writes there) then sees both orders across blocks.
  const uint64_t block =
      blockIdx.x + uint64_t(gridDim.x) * (blockIdx.y + uint64_t(gridDim.y) * blockIdx.z);
  try {
    for (uint64_t pass = block & 1;; ++pass) {
      for (int k = 0; k < e.count; ++k) {
        const int i = pass & 1 ? e.count - 1 - k : k;
        if (e.fibers[size_t(i)].state != State::kRunnable) continue;
        resume(i);
        if (e.error) std::rethrow_exception(e.error);
      }
      bool any_live = false;
      for (int i = 0; i < e.count; ++i) any_live |= e.fibers[size_t(i)].state != State::kDone;
      if (!any_live) return;
      open_barriers();
    }
  } catch (...) {
    abandon_block();
    throw;
  }
}

bool valid(dim3 grid, dim3 block) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  return block.x >= 1 && block.y >= 1 && block.z >= 1 && block.x <= 1024 && block.y <= 1024 &&
         block.z <= 64 && threads <= uint64_t(kMaxThreads) && grid.x >= 1 && grid.y >= 1 &&
         grid.z >= 1 && grid.x <= 0x7fffffffu && grid.y <= 65535 && grid.z <= 65535;
}

template <class T>
T shuffle_xor(unsigned mask, T v, int lane_mask, const void* site) {
  Emulator& e = emu();
  if (e.current < 0) fail("a warp shuffle outside a kernel");
  if (mask != 0xffffffffu) fail("only full-mask warp shuffles are emulated");
  const int me = e.current, partner = (me & ~31) | ((me & 31) ^ (lane_mask & 31));
  std::memcpy(e.slots[me], &v, sizeof(T));
  wait_at(me / 32, site);  // every lane has written
  T out;
  std::memcpy(&out, e.slots[partner], sizeof(T));
  wait_at(me / 32, site);  // every lane has read before the slots are reused
  return out;
}

}  // namespace

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  static std::recursive_mutex one_launch_at_a_time;  // the emulator's state is global
  std::lock_guard<std::recursive_mutex> lock(one_launch_at_a_time);
  Emulator& e = emu();
  if (e.current >= 0) fail("a kernel launch inside a kernel (not emulated)");
  if (!valid(grid, block)) {
    e.sticky = cudaErrorInvalidConfiguration;
    return;
  }
  ++e.stats.launches;
  gridDim = grid, blockDim = block;
  e.count = int(block.x * block.y * block.z);
  try {
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = {x, y, z};
          run_block(body);
        }
  } catch (const std::exception& ex) {
    e.fault = std::string("block (") + std::to_string(blockIdx.x) + "," +
              std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + "): " + ex.what();
    e.sticky = cudaErrorLaunchFailure;
  }
}

const char* last_fault() {
  return emu().fault.c_str();
}

Stats stats() {
  return emu().stats;
}

}  // namespace asc::emu

#if defined(__SANITIZE_ADDRESS__)
// The binaries with the emulator run AddressSanitizer for the kernels' accesses; libtorch's
// allocations still held at exit are not leaks of ours (and the leak checker needs ptrace, which
// containers may deny, also when ctest lists the tests at build time).
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0";
}
#endif

void __syncthreads() {
  asc::emu::wait_at(-1);
}
float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  return asc::emu::shuffle_xor(mask, v, lane_mask, __builtin_return_address(0));
}
double __shfl_xor_sync(unsigned mask, double v, int lane_mask) {
  return asc::emu::shuffle_xor(mask, v, lane_mask, __builtin_return_address(0));
}
int __shfl_xor_sync(unsigned mask, int v, int lane_mask) {
  return asc::emu::shuffle_xor(mask, v, lane_mask, __builtin_return_address(0));
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorLaunchFailure:
      return asc::emu::last_fault();
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  auto& e = asc::emu::emu();
  const cudaError_t r = e.sticky;
  e.sticky = cudaSuccess;
  return r;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}
