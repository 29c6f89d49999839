// nccl_stub.cpp — linked instead of nccl_backend.cpp when this build has no CUDA/NCCL.
#include "comm/communicator.h"
#include "common/error.h"

namespace asc::comm {

bool nccl_backend_built() {
  return false;
}

std::unique_ptr<Communicator> make_nccl_communicator(double) {
  ASC_FAIL_HINT("build on a machine with the CUDA toolkit, NCCL and a CUDA-enabled libtorch",
                "CUDA tensors need the NCCL backend, which this build does not have");
}

}  // namespace asc::comm
