// layer_kernels.h — fused CUDA kernels for the memory-bound parts of a LLaMA layer, forward and
// backward, on raw device pointers (kernels/layer_cuda.cu; no libtorch there). The autograd
// functions that call them, and the CPU/libtorch reference they must match, are in
// kernels/layer_ops.h.
//
// dtype: 0 = fp32, 1 = bf16 for activations and weights; statistics and weight gradients are
// fp32. All tensors contiguous, row-major. stream: a cudaStream_t, or null for the default one.
// Built only with CUDA; otherwise every launcher throws "built without CUDA" and
// layer_kernels_built() is false.
#pragma once

#include <cstdint>

namespace asc::kernels {

bool layer_kernels_built();

// RMSNorm as Hugging Face computes it: y = w * cast(x * rstd), rstd = 1/sqrt(mean(x^2) + eps)
// in fp32, per row of `dim` elements. rstd_out: [rows] fp32 (kept for the backward).
void rmsnorm_forward_cuda(const void* x, const void* w, void* y, float* rstd_out, int64_t rows,
                          int64_t dim, float eps, int dtype, void* stream);
// dx = rstd * (dy*w - n * mean(dy*w*n)) with n = x * rstd; dw_f32 = sum over rows of dy * n,
// reduced in a fixed order (deterministic). workspace: rmsnorm_backward_workspace(dim) floats.
int64_t rmsnorm_backward_workspace(int64_t dim);
void rmsnorm_backward_cuda(const void* dy, const void* x, const void* w, const float* rstd,
                           void* dx, float* dw_f32, float* workspace, int64_t rows, int64_t dim,
                           int dtype, void* stream);

// SwiGLU: y = silu(gate) * up, elementwise over n elements; the backward gives d_gate, d_up.
void swiglu_forward_cuda(const void* gate, const void* up, void* y, int64_t n, int dtype,
                         void* stream);
void swiglu_backward_cuda(const void* dy, const void* gate, const void* up, void* d_gate,
                          void* d_up, int64_t n, int dtype, void* stream);

// Rotary embedding (half-split / rotate_half convention) applied in place of a copy:
// x [B, T, H, E] contiguous; cos/sin rows of E values (same dtype as x), the row for (b, t) at
// b * cs_batch_stride + t * E (cs_batch_stride 0: one table for the whole batch).
// y = x * cos + rotate_half(x) * sin. backward = the same with sin negated (and rotated).
void rotary_forward_cuda(const void* x, const void* cos, const void* sin, void* y, int64_t B,
                         int64_t T, int64_t H, int64_t E, int64_t cs_batch_stride, int dtype,
                         void* stream);
void rotary_backward_cuda(const void* dy, const void* cos, const void* sin, void* dx, int64_t B,
                          int64_t T, int64_t H, int64_t E, int64_t cs_batch_stride, int dtype,
                          void* stream);

// Cross-entropy over one chunk of logits [rows, V] (dtype): per row, loss = logsumexp - logit of
// the target (0 where target == ignore_index), written to loss_out [rows] fp32; and, for the
// backward (grad_scale not null: one fp32 value on the device, read there, so the host never
// waits for it), the logits overwritten in place by *grad_scale * (softmax - onehot(target))
// (zero rows for ignored targets), so the chunk's logits are the only [rows, V] buffer ever held.
void cross_entropy_chunk_cuda(void* logits, const int64_t* targets, float* loss_out, int64_t rows,
                              int64_t V, int64_t ignore_index, const float* grad_scale, int dtype,
                              void* stream);

}  // namespace asc::kernels
