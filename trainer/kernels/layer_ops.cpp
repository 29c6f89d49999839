#include "kernels/layer_ops.h"

#include <cstdlib>
#include <cstring>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "common/error.h"
#include "kernels/cuda_device.h"
#include "kernels/layer_kernels.h"

namespace asc::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

int dtype_code(const torch::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? 1 : 0;
}

// Our kernels run on libtorch's current stream of the tensor's device.
void* stream_of(const torch::Tensor& t) {
  return kernels::current_cuda_stream(t.device());
}

// cos/sin as [1 or B, T, 1, E], to broadcast over [B, T, H, E].
torch::Tensor table_BT1E(const torch::Tensor& cs) {
  if (cs.dim() == 2) return cs.unsqueeze(0).unsqueeze(2);
  ASC_CHECK(cs.dim() == 4 && cs.size(1) == 1,
            "rotary table of shape {} (expected [T, E] or "
            "[B, 1, T, E])",
            cs.sizes());
  return cs.squeeze(1).unsqueeze(2);
}

struct RMSNormFn : torch::autograd::Function<RMSNormFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               double eps) {
    const auto xc = x.contiguous(), wc = w.to(x.scalar_type()).contiguous();
    const int64_t dim = x.size(-1), rows = dim ? x.numel() / dim : 0;
    auto y = at::empty_like(xc);
    auto rstd = at::empty({rows}, xc.options().dtype(at::kFloat));
    kernels::rmsnorm_forward_cuda(xc.data_ptr(), wc.data_ptr(), y.data_ptr(),
                                  rstd.data_ptr<float>(), rows, dim, float(eps), dtype_code(x),
                                  stream_of(x));
    ctx->save_for_backward({xc, wc, rstd});
    ctx->saved_data["w_dtype"] = int64_t(w.scalar_type());
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &x = s[0], &w = s[1], &rstd = s[2];
    const auto dy = grads[0].to(x.scalar_type()).contiguous();
    const int64_t dim = x.size(-1), rows = dim ? x.numel() / dim : 0;
    auto dx = at::empty_like(x);
    auto dw = at::empty({dim}, x.options().dtype(at::kFloat));
    auto ws = at::empty({kernels::rmsnorm_backward_workspace(dim)}, dw.options());
    kernels::rmsnorm_backward_cuda(dy.data_ptr(), x.data_ptr(), w.data_ptr(),
                                   rstd.data_ptr<float>(), dx.data_ptr(), dw.data_ptr<float>(),
                                   ws.data_ptr<float>(), rows, dim, dtype_code(x), stream_of(x));
    const auto w_dtype = at::ScalarType(ctx->saved_data["w_dtype"].toInt());
    return {dx, dw.to(w_dtype), torch::Tensor()};
  }
};

struct SwiGLUFn : torch::autograd::Function<SwiGLUFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate,
                               const torch::Tensor& up) {
    const auto g = gate.contiguous(), u = up.contiguous();
    auto y = at::empty_like(g);
    kernels::swiglu_forward_cuda(g.data_ptr(), u.data_ptr(), y.data_ptr(), g.numel(), dtype_code(g),
                                 stream_of(g));
    ctx->save_for_backward({g, u});
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto dy = grads[0].to(s[0].scalar_type()).contiguous();
    auto dg = at::empty_like(s[0]), du = at::empty_like(s[1]);
    kernels::swiglu_backward_cuda(dy.data_ptr(), s[0].data_ptr(), s[1].data_ptr(), dg.data_ptr(),
                                  du.data_ptr(), dy.numel(), dtype_code(dy), stream_of(dy));
    return {dg, du};
  }
};

struct RotaryFn : torch::autograd::Function<RotaryFn> {
  // cos/sin already [1 or B, T, 1, E] contiguous in x's dtype.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    const auto xc = x.contiguous();
    auto y = at::empty_like(xc);
    const int64_t B = x.size(0), T = x.size(1), H = x.size(2), E = x.size(3);
    const int64_t stride = cos.size(0) == 1 ? 0 : T * E;
    kernels::rotary_forward_cuda(xc.data_ptr(), cos.data_ptr(), sin.data_ptr(), y.data_ptr(), B, T,
                                 H, E, stride, dtype_code(x), stream_of(x));
    ctx->save_for_backward({cos, sin});
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto dy = grads[0].to(s[0].scalar_type()).contiguous();
    auto dx = at::empty_like(dy);
    const int64_t B = dy.size(0), T = dy.size(1), H = dy.size(2), E = dy.size(3);
    const int64_t stride = s[0].size(0) == 1 ? 0 : T * E;
    kernels::rotary_backward_cuda(dy.data_ptr(), s[0].data_ptr(), s[1].data_ptr(), dx.data_ptr(), B,
                                  T, H, E, stride, dtype_code(dy), stream_of(dy));
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

// Rows [b, e) of the chunked cross-entropy: the loss sum (fp32, 0-dim) and, when `grad` is set,
// the gradient of the logits scaled by `scale` in the compute dtype.
struct ChunkResult {
  torch::Tensor loss, grad_logits;
};
ChunkResult ce_chunk(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t,
                     bool grad, const torch::Tensor& scale) {
  torch::Tensor logits = at::mm(h, w.t());  // [c, V] in the compute dtype
  if (fused(logits)) {
    auto rows = at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
    kernels::cross_entropy_chunk_cuda(logits.data_ptr(), t.data_ptr<int64_t>(),
                                      rows.data_ptr<float>(), logits.size(0), logits.size(1), -100,
                                      grad ? scale.data_ptr<float>() : nullptr, dtype_code(logits),
                                      stream_of(logits));
    return {rows.sum(), grad ? logits : torch::Tensor()};
  }
  const auto l32 = logits.to(at::kFloat);
  const auto valid = t.ne(-100);
  const auto safe_t = t.clamp_min(0).unsqueeze(1);
  const auto lse = l32.logsumexp(1);
  const auto loss = ((lse - l32.gather(1, safe_t).squeeze(1)) * valid).sum();
  if (!grad) return {loss, {}};
  auto p = (l32 - lse.unsqueeze(1)).exp();
  p.scatter_add_(1, safe_t, -at::ones_like(safe_t, p.options()));
  p.mul_(valid.unsqueeze(1).to(at::kFloat) * scale);
  return {loss, p.to(h.scalar_type())};
}

struct ChunkedCEFn : torch::autograd::Function<ChunkedCEFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& w,
                               const torch::Tensor& t, int64_t chunk) {
    torch::Tensor total = at::zeros({}, h.options().dtype(at::kFloat));
    for (int64_t b = 0; b < h.size(0); b += chunk) {
      const int64_t c = std::min(chunk, h.size(0) - b);
      total += ce_chunk(h.narrow(0, b, c), w, t.narrow(0, b, c), false, {}).loss;
    }
    ctx->save_for_backward({h, w, t});
    ctx->saved_data["chunk"] = chunk;
    return total;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &h = s[0], &w = s[1], &t = s[2];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const torch::Tensor scale = grads[0].to(at::kFloat).contiguous();  // 0-dim, on h's device
    auto dh = at::empty_like(h);
    auto dw = at::zeros(w.sizes(), w.options().dtype(at::kFloat));
    for (int64_t b = 0; b < h.size(0); b += chunk) {
      const int64_t c = std::min(chunk, h.size(0) - b);
      const auto hc = h.narrow(0, b, c);
      const auto g = ce_chunk(hc, w, t.narrow(0, b, c), true, scale).grad_logits;
      dh.narrow(0, b, c).copy_(at::mm(g, w));
      dw.add_(at::mm(g.t(), hc));
    }
    return {dh, dw.to(w.scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
  auto halves = x.chunk(2, -1);
  return x * cos + torch::cat({-halves[1], halves[0]}, -1) * sin;
}

bool fused(const torch::Tensor& t) {
  static const bool enabled = [] {
    const char* v = std::getenv("ASCLEPIUS_FUSED_KERNELS");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return enabled && kernels::kernels_run_on(t.device()) && kernels::layer_kernels_built() &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  if (fused(x)) return RMSNormFn::apply(x, w, eps);
  auto x32 = x.to(torch::kFloat32);
  auto var = x32.pow(2).mean(-1, /*keepdim=*/true);
  return w * (x32 * torch::rsqrt(var + eps)).to(x.scalar_type());
}

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  if (fused(gate) && gate.scalar_type() == up.scalar_type() && gate.sizes() == up.sizes())
    return SwiGLUFn::apply(gate, up);
  return torch::silu(gate) * up;
}

torch::Tensor rotary(const torch::Tensor& x_BTHE, const torch::Tensor& cos,
                     const torch::Tensor& sin) {
  const auto c = table_BT1E(cos), s = table_BT1E(sin);
  ASC_CHECK(x_BTHE.dim() == 4 && c.size(1) == x_BTHE.size(1) && c.size(3) == x_BTHE.size(3) &&
                (c.size(0) == 1 || c.size(0) == x_BTHE.size(0)) && s.sizes() == c.sizes(),
            "rotary: x of shape {} with tables {} and {}", x_BTHE.sizes(), cos.sizes(),
            sin.sizes());
  if (fused(x_BTHE) && x_BTHE.size(-1) % 2 == 0)
    return RotaryFn::apply(x_BTHE, c.to(x_BTHE.scalar_type()).contiguous(),
                           s.to(x_BTHE.scalar_type()).contiguous());
  return apply_rotary(x_BTHE, c, s);
}

torch::Tensor chunked_cross_entropy_sum(const torch::Tensor& hidden_ND,
                                        const torch::Tensor& weight_VD,
                                        const torch::Tensor& targets_N, int64_t chunk_rows) {
  ASC_CHECK(chunk_rows > 0, "chunked cross-entropy: chunk of {} rows", chunk_rows);
  ASC_CHECK(hidden_ND.dim() == 2 && weight_VD.dim() == 2 && targets_N.dim() == 1 &&
                hidden_ND.size(0) == targets_N.size(0) && hidden_ND.size(1) == weight_VD.size(1),
            "chunked cross-entropy: hidden {}, weight {}, targets {}", hidden_ND.sizes(),
            weight_VD.sizes(), targets_N.sizes());
  const auto targets = targets_N.to(at::kLong).contiguous();
  // A target outside the vocabulary would be read out of bounds by the CUDA kernel: refused here.
  const auto bad =
      targets.ne(-100).logical_and(targets.lt(0).logical_or(targets.ge(weight_VD.size(0))));
  if (bad.any().item<bool>()) {
    const int64_t i = bad.nonzero()[0][0].item<int64_t>();
    ASC_FAIL(
        "cross-entropy: target {} at position {} is outside the vocabulary (0..{}) and not "
        "-100",
        targets[i].item<int64_t>(), i, weight_VD.size(0) - 1);
  }
  return ChunkedCEFn::apply(hidden_ND, weight_VD, targets, chunk_rows);
}

}  // namespace asc::ops
