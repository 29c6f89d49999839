// mpi_channel.cpp — ByteChannel over MPI_COMM_WORLD (OpenMPI). Linked only where MPI is.
#include <mpi.h>

#include <cstdlib>

#include "common/error.h"
#include "data/sampler.h"

namespace asc {
namespace {

#define MPI_CHECK(call)                                                       \
  do {                                                                        \
    int _rc = (call);                                                         \
    if (_rc != MPI_SUCCESS) {                                                 \
      char _msg[MPI_MAX_ERROR_STRING];                                        \
      int _len = 0;                                                           \
      MPI_Error_string(_rc, _msg, &_len);                                     \
      ASC_FAIL("MPI: {} failed: {}", #call, std::string(_msg, size_t(_len))); \
    }                                                                         \
  } while (0)

class MpiChannel final : public ByteChannel {
 public:
  MpiChannel() {
    int inited = 0;
    MPI_CHECK(MPI_Initialized(&inited));
    if (!inited) {
      // Thread-multiple: this channel runs on the prefetch thread while the trainer's collectives
      // (comm/) run on the main thread, each on its own duplicate of the world communicator.
      int provided = 0;
      MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
      std::atexit([] {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
      });
    }
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void broadcast(std::string* bytes, int root) override {
    long long n = static_cast<long long>(bytes->size());
    MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, comm_));
    bytes->resize(size_t(n));
    // In pieces of at most 1 GiB: MPI counts are ints.
    for (long long off = 0; off < n; off += (1LL << 30)) {
      const int len = int(std::min<long long>(n - off, 1LL << 30));
      MPI_CHECK(MPI_Bcast(bytes->data() + off, len, MPI_BYTE, root, comm_));
    }
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace

ByteChannel& mpi_world_channel() {
  static MpiChannel channel;
  return channel;
}

}  // namespace asc
