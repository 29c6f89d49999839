// byte_channel.h — bytes from one rank to every rank, for the data sampler's epoch plans
// (data/sampler.h), which travel on their own thread (the prefetcher) while the trainer's
// collectives run on the main one. Header only, no libtorch and no MPI: data/ uses the interface,
// comm/ provides the MPI implementation (mpi_channel.cpp, on its own duplicate of the world
// communicator, with MPI started by comm/ at the thread level it checks).
#pragma once

#include <string>

namespace asc {

class ByteChannel {
 public:
  virtual ~ByteChannel() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void broadcast(std::string* bytes, int root) = 0;  // root's bytes replace everyone's
};

// One process: rank 0 of 1; a broadcast leaves the bytes as they are.
class LocalChannel final : public ByteChannel {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void broadcast(std::string*, int) override {}
};

namespace comm {
// The world of this launch as a ByteChannel (comm/mpi_channel.cpp): starts MPI as the
// communicator does (MPI_THREAD_MULTIPLE, checked) when nothing has yet.
ByteChannel& mpi_world_channel();
}  // namespace comm

}  // namespace asc
