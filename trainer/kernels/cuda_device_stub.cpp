// cuda_device_stub.cpp — linked instead of cuda_device.cpp when libtorch has no CUDA.
#include "kernels/cuda_device.h"

namespace asc::kernels {

bool kernels_run_on(const c10::Device&) {
  return false;
}
void* current_cuda_stream(const c10::Device&) {
  return nullptr;
}
double cuda_peak_bf16_tflops(int) {
  return 0.0;
}
int64_t cuda_peak_allocated_bytes(int) {
  return -1;
}

int64_t cuda_total_memory_bytes(int) {
  return -1;
}
int64_t cuda_free_memory_bytes(int) {
  return -1;
}

void cuda_synchronize() {}

}  // namespace asc::kernels
