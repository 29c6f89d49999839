// The CPU emulator of tests/emu/cuda_emu.h itself: every thread of every block runs once with its
// own coordinates; __syncthreads and warp shuffles are barriers (shared-memory tree reductions
// and butterfly sums come out exact); bad launch shapes are refused as CUDA refuses them; a
// barrier that cannot complete, and a shuffle with missing lanes, fail the launch with a reason;
// an access out of bounds is reported by AddressSanitizer and a misaligned vector load by UBSan
// (this file and the kernels are built with both in test_kernels_emulated).
#include <gtest/gtest.h>

#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu/cuda_emu.h"

namespace {

using asc::emu::launcher;

__global__ void write_coordinates(int* out) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  out[b * blockDim.x * blockDim.y * blockDim.z + t] += int(b * 100000 + t);
}

// Shared-memory tree sum of 256 values per block, as the norm kernel does it.
__global__ void tree_sum(const float* in, float* out) {
  __shared__ float red[256];
  red[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = red[0];
}

// Butterfly sum within each warp: every lane ends with its warp's total.
__global__ void warp_sum(const int* in, int* out) {
  int v = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

// Threads past `live` leave before the barrier (allowed: exited threads count as arrived).
__global__ void early_exit(int live, int* out) {
  if (int(threadIdx.x) >= live) return;
  out[threadIdx.x] = 1;
  __syncthreads();
  const int next = out[(threadIdx.x + 1) % unsigned(live)];
  __syncthreads();
  out[threadIdx.x] += next;
}

// Half of warp 0 shuffles while everyone else waits at __syncthreads: neither can complete.
__global__ void divergent_barrier() {
  if (threadIdx.x < 16)
    (void)__shfl_xor_sync(0xffffffffu, 1.f, 1);
  else
    __syncthreads();
}

// Lanes 0-15 run a shuffle that lanes 16-31 skip; the next shuffle then meets lanes 0-15 at the
// skipped one and lanes 16-31 at the following one (the same count of shuffles each).
__global__ void divergent_shuffles() {
  (void)__shfl_xor_sync(0xffffffffu, 1.f, 1);
  if (threadIdx.x < 16) (void)__shfl_xor_sync(0xffffffffu, 2.f, 1);
  (void)__shfl_xor_sync(0xffffffffu, 3.f, 1);
}

__global__ void shuffle_after_exit() {
  if (threadIdx.x == 5) return;
  (void)__shfl_xor_sync(0xffffffffu, 1.f, 1);
}

// Races inside one phase: each thread reads its neighbour's slot, which the neighbour overwrites
// with -1 in the same phase, after its own overwrite (read after write) or before it (write after
// read). Without a barrier between the two, the result depends on the order the threads run:
// ascending, at most one read of a block differs from the barrier's result; descending, all but
// one do. With the barrier (race_free), every read gives -1 (read after write) or t + 1.
__global__ void racy(int* x, int* out, bool read_after_write, bool race_free) {
  const unsigned t = threadIdx.x, n = blockDim.x, b = blockIdx.x;
  int* xb = x + b * n;
  xb[t] = int(t);
  __syncthreads();
  int v;
  if (read_after_write) {
    xb[t] = -1;
    if (race_free) __syncthreads();
    v = xb[(t + 1) % n];
  } else {
    v = xb[(t + 1) % n];
    if (race_free) __syncthreads();
    xb[t] = -1;
  }
  out[b * n + t] = v;
}

__global__ void read_one_past(const float* in, float* out) {
  out[threadIdx.x] = in[threadIdx.x + 1];
}

// Reads 16 bytes at `in + offset` as one float4 (16-byte aligned only for offsets multiple of 4).
__global__ void vector_load(const float* in, int offset, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(in + offset);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

__global__ void throws() {
  if (threadIdx.x == 7 && blockIdx.x == 2) throw std::runtime_error("thread 7 gives up");
}

}  // namespace

TEST(CudaEmulator, EveryThreadOfEveryBlockRunsOnceWithItsCoordinates) {
  const dim3 grid(3, 2, 2), block(8, 4, 2);
  const int n = 12 * 64;
  std::vector<int> out(n, 0);
  launcher(grid, block, nullptr, write_coordinates)(out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < 12; ++b)
    for (int t = 0; t < 64; ++t) EXPECT_EQ(out[b * 64 + t], b * 100000 + t);
}

TEST(CudaEmulator, SyncthreadsOrdersSharedMemory) {
  std::vector<float> in(3 * 256), out(3);
  std::iota(in.begin(), in.end(), 0.f);
  launcher(3, 256, nullptr, tree_sum)(in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < 3; ++b) {
    const float want = float((256 * b + 256 * b + 255) * 256 / 2);
    EXPECT_EQ(out[b], want) << "block " << b;
  }
}

TEST(CudaEmulator, WarpShufflesExchangeBetweenLanes) {
  std::vector<int> in(96), out(96);
  std::iota(in.begin(), in.end(), 1);
  const auto before = asc::emu::stats().barriers;
  launcher(1, 96, nullptr, warp_sum)(in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int i = 0; i < 96; ++i) {
    const int w = i / 32, first = 32 * w + 1, last = 32 * w + 32;
    EXPECT_EQ(out[i], (first + last) * 32 / 2) << "lane " << i;
  }
  EXPECT_EQ(asc::emu::stats().barriers - before, 96 * 5 * 2);  // 5 rounds, 2 waits each
}

TEST(CudaEmulator, ExitedThreadsCountAsArrivedAtSyncthreads) {
  std::vector<int> out(64, 0);
  launcher(1, 64, nullptr, early_exit)(40, out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[i], i < 40 ? 2 : 0) << i;
}

// The emulator runs the threads of a phase in both orders (in different blocks), so a race in
// either direction makes most of some block wrong; the race-free version is right everywhere.
TEST(CudaEmulator, RacesInsideAPhaseShowUpInSomeBlock) {
  for (bool raw : {false, true}) {
    for (bool race_free : {false, true}) {
      const char* what = raw ? "read after write" : "write after read";
      std::vector<int> x(4 * 64), out(4 * 64);
      launcher(4, 64, nullptr, racy)(x.data(), out.data(), raw, race_free);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      int mostly_wrong = 0, mostly_right = 0;
      for (int b = 0; b < 4; ++b) {
        int wrong = 0;
        for (int t = 0; t < 64; ++t) wrong += out[b * 64 + t] != (raw ? -1 : (t + 1) % 64);
        (wrong > 32 ? mostly_wrong : mostly_right) += 1;
        if (race_free) {
          EXPECT_EQ(wrong, 0) << what << ", block " << b;
        }
      }
      if (!race_free) {
        EXPECT_GT(mostly_wrong, 0) << what << ": the race is not exposed";
        EXPECT_GT(mostly_right, 0) << what << ": only one order was run";
      }
    }
  }
}

TEST(CudaEmulator, RefusesLaunchShapesTheHardwareRefuses) {
  int ran = 0;
  auto body = [&] { ++ran; };
  for (auto [grid, block] : {std::pair<dim3, dim3>{dim3(1), dim3(1025)},
                             {dim3(0), dim3(32)},
                             {dim3(1), dim3(0)},
                             {dim3(1, 65536), dim3(32)},
                             {dim3(1), dim3(32, 1, 65)},
                             {dim3(1), dim3(64, 32)}}) {
    asc::emu::run_grid(grid, block, body);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration)
        << grid.x << "x" << grid.y << " blocks of " << block.x << "x" << block.y << "x" << block.z;
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the error is cleared once read";
  }
  EXPECT_EQ(ran, 0);
  asc::emu::run_grid(dim3(2), dim3(1024), body);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(ran, 2048);
}

TEST(CudaEmulator, BarrierFaultsFailTheLaunchWithAReason) {
  launcher(1, 64, nullptr, divergent_barrier)();
  ASSERT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(std::string(cudaGetErrorString(cudaErrorLaunchFailure)).find("divergent"),
            std::string::npos)
      << asc::emu::last_fault();
  launcher(1, 64, nullptr, divergent_shuffles)();
  ASSERT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(std::string(asc::emu::last_fault()).find("different warp shuffles"), std::string::npos)
      << asc::emu::last_fault();
  launcher(1, 32, nullptr, shuffle_after_exit)();
  ASSERT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(std::string(asc::emu::last_fault()).find("lanes exited"), std::string::npos)
      << asc::emu::last_fault();
  launcher(1, 48, nullptr, warp_sum)(std::vector<int>(48).data(), std::vector<int>(48).data());
  ASSERT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(std::string(asc::emu::last_fault()).find("not a multiple of 32"), std::string::npos)
      << asc::emu::last_fault();
  launcher(4, 32, nullptr, throws)();
  ASSERT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(std::string(asc::emu::last_fault()).find("block (2,0,0): thread 7 gives up"),
            std::string::npos)
      << asc::emu::last_fault();
  // And the emulator is usable again afterwards.
  std::vector<int> out(64, 0);
  launcher(1, 64, nullptr, early_exit)(64, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out[63], 2);
}

#if defined(__SANITIZE_ADDRESS__)
TEST(CudaEmulator, OutOfBoundsAccessesAreReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<float> in(32, 1.f), out(32);
  launcher(1, 31, nullptr, read_one_past)(in.data(), out.data());  // in bounds
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_DEATH(launcher(1, 32, nullptr, read_one_past)(in.data(), out.data()),
               "heap-buffer-overflow.*\\n.*read_one_past");
}

TEST(CudaEmulator, MisalignedVectorLoadsAreReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  alignas(16) float in[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float out[1];
  launcher(1, 1, nullptr, vector_load)(in, 4, out);  // aligned
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out[0], 26.f);
  EXPECT_DEATH(launcher(1, 1, nullptr, vector_load)(in, 1, out), "misaligned address");
}
#endif
