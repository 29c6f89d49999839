// unit_function.h — runs one decoder layer as an autograd unit with hooks around its forward and
// backward: the parallel engine gathers sharded parameters there, starts gradient reduction when
// the layer's backward ends, and (with activation checkpointing) keeps only the layer's input,
// recomputing the layer in backward. Without checkpointing the layer's graph is built in forward
// and kept until backward, as a plain call would.
#pragma once

#include <cstdint>
#include <vector>

#include "model/llama.h"

namespace asc {

class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  virtual void before_forward(int64_t /*layer*/) {}
  virtual void after_forward(int64_t /*layer*/) {}
  virtual void before_backward(int64_t /*layer*/) {}
  virtual void after_backward(int64_t /*layer*/) {}
  bool checkpointing = false;
  std::vector<LayerFn> fns;  // the current micro-batch's layer closures
};

// A LayerRunner (model/llama.h) that runs every layer through the unit function with `hooks`.
LayerRunner make_unit_runner(UnitHooks* hooks);

}  // namespace asc
