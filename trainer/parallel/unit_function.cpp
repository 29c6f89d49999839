#include "parallel/unit_function.h"

#include <torch/autograd.h>

#include "common/error.h"

namespace asc {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

UnitHooks* hooks_of(AutogradContext* ctx) {
  return reinterpret_cast<UnitHooks*>(ctx->saved_data["hooks"].toInt());
}

struct UnitFunction : public torch::autograd::Function<UnitFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, int64_t layer,
                               int64_t hooks_ptr) {
    auto* h = reinterpret_cast<UnitHooks*>(hooks_ptr);
    ctx->saved_data["hooks"] = hooks_ptr;
    ctx->saved_data["layer"] = layer;
    h->before_forward(layer);
    torch::Tensor y;
    if (h->checkpointing) {
      y = h->fns[size_t(layer)](x);  // grad mode is off here: no graph, no saved activations
      ctx->save_for_backward({x});
    } else {
      torch::AutoGradMode grad_on(true);
      torch::Tensor xi = x.detach().requires_grad_(true);
      torch::Tensor yi = h->fns[size_t(layer)](xi);
      ctx->saved_data["xi"] = xi;
      ctx->saved_data["yi"] = yi;
      y = yi.detach();
    }
    h->after_forward(layer);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    UnitHooks* h = hooks_of(ctx);
    const int64_t layer = ctx->saved_data["layer"].toInt();
    h->before_backward(layer);
    torch::Tensor xi, yi;
    {
      torch::AutoGradMode grad_on(true);
      if (h->checkpointing) {
        xi = ctx->get_saved_variables()[0].detach().requires_grad_(true);
        yi = h->fns[size_t(layer)](xi);
      } else {
        xi = ctx->saved_data["xi"].toTensor();
        yi = ctx->saved_data["yi"].toTensor();
      }
      // Accumulates the layer's parameter gradients into their .grad (the engine's buffers).
      torch::autograd::backward({yi}, {grads[0]});
    }
    torch::Tensor gx = xi.grad();
    ctx->saved_data.erase("xi"), ctx->saved_data.erase("yi");
    h->after_backward(layer);
    return {gx, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

LayerRunner make_unit_runner(UnitHooks* hooks) {
  return [hooks](int64_t layer, const torch::Tensor& x, LayerFn fn) {
    if (!torch::GradMode::is_enabled()) {  // a forward without backward (validation)
      hooks->before_forward(layer);
      torch::Tensor y = fn(x);
      hooks->after_forward(layer);
      return y;
    }
    if (hooks->fns.size() <= size_t(layer)) hooks->fns.resize(size_t(layer) + 1);
    hooks->fns[size_t(layer)] = std::move(fn);
    return UnitFunction::apply(x, layer, reinterpret_cast<int64_t>(hooks));
  };
}

}  // namespace asc
