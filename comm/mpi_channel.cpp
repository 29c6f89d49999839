// mpi_channel.cpp — ByteChannel (comm/byte_channel.h) over a duplicate of MPI_COMM_WORLD, for
// the data sampler's plans on the prefetch thread. MPI is started as the communicator starts it
// (mpi_init_once: MPI_THREAD_MULTIPLE, refused clearly when the library offers less).
#include <algorithm>

#include "comm/byte_channel.h"
#include "comm/mpi_util.h"

namespace asc::comm {
namespace {

class MpiChannel final : public ByteChannel {
 public:
  MpiChannel() {
    // This channel runs on the prefetch thread while the trainer's collectives run on the main
    // thread, each on its own duplicate of the world communicator: MPI_THREAD_MULTIPLE.
    mpi_init_once();
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void broadcast(std::string* bytes, int root) override {
    long long n = static_cast<long long>(bytes->size());
    mpi_check(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, comm_), "MPI_Bcast");
    bytes->resize(size_t(n));
    // In pieces of at most 1 GiB: MPI counts are ints.
    for (long long off = 0; off < n; off += (1LL << 30)) {
      const int len = int(std::min<long long>(n - off, 1LL << 30));
      mpi_check(MPI_Bcast(bytes->data() + off, len, MPI_BYTE, root, comm_), "MPI_Bcast");
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

}  // namespace asc::comm
