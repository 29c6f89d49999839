// engine.h — the model's parallelism: one process (none), ddp, zero2 and fsdp, over the
// communicator (comm/). The engine wraps the model and owns its training buffers; the optimizer
// (optim/flat_adamw.h) only steps the buffers the engine hands it.
//
// The model's parameters are grouped in units: unit 0 holds the embedding, unit 1+i decoder layer
// i, and the last unit the final norm and the LM head; with tied embeddings the final norm and
// the head (the embedding's weight) are part of unit 0 instead. Each unit is one flat
// buffer, padded to a multiple of the world size W for the sharded modes. Rank r owns slice r of
// every unit; its owned slices, laid end to end, are the flat buffers it steps (FlatBuffers:
// fp32 master, moments and summed gradient, the bf16 compute copy).
//   none   one process (world size 1, the self communicator): as ddp, the reductions are the
//          identity.
//   ddp    parameters, gradients and optimizer state replicated; each unit's gradient is
//          all-reduced as soon as its backward ends (last micro-batch), overlapping the rest.
//   zero2  parameters replicated; each unit's gradient reduce-scattered into the owned slice as
//          its backward ends (every micro-batch); fp32 master and moments for the owned slice
//          only; the updated slices all-gathered after the step.
//   fsdp   as zero2, and the parameters too exist only as owned slices: a layer's full
//          parameters are all-gathered (in the compute dtype) just before its forward and again
//          before its backward, the next layer's gather prefetched, and freed right after. The
//          embedding is gathered for its forward only (its backward needs no weights), the
//          head's unit from the last layer's forward to the start of the last layer's backward,
//          where its gradient's reduction starts; tied, unit 0 stays gathered for the pass.
// Gradients are summed (the loss is already divided by the global target count) and reduced in
// fp32; bf16 gradients accumulate over micro-batches in fp32. Activation checkpointing runs
// through the same per-layer hooks in every mode. CPU tensors over MPI (or self), or
// (train.device cuda) device tensors over NCCL (or self). The optimizer step's kernel path runs
// in the CPU tests on the CUDA emulator (emulated.train, tests/emu); the NCCL and device-buffer
// side has not run on a GPU yet (tests/e2e/kernel_train_test.sh runs it there).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "config/choices.h"
#include "model/llama.h"
#include "checkpoint/state.h"
#include "optim/flat_adamw.h"
#include "parallel/unit_function.h"

namespace asc {

struct ModelStateBytes {
  int64_t params = 0;     // persistent compute-dtype parameter storage (beyond the master)
  int64_t grads = 0;      // persistent gradient buffers
  int64_t master = 0;     // fp32 master weights
  int64_t optimizer = 0;  // AdamW moments
  int64_t total() const { return params + grads + master + optimizer; }
};

class ParallelEngine final : private UnitHooks {
 public:
  // `model`: fp32 (the engine casts it to compute_dtype); mode none needs a communicator of one
  // rank. With `initial`, the model's parameters may have no storage (DeferParameterStorage,
  // model/llama.h): each rank asks `initial` for the ranges it owns only (none, ddp:
  // everything), so no rank of a sharded mode ever holds the whole model. Without it, the
  // parameters hold the initial values, the same on every rank.
  ParallelEngine(LlamaForCausalLM& model, comm::Communicator& comm, ParallelMode mode,
                 bool activation_checkpointing, at::ScalarType compute_dtype,
                 const ParamSource& initial = {});
  ~ParallelEngine() override;
  ParallelEngine(const ParallelEngine&) = delete;
  ParallelEngine& operator=(const ParallelEngine&) = delete;

  // Before each micro-batch's forward (fsdp: unit 0 is gathered); `last`: no further
  // micro-batch follows before the step.
  void begin_micro_batch(bool last);
  // After each micro-batch's backward: unit 0's gradient reduced (one process without
  // activation checkpointing: every unit's, its layers having run without hooks), every
  // reduction finished.
  void accumulate_grads(bool last);
  // Around forward passes without backward (validation, under NoGradGuard): gathers what such a
  // forward needs and frees it after. A collective in fsdp: every rank calls them, with the same
  // number of forwards between.
  void begin_forward_only();
  void end_forward_only();
  // The step: `opt` clips and updates the owned buffers; zero2 then gathers everyone's updated
  // slices. Returns the global gradient norm (not finite: nothing changed, on every rank).
  double step(FlatAdamW& opt, double lr, double max_grad_norm);
  void zero_grad();

  // The buffers this rank owns and steps (gradient reductions in flight finished first).
  FlatBuffers& owned();
  // The training state as full tensors in model order on every rank (a collective in the
  // sharded modes), step left 0: tests and tools.
  OptimizerState full_state() const;
  // For the checkpoint. Sharded modes: the owned slices; none, ddp: an even split of each unit
  // by rank. No gather.
  std::vector<StateSlice> state_slices() const;
  // Reads only the owned ranges (zero2 also the full master weights, its parameters being
  // replicated).
  void load_state_from(const CheckpointReader& r);

  ModelStateBytes model_state_bytes() const { return bytes_; }
  int64_t all_gathers() const { return gathers_; }  // parameter all-gathers issued (fsdp)
  ParallelMode mode() const { return mode_; }

 private:
  struct Unit {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // each parameter's offset in the unit
    int64_t numel = 0, padded = 0, shard = 0;
    int64_t own_begin = 0, own_end = 0;  // the owned range, in unit coordinates
    int64_t flat = 0;                    // where the owned range starts in the owned buffers
    at::Tensor full;                     // compute dtype [padded]; the parameters view it
    at::Tensor grad;                     // compute dtype [padded]; the parameters' .grad view it
    comm::WorkPtr gather;                // a prefetch in flight (fsdp)
    bool gathered = true;
    bool acc_fresh = true;  // bf16 none/ddp: the accumulator holds nothing of this step yet
  };
  struct PendingReduce {
    comm::WorkPtr work;
    size_t unit;
    at::Tensor src, shard;  // kept alive until done
  };

  // UnitHooks
  void before_forward(int64_t layer) override;
  void after_forward(int64_t layer) override;
  void before_backward(int64_t layer) override;
  void after_backward(int64_t layer) override;

  bool sharded() const { return mode_ == ParallelMode::kZero2 || mode_ == ParallelMode::kFsdp; }
  at::Tensor owned(const at::Tensor& flat, const Unit& u) const;
  at::Tensor owned_compute(const Unit& u) const;
  void point_params(Unit& u, bool grads);
  void gather_async(size_t u);
  void ensure_gathered(size_t u);
  void release(size_t u);
  void alloc_grad(size_t u);
  at::Tensor autograd_grad(const Unit& u);  // the unit's gradient as autograd left it
  void reduce_grads(size_t u);
  void finish(PendingReduce& p);
  void drain();
  void progress();  // drives in-flight collectives on (MPI progresses only inside MPI calls)

  LlamaForCausalLM model_;
  comm::Communicator& comm_;
  ParallelMode mode_;
  at::ScalarType dtype_;
  NamedTensors params_;  // HF order
  std::vector<Unit> units_;
  FlatBuffers owned_;  // every unit's owned slice, end to end
  std::vector<PendingReduce> pending_;
  bool last_micro_ = true;
  size_t top_ = 0;            // the unit of the final norm and LM head (0: tied, in unit 0)
  bool top_reduced_ = false;  // this micro-batch's reduction of unit top_ has started
  bool layer_hooks_ = true;   // the layers run through the unit function (make_unit_runner)
  int64_t gathers_ = 0;
  ModelStateBytes bytes_;
};

// What a checkpoint saves of a run (checkpoint/state.h): the engine's owned buffers and the
// optimizer's step count.
class TrainingState final : public SavedState {
 public:
  TrainingState(ParallelEngine& engine, FlatAdamW& opt) : engine_(engine), opt_(opt) {}
  int64_t steps() const override { return opt_.steps(); }
  std::vector<StateSlice> state_slices(const NamedTensors&) const override {
    return engine_.state_slices();
  }
  void load_state_from(const CheckpointReader& r, const NamedTensors&) override;

 private:
  ParallelEngine& engine_;
  FlatAdamW& opt_;
};

}  // namespace asc
