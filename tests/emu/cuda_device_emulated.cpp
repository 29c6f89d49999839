// cuda_device_emulated.cpp — kernels/cuda_device.h for the emulated build: the "device" the
// kernels run on is the CPU (with the kernels compiled for tests/emu/cuda_emu.h), its stream the
// emulator's synchronous one.
#include "emu/cuda_emu.h"
#include "emu/kernels_on_cpu.h"
#include "kernels/cuda_device.h"

namespace asc {
namespace {
bool kernels_on_cpu = true;
}

bool emu::set_kernels_on_cpu(bool on) {
  const bool previous = kernels_on_cpu;
  kernels_on_cpu = on;
  return previous;
}

long long emu::kernel_launches() {
  return stats().launches;
}

namespace kernels {

bool kernels_run_on(const c10::Device& device) {
  return device.is_cpu() && kernels_on_cpu;
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
void cuda_synchronize() {}  // the emulator's stream is synchronous

}  // namespace kernels
}  // namespace asc
