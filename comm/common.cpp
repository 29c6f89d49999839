#include <cstdint>
#include <cstdlib>
#include <string>

#include "comm/communicator.h"
#include "common/error.h"

namespace asc::comm {

int64_t launched_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const char* v = std::getenv(var);
    if (v && *v) {
      try {
        return std::stoll(v);
      } catch (const std::exception&) {
        ASC_FAIL("environment: {}='{}' is not a number", var, v);
      }
    }
  }
  return 1;
}

int local_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* v = std::getenv(var);
    if (v && *v) {
      try {
        return std::stoi(v);
      } catch (const std::exception&) {
        ASC_FAIL("environment: {}='{}' is not a number", var, v);
      }
    }
  }
  return 0;
}

std::unique_ptr<Communicator> make_communicator(const c10::Device& device, double timeout_s) {
  if (device.is_cuda()) return make_nccl_communicator(timeout_s);
  return make_mpi_communicator(timeout_s);
}

}  // namespace asc::comm
