// kernels_on_cpu.h — the switch of the emulated build (cuda_device_emulated.cpp): whether the
// trainer's CUDA-kernel paths (kernels::kernels_run_on) take CPU tensors, i.e. run the kernels
// under the emulator. On by default; off gives the plain CPU path for references.
#pragma once

namespace asc::emu {

bool set_kernels_on_cpu(bool on);  // returns the previous setting
long long kernel_launches();       // emulated launches so far

}  // namespace asc::emu
