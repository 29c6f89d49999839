// layer_ops.h — the memory-bound parts of the LLaMA layer as autograd operations: RMSNorm,
// SwiGLU, the rotary embedding, and the LM head's cross-entropy in chunks.
//
// On CUDA tensors (fp32 or bf16) of a build with the CUDA kernels (kernels/layer_cuda.cu), each
// runs as a custom autograd function over the fused kernels (forward and backward); everywhere
// else (CPU, other dtypes, ASCLEPIUS_FUSED_KERNELS=0) as the libtorch reference, which is the
// Hugging Face arithmetic the model has always used and what the CUDA tests compare against.
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace asc::ops {

// Whether `t` takes the fused CUDA path.
bool fused(const torch::Tensor& t);

// Hugging Face's RMSNorm: w * cast(x * rsqrt(mean(x^2) + eps)), statistics in fp32.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);
// silu(gate) * up.
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);
// x [B, T, H, E] * cos + rotate_half(x) * sin, with cos/sin [T, E] (one table) or [B, 1, T, E]
// (per-row positions, packing).
torch::Tensor rotary(const torch::Tensor& x_BTHE, const torch::Tensor& cos,
                     const torch::Tensor& sin);

// x * cos + rotate_half(x) * sin for any layout cos/sin broadcast to (the libtorch reference
// of rotary, also used by the cached decoder on [B, H, T, E]).
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin);

// The sum over rows with target != -100 of -log softmax(hidden W^T)[target], computed
// `chunk_rows` rows at a time, forward and backward (which recomputes each chunk's logits): at
// most [chunk_rows, V] logits exist at once instead of the full [N, V] fp32 logits and their
// gradient. hidden_ND and weight_VD in the compute dtype; targets_N int64. Logits are rounded to
// the compute dtype as a full LM-head matmul would round them; the softmax is in fp32.
torch::Tensor chunked_cross_entropy_sum(const torch::Tensor& hidden_ND,
                                        const torch::Tensor& weight_VD,
                                        const torch::Tensor& targets_N, int64_t chunk_rows);

}  // namespace asc::ops
