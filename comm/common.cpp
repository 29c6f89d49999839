#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "comm/communicator.h"
#include "common/error.h"

namespace asc::comm {

namespace {
// The first of `vars` that is set, as a number; `fallback` when none is.
int64_t first_env_number(std::initializer_list<const char*> vars, int64_t fallback) {
  for (const char* var : vars) {
    const char* v = std::getenv(var);
    if (!v || !*v) continue;
    try {
      return std::stoll(v);
    } catch (const std::exception&) {
      ASC_FAIL("environment: {}='{}' is not a number", var, v);
    }
  }
  return fallback;
}
}  // namespace

int64_t launched_world_size() {
  // Per launched job step, not per allocation (SLURM_NTASKS describes the whole sbatch job).
  return first_env_number({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}, 1);
}

int local_rank() {
  return int(
      first_env_number({"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}, 0));
}

std::unique_ptr<Communicator> make_communicator(const c10::Device& device, double timeout_s) {
  if (device.is_cuda()) return make_nccl_communicator(timeout_s);
  return make_mpi_communicator(timeout_s);
}

}  // namespace asc::comm
