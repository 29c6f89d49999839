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

int local_size() {
  // Slurm's per-node task counts read "8(x2)" (8 on each of 2 nodes) or "4,3" (differing): only a
  // count that holds on every node is used.
  const char* slurm = std::getenv("SLURM_STEP_TASKS_PER_NODE");
  const bool slurm_uniform = slurm && std::string(slurm).find(',') == std::string::npos;
  const int64_t n = first_env_number({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, 0);
  if (n > 0 || !slurm_uniform) return int(n);
  return int(first_env_number({"SLURM_STEP_TASKS_PER_NODE"}, 0));
}

std::unique_ptr<Communicator> make_communicator(const c10::Device& device, double timeout_s) {
  if (device.is_cuda()) return make_nccl_communicator(timeout_s);
  return make_mpi_communicator(timeout_s);
}

}  // namespace asc::comm
