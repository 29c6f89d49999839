// comm_main — the communicator under a real mpirun (driven by comm_test.sh).
//   comm_main collectives [cuda]   every collective against a locally computed expectation, and
//                                  (on the host) the object collectives of comm/objects.h
//   comm_main skip R TIMEOUT       rank R never enters the 3rd all_reduce; the others must fail
//   comm_main loop TIMEOUT PIDDIR  all_reduce forever (writes PIDDIR/rank<r>.pid) until killed
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include <ATen/ATen.h>

#include "comm/communicator.h"
#include "comm/objects.h"
#include "common/error.h"
#include "common/stop_signal.h"

using namespace asc::comm;

namespace {
int failures = 0;
void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}
// Rank r's values: r * 1000 + index (exact in fp32 for these sizes).
at::Tensor rank_data(int r, int64_t n, at::ScalarType t, at::Device d) {
  return (at::arange(n, at::kDouble) + r * 1000.0).to(t).to(d);
}
// The object collectives (comm/objects.h), over the host communicator of rank R of W.
void check_object_collectives(Communicator* h, int R, int W) {
  expect(
      broadcast_string(h, R == W - 1 ? "from the last rank" : "?", W - 1) == "from the last rank",
      "broadcast_string");
  expect(broadcast_string(h, R == 0 ? "" : "junk").empty(), "broadcast_string of nothing");
  const auto all = all_gather_strings(h, std::string(size_t(R) * 3, 'x') + std::to_string(R), 5);
  expect(int(all.size()) == W, "all_gather_strings: one per rank");
  for (int r = 0; r < W && r < int(all.size()); ++r)
    expect(all[size_t(r)] == std::string(size_t(r) * 3, 'x') + std::to_string(r),
           "all_gather_strings rank " + std::to_string(r));
  agree_on_error(h, "nothing", "");  // no error anywhere: returns on every rank
  try {
    agree_on_error(h, "the save", R == W - 1 ? "disk full" : "");
    expect(false, "agree_on_error: no throw");
  } catch (const std::exception& e) {
    expect(std::string(e.what()).find("the save failed: rank " + std::to_string(W - 1) +
                                      ": disk full") != std::string::npos &&
               std::string(e.what()).find("rank 0:") == std::string::npos,
           std::string("agree_on_error message: ") + e.what());
  }
  expect(on_root(h, [] { return std::string("root's answer"); }) == "root's answer",
         "on_root result");
  try {
    on_root(h, []() -> std::string { throw asc::Error("root could not read it"); });
    expect(false, "on_root: no throw");
  } catch (const std::exception& e) {
    expect(std::string(e.what()).find("root could not read it") != std::string::npos,
           std::string("on_root error: ") + e.what());
  }
}

// Every collective against its definition, at any world size, on the CPU (MPI) or GPUs (NCCL).
int run_collectives(int argc, char** argv) {
  const bool cuda = argc > 2 && std::string(argv[2]) == "cuda";
  auto c = cuda ? make_nccl_communicator(30) : make_mpi_communicator(30);
  const int R = c->rank(), W = c->size();
  const at::Device dev = cuda ? at::Device(at::kCUDA, local_rank()) : at::Device(at::kCPU);
  for (at::ScalarType ty : {at::kFloat, at::kDouble}) {
    for (int64_t n : {int64_t(1), int64_t(1000), int64_t(65537)}) {
      // all_reduce sum and max, two in flight at once, waited in reverse order.
      at::Tensor a = rank_data(R, n, ty, dev), b = rank_data(R, n, ty, dev);
      auto wa = c->all_reduce(a, {ReduceOp::kSum});
      auto wb = c->all_reduce(b, {ReduceOp::kMax});
      wb->wait(), wa->wait();
      at::Tensor sum = at::zeros({n}, at::kDouble);
      for (int r = 0; r < W; ++r) sum += rank_data(r, n, at::kDouble, at::kCPU);
      expect(at::equal(a.cpu().to(at::kDouble), sum), "all_reduce sum n=" + std::to_string(n));
      expect(at::equal(b.cpu().to(at::kDouble), rank_data(W - 1, n, at::kDouble, at::kCPU)),
             "all_reduce max");
      // reduce_scatter, out of place and in place (output = this rank's slice of the input).
      at::Tensor in = rank_data(R, n * W, ty, dev), out = at::empty({n}, in.options());
      c->reduce_scatter(out, in)->wait();
      at::Tensor full = at::zeros({n * W}, at::kDouble);
      for (int r = 0; r < W; ++r) full += rank_data(r, n * W, at::kDouble, at::kCPU);
      at::Tensor mine = full.slice(0, R * n, (R + 1) * n);
      expect(at::equal(out.cpu().to(at::kDouble), mine), "reduce_scatter");
      at::Tensor in2 = rank_data(R, n * W, ty, dev);
      at::Tensor slice = in2.slice(0, R * n, (R + 1) * n);
      c->reduce_scatter(slice, in2)->wait();
      expect(at::equal(slice.cpu().to(at::kDouble), mine), "reduce_scatter in place");
      // A scratch input (the backend may reduce in it), out of place and as its own slice.
      at::Tensor in3 = rank_data(R, n * W, ty, dev), out3 = at::empty({n}, in.options());
      ReduceScatterOptions scratch;
      scratch.input_is_scratch = true;
      c->reduce_scatter(out3, in3, scratch)->wait();
      expect(at::equal(out3.cpu().to(at::kDouble), mine), "reduce_scatter, scratch input");
      at::Tensor in4 = rank_data(R, n * W, ty, dev);
      at::Tensor slice4 = in4.slice(0, R * n, (R + 1) * n);
      c->reduce_scatter(slice4, in4, scratch)->wait();
      expect(at::equal(slice4.cpu().to(at::kDouble), mine),
             "reduce_scatter, scratch input in place");
      // all_gather, out of place and in place.
      at::Tensor g = at::empty({n * W}, in.options());
      c->all_gather(g, rank_data(R, n, ty, dev))->wait();
      at::Tensor want = at::cat([&] {
        std::vector<at::Tensor> v;
        for (int r = 0; r < W; ++r) v.push_back(rank_data(r, n, at::kDouble, at::kCPU));
        return v;
      }());
      expect(at::equal(g.cpu().to(at::kDouble), want), "all_gather");
      at::Tensor g2 = at::full({n * W}, -1.0, in.options());
      g2.slice(0, R * n, (R + 1) * n).copy_(rank_data(R, n, ty, dev));
      at::Tensor own = g2.slice(0, R * n, (R + 1) * n);
      c->all_gather(g2, own)->wait();
      expect(at::equal(g2.cpu().to(at::kDouble), want), "all_gather in place");
      // broadcast from the last rank.
      at::Tensor bc = rank_data(R, n, ty, dev);
      c->broadcast(bc, {W - 1})->wait();
      expect(at::equal(bc.cpu().to(at::kDouble), rank_data(W - 1, n, at::kDouble, at::kCPU)),
             "broadcast");
    }
  }
  // bf16 moves bit for bit (all_gather); reductions of bf16 are refused by the MPI backend.
  at::Tensor h = at::randn({17}).to(at::kBFloat16).to(dev), hg = at::empty({17 * W}, h.options());
  c->broadcast(h, {0})->wait();
  c->all_gather(hg, h)->wait();
  for (int r = 0; r < W; ++r)
    expect(at::equal(hg.slice(0, r * 17, (r + 1) * 17), h), "bf16 gather");
  if (!cuda) check_object_collectives(c.get(), R, W);
  c->barrier();
  std::printf("rank %d of %d (%s): %lld collectives, %d failures\n", R, W, c->backend().c_str(),
              (long long)c->sequence(), failures);
  return failures == 0 ? 0 : 1;
}

// Rank SKIPPER never enters all_reduce #3: the others time out naming it.
int run_skip(int, char** argv) {
  const int skipper = std::atoi(argv[2]);
  auto c = make_mpi_communicator(std::atof(argv[3]));
  asc::install_stop_signals();
  at::Tensor t = at::ones({8});
  for (int i = 0; i < 5; ++i) {
    if (i == 2 && c->rank() == skipper) {
      std::this_thread::sleep_for(std::chrono::seconds(600));  // never arrives
    }
    c->all_reduce(t)->wait();
  }
  std::printf("rank %d: finished, which must not happen\n", c->rank());
  return 0;
}

int run_progress(int argc, char** argv) {
  // A barrier with a progress probe (BarrierOptions::progress): the last rank arrives after
  // SECONDS, touching FILE every 0.3 s until then (a slow writer); the others' probe reads the
  // file's modification time. With the probe they wait (exit 0); without it ("off") they time
  // out after TIMEOUT seconds, as before.
  const double timeout = std::atof(argv[2]), late = std::atof(argv[3]);
  const std::string file = argv[4];
  const bool probe = argc <= 5 || std::string(argv[5]) != "off";
  auto c = make_mpi_communicator(timeout);
  asc::install_stop_signals();
  const int W = c->size();
  if (c->rank() == W - 1) {
    for (double t = 0; t < late; t += 0.3) {
      std::ofstream(file, std::ios::app) << "x";
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  }
  BarrierOptions o{timeout, {}};
  if (probe)
    o.progress = [&] {
      struct stat st {};
      return ::stat(file.c_str(), &st) == 0 ? int64_t(st.st_mtim.tv_nsec) + st.st_size : 0;
    };
  c->barrier(o);
  std::printf("rank %d: waited for the slow rank\n", c->rank());
  return 0;
}

int run_stall(int, char** argv) {
  // The last rank enters a large all-reduce, then stops (SIGSTOP) inside it: every rank entered
  // it, so rank 0 names the last rank by its missing heartbeats, and the other ranks by what
  // rank 0's heartbeats report.
  auto c = make_mpi_communicator(std::atof(argv[2]));
  at::Tensor t = at::ones({1 << 24});  // 64 MiB: still in transfer when the last rank stops
  if (c->rank() == c->size() - 1) {
    auto w = c->all_reduce(t);
    ::raise(SIGSTOP);
    w->wait();
  } else {
    c->all_reduce(t)->wait();
  }
  std::printf("rank %d: finished, which must not happen\n", c->rank());
  return 0;
}

int run_contend(int, char** argv) {
  // Rank 1 computes (a fixed amount of arithmetic) while rank 0 already waits in a large
  // all-reduce (the communication thread's blocking MPI_Allreduce). Run on one core, the
  // compute time says whether the waiting rank's polling starves the one it waits for.
  auto c = make_mpi_communicator(600);
  at::Tensor t = at::ones({1 << 20});  // 4 MiB: the communication thread's path
  if (c->rank() == 1) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile double x = 0;
    for (int64_t i = 0; i < std::atoll(argv[2]); ++i) x = x + 1e-9 * double(i % 7);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("rank 1: compute took %.2f s\n", s);
  }
  c->all_reduce(t)->wait();
  return 0;
}

// All-reduces until killed (the signal tests stop or kill one rank), each rank's pid in DIR.
int run_loop(int, char** argv) {
  auto c = make_mpi_communicator(std::atof(argv[2]));
  asc::install_stop_signals();
  std::ofstream(std::string(argv[3]) + "/rank" + std::to_string(c->rank()) + ".pid") << getpid();
  at::Tensor t = at::ones({1024});
  for (;;) {
    c->all_reduce(t)->wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}
}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "collectives";
  const std::pair<const char*, int (*)(int, char**)> modes[] = {
      {"collectives", run_collectives}, {"skip", run_skip},
      {"progress", run_progress},       {"stall", run_stall},
      {"contend", run_contend},         {"loop", run_loop}};
  for (const auto& [name, run] : modes)
    if (mode == name) return run(argc, argv);
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
