// comm_main.cpp (bench_comm) — bus bandwidth of our collectives (comm/, MPI backend) against the
// raw blocking MPI calls on the same buffers, in the same run, under mpirun. nccl-tests'
// definitions: algbw = bytes / time; busbw = algbw × 2(n-1)/n for all_reduce and × (n-1)/n for
// reduce_scatter (bytes = input) and all_gather (bytes = output). Median of ITERS after warm-up,
// each timed between barriers; ours and raw alternate. Rank 0 prints one JSON line per op/size.
// Usage: mpirun -np N bench_comm [ITERS]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "comm/communicator.h"

using namespace asc::comm;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double timed(const std::function<void()>& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  f();
  MPI_Barrier(MPI_COMM_WORLD);  // the slowest rank's time
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 20;
  auto c = make_mpi_communicator(600);
  const int n = c->size(), r = c->rank();
  for (int64_t bytes : {int64_t(1) << 20, int64_t(16) << 20, int64_t(64) << 20}) {
    const int64_t elems = bytes / 4;
    at::Tensor big = at::rand({elems}), out_small = at::empty({elems / n}),
               in_small = at::rand({elems / n});
    struct Op {
      const char* name;
      std::function<void()> ours, raw;
      double factor;
    };
    std::vector<Op> ops = {
        {"all_reduce", [&] { c->all_reduce(big)->wait(); },
         [&] {
           MPI_Allreduce(MPI_IN_PLACE, big.data_ptr(), int(elems), MPI_FLOAT, MPI_SUM,
                         MPI_COMM_WORLD);
         },
         2.0 * (n - 1) / n},
        {"reduce_scatter", [&] { c->reduce_scatter(out_small, big)->wait(); },
         [&] {
           MPI_Reduce_scatter_block(big.data_ptr(), out_small.data_ptr(), int(elems / n), MPI_FLOAT,
                                    MPI_SUM, MPI_COMM_WORLD);
         },
         double(n - 1) / n},
        {"all_gather", [&] { c->all_gather(big, in_small)->wait(); },
         [&] {
           MPI_Allgather(in_small.data_ptr(), int(elems / n), MPI_FLOAT, big.data_ptr(),
                         int(elems / n), MPI_FLOAT, MPI_COMM_WORLD);
         },
         double(n - 1) / n},
    };
    for (auto& op : ops) {
      std::vector<double> ours, raw;
      for (int i = 0; i < 3; ++i) timed(op.ours), timed(op.raw);  // warm-up
      for (int i = 0; i < iters; ++i) ours.push_back(timed(op.ours)), raw.push_back(timed(op.raw));
      const double to = median(ours), tr = median(raw);
      const double bo = double(bytes) / to / 1e9 * op.factor,
                   br = double(bytes) / tr / 1e9 * op.factor;
      if (r == 0)
        std::printf(
            "{\"op\": \"%s\", \"ranks\": %d, \"bytes\": %lld, \"ours_s\": %.6f, \"mpi_s\": %.6f, "
            "\"ours_busbw_GBps\": %.3f, \"mpi_busbw_GBps\": %.3f, \"ratio\": %.3f}\n",
            op.name, n, (long long)bytes, to, tr, bo, br, bo / br);
    }
  }
  return 0;
}
