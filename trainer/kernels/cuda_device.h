// cuda_device.h — what the trainer needs from the CUDA runtime through libtorch: the current
// stream (our kernels launch on it, so they are ordered with libtorch's work and the NCCL
// backend's events), the device's dense bf16 peak (for MFU), its memory peak and a device-wide
// wait. cuda_device.cpp when libtorch has CUDA, cuda_device_stub.cpp otherwise; chosen by linking.
#pragma once

#include <cstdint>

#include <c10/core/Device.h>

namespace asc::kernels {

// Whether this build's CUDA kernels (fused optimizer, layer kernels) take tensors on `device`:
// CUDA devices for cuda_device.cpp, none for the stub (and, in the CPU tests' emulated build,
// tests/emu, the CPU).
bool kernels_run_on(const c10::Device& device);
// The current CUDA stream of `device` as a cudaStream_t (nullptr: the default stream).
void* current_cuda_stream(const c10::Device& device);
// Dense bf16 tensor-core peak of known data-centre GPUs in TFLOP/s (H100/H200 SXM 989, H100 PCIe
// 756, A100 312), 0 when unknown: MFU is then left out unless logging.peak_tflops is set.
double cuda_peak_bf16_tflops(int index);
// The most memory libtorch's caching allocator has had allocated on the device (bytes), or -1.
int64_t cuda_peak_allocated_bytes(int index);
// The device's total memory in bytes (-1 without CUDA).
int64_t cuda_total_memory_bytes(int index);
// What can still be allocated on the device in bytes: the driver's free memory plus what
// libtorch's caching allocator holds without using it (-1 without CUDA).
int64_t cuda_free_memory_bytes(int index);
// Waits for all work queued on the current CUDA device (a no-op without CUDA).
void cuda_synchronize();

}  // namespace asc::kernels
