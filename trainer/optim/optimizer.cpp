#include "optim/optimizer.h"

#include <algorithm>

#include "common/error.h"

namespace asc {

bool gets_weight_decay(const std::string& param_name) {
  return param_name.find("norm") == std::string::npos &&
         param_name.find("bias") == std::string::npos;
}

double clip_factor(double grad_norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  return std::min(1.0, max_norm / (grad_norm + 1e-6));
}

void check_state_matches(const OptimizerState& s, const NamedTensors& params) {
  for (const NamedTensors* part : {&s.master, &s.exp_avg, &s.exp_avg_sq})
    ASC_CHECK(part->size() == params.size(),
              "optimizer state holds {} tensors per kind; the model has {} parameters",
              part->size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    for (const NamedTensors* part : {&s.master, &s.exp_avg, &s.exp_avg_sq}) {
      const auto& [sname, t] = (*part)[i];
      ASC_CHECK(sname == name, "optimizer state: tensor {} is '{}', the model's is '{}'", i, sname,
                name);
      ASC_CHECK(t.sizes() == p.sizes(), "optimizer state: '{}' has shape {}, the parameter {}",
                name, fmt::format("{}", fmt::join(t.sizes(), "x")),
                fmt::format("{}", fmt::join(p.sizes(), "x")));
    }
  }
}

std::vector<StateSlice> Optimizer::state_slices(const NamedTensors& params) const {
  const OptimizerState s = state();
  check_state_matches(s, params);
  std::vector<StateSlice> out;
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i].second;
    out.push_back({params[i].first, std::vector<int64_t>(p.sizes().begin(), p.sizes().end()), 0,
                   p.numel(), s.master[i].second.reshape({-1}), s.exp_avg[i].second.reshape({-1}),
                   s.exp_avg_sq[i].second.reshape({-1})});
  }
  return out;
}

void Optimizer::load_state_from(const CheckpointReader& r, const NamedTensors& params) {
  OptimizerState s;
  s.step = r.optimizer_step();
  for (const auto& [name, p] : params) {
    r.check_shape(name, p);
    s.master.emplace_back(name, r.read_full(name, "master"));
    s.exp_avg.emplace_back(name, r.read_full(name, "exp_avg"));
    s.exp_avg_sq.emplace_back(name, r.read_full(name, "exp_avg_sq"));
  }
  load_state(s);
}

}  // namespace asc
