// foreign_error.h — a failed call into a foreign library (CUDA, NCCL, MPI) becomes the project's
// error (common/error.h: asc::Error) in one place, so every such failure reads the same:
//   "CUDA 13.0: cudaMemcpyAsync(...) failed: an illegal memory access was encountered
//    (hint: ...) [trainer/kernels/adamw_cuda.cu:34]"
// No fmt and no libtorch here: the CUDA sources (nvcc) include it too.
#pragma once

namespace asc {

// Throws asc::Error naming the library and its version, the call and the library's own message,
// with `hint` and our file:line.
[[noreturn]] void fail_library_call(const char* library, const char* version, const char* call,
                                    const char* message, const char* hint, const char* file,
                                    int line);

// Throws asc::Error with `message` at file:line (a check in code that cannot include error.h).
[[noreturn]] void fail_at(const char* message, const char* file, int line);

// The hints the CUDA and NCCL failures carry.
inline constexpr const char* kCudaHint =
    "CUDA errors are often reported by a later call: rerun with CUDA_LAUNCH_BLOCKING=1 to find the "
    "failing kernel, and under compute-sanitizer for memory errors";
inline constexpr const char* kNcclHint =
    "rerun with NCCL_DEBUG=INFO to see NCCL's reason (network, GPU binding, a peer that died)";

}  // namespace asc
