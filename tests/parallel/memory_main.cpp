// memory_main MODE DTYPE — under mpirun: builds a small LLaMA, measures what the parallel engine
// allocates (the process heap, mallinfo2, before and after; the model's own fp32 storage it
// releases added back) and compares it with the planner's prediction of per-rank model state.
// Prints "rank R of W MODE DTYPE: measured M predicted P (D%)"; exit 1 beyond 5%.
#include <malloc.h>

#include <cmath>
#include <cstdio>
#include <string>

#include <ATen/ATen.h>

#include "comm/communicator.h"
#include "model/llama.h"
#include "parallel/engine.h"
#include "parallel/planner.h"

using namespace asc;

namespace {
int64_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return int64_t(mi.uordblks + mi.hblkhd);
}
}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "fsdp";
  const bool bf16 = argc > 2 && std::string(argv[2]) == "bf16";
  auto comm = comm::make_mpi_communicator(120);
  LlamaConfig c = llama_preset("tiny");
  c.vocab_size = 4096, c.hidden_size = 256, c.intermediate_size = 704, c.num_hidden_layers = 4;
  c.num_attention_heads = 4, c.num_key_value_heads = 2;
  torch::manual_seed(1);
  LlamaForCausalLM model(c);
  model->init_weights();
  const int64_t model_bytes = c.num_parameters() * 4;
  const int64_t before = heap_in_use();
  int64_t measured = 0, self_report = 0;
  {
    ParallelEngine engine(model, *comm, parse_parallel_mode(mode), true,
                          bf16 ? at::kBFloat16 : at::kFloat);
    measured = heap_in_use() - before + model_bytes;  // the model's fp32 storage was released
    self_report = engine.model_state_bytes().total();
    if (mode == "fsdp") {
      // One micro-batch with activation checkpointing: each layer is gathered exactly twice
      // (forward; backward, whose recomputation reuses that gather), the embedding once (its
      // backward needs no weights) and the final norm with the head once (tied: unit 0 once).
      at::Tensor ids = at::randint(0, c.vocab_size, {2, 16}, at::kLong);
      engine.begin_micro_batch(true);
      causal_lm_loss_sum(model(ids), ids).backward();
      engine.accumulate_grads(true);
      const int64_t want = 2 * c.num_hidden_layers + (c.tie_word_embeddings ? 1 : 2);
      if (engine.all_gathers() != want) {
        std::printf("rank %d: fsdp with checkpointing issued %lld all-gathers, expected %lld\n",
                    comm->rank(), (long long)engine.all_gathers(), (long long)want);
        return 1;
      }
    }
  }
  MemoryPlanInput in;
  in.model = c, in.mode = parse_parallel_mode(mode), in.world_size = comm->size(),
  in.compute_bytes = bf16 ? 2 : 4;
  const int64_t predicted = plan_memory(in).model_state();
  const double diff = 100.0 * double(measured - predicted) / double(predicted);
  std::printf("rank %d of %d %s %s: measured %lld predicted %lld (%+.2f%%) engine %lld\n",
              comm->rank(), comm->size(), mode.c_str(), bf16 ? "bf16" : "fp32", (long long)measured,
              (long long)predicted, diff, (long long)self_report);
  return std::fabs(diff) <= 5.0 && self_report == predicted ? 0 : 1;
}
