#include "kernels/cuda_device.h"

#include <string>

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

namespace asc::kernels {

bool kernels_run_on(const c10::Device& device) {
  return device.is_cuda();
}

void* current_cuda_stream(const c10::Device& device) {
  return c10::cuda::getCurrentCUDAStream(device.index()).stream();
}

namespace {
std::string cuda_device_name(int index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) return "";
  return p.name;
}
}  // namespace

double cuda_peak_bf16_tflops(int index) {
  const std::string name = cuda_device_name(index);
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989.4;
  if (has("H100")) return has("PCIe") ? 756.0 : 989.4;
  if (has("A100")) return 312.0;
  return 0.0;
}

int64_t cuda_peak_allocated_bytes(int index) {
  using c10::CachingAllocator::StatType;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::DeviceIndex(index));
  return stats.allocated_bytes[size_t(StatType::AGGREGATE)].peak;
}

int64_t cuda_total_memory_bytes(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return -1;
  return int64_t(prop.totalGlobalMem);
}

int64_t cuda_free_memory_bytes(int index) {
  const c10::cuda::CUDAGuard guard{c10::DeviceIndex(index)};
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return -1;
  using c10::CachingAllocator::StatType;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::DeviceIndex(index));
  const auto agg = size_t(StatType::AGGREGATE);
  return int64_t(free) + stats.reserved_bytes[agg].current - stats.allocated_bytes[agg].current;
}

void cuda_synchronize() {
  c10::cuda::device_synchronize();
}

}  // namespace asc::kernels
