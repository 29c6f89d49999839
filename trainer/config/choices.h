// choices.h — the recipe's closed choices as enums (config/recipe.h parses them), for the parts
// that take one without needing the whole recipe (the parallel engine, the planner, the
// schedule). No YAML and no libtorch here.
#pragma once

#include <string>

namespace asc {

// The recipe's closed choices. The YAML spells them as strings; they are parsed and checked once
// (recipe.cpp) and compared as enums everywhere else. name() gives the recipe's spelling back
// (for recipe.yaml, messages, checkpoint manifests).
enum class Stage { kPretrain, kInstruct };               // train.stage
enum class Schedule { kCosine, kLinear, kConstant };     // train.lr_schedule
enum class OptimizerKind { kFused, kReference };         // train.optimizer
enum class DType { kFp32, kBf16 };                       // train.dtype
enum class DeviceKind { kCpu, kCuda };                   // train.device
enum class ParallelMode { kNone, kDdp, kZero2, kFsdp };  // parallel.mode
enum class ResumePolicy { kNever, kAuto };               // checkpoint.resume
const char* name(Stage v);
const char* name(Schedule v);
const char* name(OptimizerKind v);
const char* name(DType v);
const char* name(DeviceKind v);
const char* name(ParallelMode v);
const char* name(ResumePolicy v);
// fmt prints a choice as its spelling (found by argument-dependent lookup).
inline const char* format_as(Stage v) {
  return name(v);
}
inline const char* format_as(Schedule v) {
  return name(v);
}
inline const char* format_as(OptimizerKind v) {
  return name(v);
}
inline const char* format_as(DType v) {
  return name(v);
}
inline const char* format_as(DeviceKind v) {
  return name(v);
}
inline const char* format_as(ParallelMode v) {
  return name(v);
}
inline const char* format_as(ResumePolicy v) {
  return name(v);
}
// The choice spelled `text` ("ddp"), or an error listing the valid spellings.
ParallelMode parse_parallel_mode(const std::string& text);

}  // namespace asc
