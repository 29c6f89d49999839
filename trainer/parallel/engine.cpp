#include "parallel/engine.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "checkpoint/hf_io.h"
#include "checkpoint/sharded.h"  // CheckpointReader
#include "common/error.h"
#include "kernels/cuda_device.h"
#include "kernels/fused_adamw.h"

namespace asc {
namespace {

// Calls f(param index, offset in the parameter, offset in the owned range, length) for each part
// of a unit's parameters that lies inside the unit's owned range.
template <class U, class F>
void for_owned(const U& u, const NamedTensors& params, F f) {
  for (size_t j = 0; j < u.params.size(); ++j) {
    const int64_t b = u.offsets[j], e = b + params[u.params[j]].second.numel();
    const int64_t lo = std::max(b, u.own_begin), hi = std::min(e, u.own_end);
    if (lo < hi) f(u.params[j], lo - b, lo - u.own_begin, hi - lo);
  }
}

void free_storage(const at::Tensor& t) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  s->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  s->set_nbytes(0);
}

void alloc_storage(const at::Tensor& t) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  const size_t bytes = size_t(t.numel()) * t.element_size();
  s->set_data_ptr_noswap(s->allocator()->allocate(bytes));
  s->set_nbytes(bytes);
}

}  // namespace

ParallelEngine::ParallelEngine(LlamaForCausalLM& model, comm::Communicator& comm, ParallelMode mode,
                               bool activation_checkpointing, at::ScalarType compute_dtype,
                               const ParamSource& initial)
    : model_(model), comm_(comm), mode_(mode), dtype_(compute_dtype) {
  ASC_CHECK(mode != ParallelMode::kNone || comm.size() == 1,
            "parallel.mode none is one process, but the communicator has {} ranks", comm.size());
  ASC_CHECK(dtype_ == at::kFloat || dtype_ == at::kBFloat16,
            "parallel engine: compute dtype must be fp32 or bf16");
  checkpointing = activation_checkpointing;
  torch::NoGradGuard no_grad;
  params_ = hf_named_tensors(model_);
  const at::Device device = params_[0].second.device();
  ASC_CHECK(device.is_cpu() || comm_.backend() == "nccl" || comm_.backend() == "self",
            "parallel.mode {}: the model is on {} but the communicator is {} (CUDA tensors need "
            "the NCCL backend)",
            name(mode), device.str(), comm_.backend());
  const int64_t L = model_->config().num_hidden_layers;
  // Untied, the final norm and the LM head are a unit of their own after the layers (top_), so
  // that fsdp holds the embedding only for the embedding's forward and the head only from the
  // last layer's forward to the start of the last layer's backward (the head's and the final
  // norm's backward done). Tied, they stay in unit 0 with the embedding, which the head uses.
  const bool tied = !model_->lm_head;
  ASC_CHECK(L >= 1, "parallel engine: a model without decoder layers");  // validate() refuses it
  top_ = tied ? 0 : size_t(L + 1);
  units_.resize(size_t(L + 1) + (tied ? 0 : 1));
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& name = params_[i].first;
    const std::string prefix = "model.layers.";
    size_t u = 0;
    if (name.rfind(prefix, 0) == 0) u = 1 + std::stoul(name.substr(prefix.size()));
    if (!tied && (name == "model.norm.weight" || name.rfind("lm_head.", 0) == 0)) u = top_;
    ASC_CHECK(u < units_.size(), "parameter {} has no unit", name);
    ASC_CHECK(params_[i].second.scalar_type() == at::kFloat,
              "parallel engine: parameter {} is not fp32; build the engine before casting", name);
    units_[u].params.push_back(i);
  }
  const int64_t W = comm_.size(), R = comm_.rank();
  int64_t flat = 0;
  for (Unit& u : units_) {
    for (size_t k : u.params) {
      u.offsets.push_back(u.numel);
      u.numel += params_[k].second.numel();
    }
    u.padded = sharded() ? (u.numel + W - 1) / W * W : u.numel;
    u.shard = sharded() ? u.padded / W : u.numel;
    u.own_begin = sharded() ? R * u.shard : 0;
    u.own_end = u.own_begin + u.shard;
    u.flat = flat;
    flat += u.shard;
  }
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const auto cdt = at::TensorOptions().dtype(dtype_).device(device);
  // The sources fill host memory: on a device, each owned range goes through a host buffer of
  // its own size (one parameter's slice at a time), never the whole shard.
  FlatBuffers& b = owned_;
  b.master = at::zeros({flat}, f32);
  for (const Unit& u : units_) {
    for_owned(u, params_, [&](size_t k, int64_t in_param, int64_t in_own, int64_t len) {
      at::Tensor dst = b.master.narrow(0, u.flat + in_own, len);
      if (initial) {
        at::Tensor host = dst.is_cpu() ? dst : at::empty({len}, at::kFloat);
        initial(params_[k].first, in_param, in_param + len, host.data_ptr<float>());
        if (!host.is_same(dst)) dst.copy_(host);
      } else {
        dst.copy_(params_[k].second.reshape({-1}).narrow(0, in_param, len));
      }
    });
    // The fused step's segments over the owned buffers: parameter parts, then any padding.
    int64_t covered = 0;
    for_owned(u, params_, [&](size_t k, int64_t, int64_t in_own, int64_t len) {
      b.segments.push_back({u.flat + in_own, len, gets_weight_decay(params_[k].first)});
      b.segment_param.push_back(int64_t(k));
      covered += len;
    });
    if (covered < u.shard) {
      b.segments.push_back({u.flat + covered, u.shard - covered, false});
      b.segment_param.push_back(-1);
    }
  }
  b.exp_avg = at::zeros({flat}, f32);
  b.exp_avg_sq = at::zeros({flat}, f32);
  b.grad = at::zeros({flat}, f32);
  if (dtype_ == at::kBFloat16) b.compute = b.master.to(at::kBFloat16);
  if (sharded()) b.sum_over_ranks = [this](at::Tensor& t) { comm_.all_reduce(t)->wait(); };

  const int64_t es = at::elementSize(dtype_);
  bytes_.master = flat * 4, bytes_.optimizer = 2 * flat * 4, bytes_.grads = flat * 4;
  bytes_.params = b.compute.defined() ? flat * es : 0;
  for (size_t i = 0; i < units_.size(); ++i) {
    Unit& u = units_[i];
    if (!sharded()) {
      u.full = owned_compute(u);  // the parameters are the owned (= whole) buffers
      u.grad = dtype_ == at::kFloat ? owned(b.grad, u) : at::zeros({u.numel}, cdt);
      if (dtype_ != at::kFloat) bytes_.grads += u.numel * es;
      point_params(u, true);
    } else if (mode_ == ParallelMode::kZero2) {  // replicated parameters: the owned slices gathered
      u.full = at::zeros({u.padded}, cdt);
      comm_.all_gather(u.full, owned_compute(u))->wait();
      u.grad = at::zeros({u.padded}, cdt);
      bytes_.params += u.padded * es, bytes_.grads += u.padded * es;
      point_params(u, true);
    } else {  // fsdp: full buffers exist only while gathered
      u.full = at::empty({u.padded}, cdt);
      point_params(u, false);
      release(i);
    }
  }
  // The per-layer hooks: fsdp's gathers, the reductions overlapping the backward, activation
  // checkpointing. One process without checkpointing needs none of them, and the plain layer
  // calls are faster (measured: the unit function's inner backward per layer cost 12% of a step
  // of the `small` preset on the CPU); its units are then reduced after the backward.
  layer_hooks_ = mode_ != ParallelMode::kNone || checkpointing;
  if (layer_hooks_) model_->model->set_layer_runner(make_unit_runner(this));
}

ParallelEngine::~ParallelEngine() {
  model_->model->set_layer_runner(nullptr);
}

at::Tensor ParallelEngine::owned(const at::Tensor& flat, const Unit& u) const {
  return flat.narrow(0, u.flat, u.shard);
}

at::Tensor ParallelEngine::owned_compute(const Unit& u) const {
  return owned(owned_.compute.defined() ? owned_.compute : owned_.master, u);
}

void ParallelEngine::point_params(Unit& u, bool grads) {
  for (size_t j = 0; j < u.params.size(); ++j) {
    at::Tensor& p = params_[u.params[j]].second;
    p.set_data(u.full.narrow(0, u.offsets[j], p.numel()).view(p.sizes()));
    if (grads) p.mutable_grad() = u.grad.narrow(0, u.offsets[j], p.numel()).view(p.sizes());
  }
}

void ParallelEngine::gather_async(size_t i) {
  Unit& u = units_[i];
  if (u.gathered || u.gather) return;
  alloc_storage(u.full);
  at::Tensor mine = owned_compute(u);
  u.gather = comm_.all_gather(u.full, mine);
  ++gathers_;
}

void ParallelEngine::ensure_gathered(size_t i) {
  Unit& u = units_[i];
  if (u.gathered) return;
  gather_async(i);
  u.gather->wait();
  u.gather.reset();
  u.gathered = true;
}

void ParallelEngine::release(size_t i) {
  Unit& u = units_[i];
  if (mode_ != ParallelMode::kFsdp) return;
  if (u.gather) u.gather->wait(), u.gather.reset();
  free_storage(u.full);
  u.gathered = false;
}

void ParallelEngine::alloc_grad(size_t i) {
  Unit& u = units_[i];
  if (mode_ != ParallelMode::kFsdp || u.grad.defined()) return;
  u.grad = at::zeros({u.padded}, u.full.options());
  for (size_t j = 0; j < u.params.size(); ++j) {
    at::Tensor& p = params_[u.params[j]].second;
    p.mutable_grad() = u.grad.narrow(0, u.offsets[j], p.numel()).view(p.sizes());
  }
}

void ParallelEngine::reduce_grads(size_t i) {
  torch::NoGradGuard no_grad;
  Unit& u = units_[i];
  if (!sharded()) {
    at::Tensor acc = owned(owned_.grad, u);
    if (dtype_ != at::kFloat) {  // bf16 gradients accumulate in fp32 over micro-batches
      if (u.acc_fresh)
        acc.copy_(u.grad);  // the step's first: no zeroing pass needed
      else
        acc.add_(u.grad);
      u.acc_fresh = false;
      u.grad.zero_();
    }
    if (last_micro_) pending_.push_back({comm_.all_reduce(acc), i, acc, {}});
    progress();
    return;
  }
  // zero2 / fsdp: reduce-scatter this micro-batch's gradient (fp32) into the owned slice. One
  // reduction stays in flight while the next layer's backward runs.
  if (!u.grad.defined()) u.grad = autograd_grad(u);  // fsdp's unit 0 when untied
  at::Tensor src = dtype_ == at::kFloat ? u.grad : u.grad.to(at::kFloat);
  if (dtype_ != at::kFloat && mode_ == ParallelMode::kZero2) u.grad.zero_();
  at::Tensor shard = at::empty({u.shard}, src.options());
  if (!pending_.empty()) {
    finish(pending_.back());
    pending_.pop_back();
  }
  // src is dropped after the reduction (fsdp), zeroed (zero2, fp32) or a copy (bf16): the
  // backend may reduce in it.
  comm::ReduceScatterOptions o;
  o.input_is_scratch = true;
  pending_.push_back({comm_.reduce_scatter(shard, src, o), i, src, shard});
  progress();
  if (mode_ == ParallelMode::kFsdp) {  // the full gradient lives on only in `src` until reduced
    for (size_t k : u.params) params_[k].second.mutable_grad() = at::Tensor();
    u.grad = at::Tensor();
  }
}

at::Tensor ParallelEngine::autograd_grad(const Unit& u) {
  // No buffer was set up for this unit's gradient, so autograd kept its own result instead of
  // adding it into one: the embedding's gradient is used as it is, without a copy (or, padded
  // for the world size, copied and let go at once).
  if (u.params.size() == 1 && u.padded == u.numel) {
    const at::Tensor& g = params_[u.params[0]].second.grad();
    if (g.defined() && g.is_contiguous()) return g.reshape({-1});
  }
  at::Tensor flat = at::zeros({u.padded}, u.full.options());
  for (size_t j = 0; j < u.params.size(); ++j) {
    at::Tensor& g = params_[u.params[j]].second.mutable_grad();
    if (g.defined()) flat.narrow(0, u.offsets[j], g.numel()).copy_(g.reshape({-1}));
    g = at::Tensor();
  }
  return flat;
}

void ParallelEngine::finish(PendingReduce& p) {
  p.work->wait();
  if (!sharded()) return;
  Unit& u = units_[p.unit];
  owned(owned_.grad, u).add_(p.shard);
  if (mode_ == ParallelMode::kZero2 && dtype_ == at::kFloat)
    u.grad.zero_();  // src was u.grad itself
}

void ParallelEngine::progress() {
  for (auto& p : pending_) p.work->test();
  for (Unit& u : units_)
    if (u.gather) u.gather->test();
}

void ParallelEngine::drain() {
  torch::NoGradGuard no_grad;
  for (auto& p : pending_) finish(p);
  pending_.clear();
}

void ParallelEngine::before_forward(int64_t layer) {
  progress();
  if (mode_ != ParallelMode::kFsdp) return;
  // Untied, the embedding has run: its backward needs the indices only, not the weights.
  if (layer == 0 && top_ != 0) release(0);
  ensure_gathered(size_t(layer + 1));
  // Prefetch the next layer, or after the last one the final norm and head (untied).
  if (size_t(layer + 2) < units_.size()) gather_async(size_t(layer + 2));
}

void ParallelEngine::after_forward(int64_t layer) {
  release(size_t(layer + 1));
  if (top_ != 0 && size_t(layer + 2) == top_) ensure_gathered(top_);  // the head runs next
}

void ParallelEngine::before_backward(int64_t layer) {
  progress();
  // The last layer's backward starts once the loss's, the head's and the final norm's are done
  // (autograd accumulates a gradient as soon as it is ready): the head's unit is reduced now.
  if (top_ != 0 && !top_reduced_ && size_t(layer + 2) == top_) {
    reduce_grads(top_);
    release(top_);
    top_reduced_ = true;
  }
  if (mode_ != ParallelMode::kFsdp) return;
  ensure_gathered(size_t(layer + 1));
  alloc_grad(size_t(layer + 1));
  if (layer >= 1) gather_async(size_t(layer));  // backward runs the layers in reverse
}

void ParallelEngine::after_backward(int64_t layer) {
  reduce_grads(size_t(layer + 1));
  release(size_t(layer + 1));
}

void ParallelEngine::begin_micro_batch(bool last) {
  last_micro_ = last;
  top_reduced_ = false;
  if (mode_ != ParallelMode::kFsdp) return;
  ensure_gathered(0);
  if (top_ == 0) {  // tied: unit 0 (embedding, final norm, head) stays gathered for the pass
    alloc_grad(0);
    return;
  }
  // Untied: the head's gradient buffer (its parameters are gathered after the last layer); the
  // embedding's gradient is autograd's own tensor (no buffer: nothing to add it into).
  alloc_grad(top_);
}

void ParallelEngine::begin_forward_only() {
  if (mode_ != ParallelMode::kFsdp) return;
  ensure_gathered(0);  // the layers, and after them the head (untied), gather in their hooks
}

void ParallelEngine::end_forward_only() {
  release(0);
  release(top_);
}

void ParallelEngine::accumulate_grads(bool /*last*/) {
  if (!layer_hooks_)  // the head's unit included (with hooks, the last layer's reduced it)
    for (size_t i = 1; i < units_.size(); ++i) reduce_grads(i);
  reduce_grads(0);
  drain();
  release(0);
  release(top_);
}

FlatBuffers& ParallelEngine::owned() {
  drain();
  return owned_;
}

double ParallelEngine::step(FlatAdamW& opt, double lr, double max_grad_norm) {
  const double norm = opt.clip_and_step(owned(), lr, max_grad_norm);
  if (!std::isfinite(norm)) return norm;  // skipped on every rank: the norm is global
  if (mode_ == ParallelMode::kZero2) {  // everyone's updated slices into everyone's full parameters
    torch::NoGradGuard no_grad;
    std::vector<comm::WorkPtr> works;
    for (Unit& u : units_) {
      at::Tensor mine = u.full.narrow(0, u.own_begin, u.shard);
      mine.copy_(owned_compute(u));
      works.push_back(comm_.all_gather(u.full, mine));
    }
    for (auto& w : works) w->wait();
  }
  return norm;
}

void ParallelEngine::zero_grad() {
  drain();
  torch::NoGradGuard no_grad;
  if (!sharded() && dtype_ != at::kFloat) {
    // bf16 none/ddp: each unit's bf16 gradient was zeroed when added into the fp32 accumulator,
    // which the next step's first micro-batch overwrites.
    for (Unit& u : units_) u.acc_fresh = true;
    return;
  }
  owned_.grad.zero_();
  for (Unit& u : units_)
    if (u.grad.defined() && sharded()) u.grad.zero_();
  // fsdp, untied: the embedding's gradient is autograd's own tensor until reduced; one left by
  // a backward that never reached accumulate_grads must not be added into the next.
  if (mode_ == ParallelMode::kFsdp && top_ != 0)
    for (size_t k : units_[0].params) params_[k].second.mutable_grad() = at::Tensor();
}

OptimizerState ParallelEngine::full_state() const {
  OptimizerState s;
  std::vector<at::Tensor> parts[3];
  for (auto& p : parts) p.resize(params_.size());
  const at::Tensor* bufs[3] = {&owned_.master, &owned_.exp_avg, &owned_.exp_avg_sq};
  for (const Unit& u : units_) {
    for (int b = 0; b < 3; ++b) {
      at::Tensor full = owned(*bufs[b], u);
      if (sharded()) {
        at::Tensor mine = full;
        full = at::empty({u.padded}, mine.options());
        comm_.all_gather(full, mine)->wait();
      }
      for (size_t j = 0; j < u.params.size(); ++j) {
        const at::Tensor& p = params_[u.params[j]].second;
        parts[b][u.params[j]] = full.narrow(0, u.offsets[j], p.numel()).view(p.sizes());
      }
    }
  }
  for (size_t k = 0; k < params_.size(); ++k) {
    s.master.emplace_back(params_[k].first, parts[0][k]);
    s.exp_avg.emplace_back(params_[k].first, parts[1][k]);
    s.exp_avg_sq.emplace_back(params_[k].first, parts[2][k]);
  }
  return s;
}

std::vector<StateSlice> ParallelEngine::state_slices() const {
  std::vector<StateSlice> out;
  const int64_t W = comm_.size(), R = comm_.rank();
  for (const Unit& u : units_) {
    // The range of the unit this rank writes: what it owns, or (ddp, where all hold
    // everything) its even share, so the ranks write in parallel.
    int64_t lo_u = u.own_begin, hi_u = std::min(u.own_end, u.numel);
    if (!sharded()) {
      const int64_t c = (u.numel + W - 1) / W;
      lo_u = std::min(u.numel, R * c), hi_u = std::min(u.numel, (R + 1) * c);
    }
    for (size_t j = 0; j < u.params.size(); ++j) {
      const auto& [name, p] = params_[u.params[j]];
      const int64_t b = u.offsets[j], e = b + p.numel();
      const int64_t lo = std::max(b, lo_u), hi = std::min(e, hi_u);
      if (lo >= hi) continue;
      const int64_t pos = u.flat + (lo - u.own_begin);
      out.push_back({name, std::vector<int64_t>(p.sizes().begin(), p.sizes().end()), lo - b, hi - b,
                     owned_.master.narrow(0, pos, hi - lo), owned_.exp_avg.narrow(0, pos, hi - lo),
                     owned_.exp_avg_sq.narrow(0, pos, hi - lo)});
    }
  }
  return out;
}

void ParallelEngine::load_state_from(const CheckpointReader& r) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params_) {
    r.check_shape(name, p);
  }
  // The reader fills host memory: on a device, each owned range goes through a host buffer of
  // its own size (one parameter's slice at a time, not the whole shard).
  FlatBuffers& b = owned_;
  b.master.zero_(), b.exp_avg.zero_(), b.exp_avg_sq.zero_();  // padding stays zero
  for (Unit& u : units_) {
    for_owned(u, params_, [&](size_t k, int64_t in_param, int64_t in_own, int64_t len) {
      const std::string& name = params_[k].first;
      const int64_t pos = u.flat + in_own;
      for (const auto& [kind, buf] : {std::pair{"master", &b.master},
                                      {"exp_avg", &b.exp_avg},
                                      {"exp_avg_sq", &b.exp_avg_sq}}) {
        at::Tensor dst = buf->narrow(0, pos, len);
        at::Tensor host = dst.is_cpu() ? dst : at::empty({len}, at::kFloat);
        r.read(name, kind, in_param, in_param + len, host.data_ptr<float>());
        if (!host.is_same(dst)) dst.copy_(host);
      }
    });
  }
  if (b.compute.defined()) b.compute.copy_(b.master);
  if (mode_ == ParallelMode::kZero2)  // replicated parameters: every rank needs all of them
    for (Unit& u : units_)
      for (size_t j = 0; j < u.params.size(); ++j) {
        const std::string& name = params_[u.params[j]].first;
        u.full.narrow(0, u.offsets[j], params_[u.params[j]].second.numel())
            .copy_(r.read_full(name, "master").reshape({-1}));
      }
  zero_grad();
}

void TrainingState::load_state_from(const CheckpointReader& r, const NamedTensors&) {
  engine_.load_state_from(r);
  opt_.set_steps(r.optimizer_step());
}

}  // namespace asc
