// Run under mpirun by mpi_sampler_test.sh: every rank takes its slice of STEPS global batches;
// rank 0 gathers them and writes one line per step (the global batch in rank order). Also checks,
// on every rank, that a sampler restored from the state after step 3 continues identically.
// With --fail the coordinator's setup throws: every rank must report it and exit 1.
// With --corpus C.h5 TOK.model: rank 0 validates the corpus against the tokenizer; every rank
// opens the file read-only itself and reads only its own 16-token samples; what is gathered and
// written is then each sample's first token and token sum, so the file contents are compared.
#include <mpi.h>

#include <cstdint>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/corpus.h"
#include "data/sampler.h"
#include "data/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  const std::string out = argv[1];
  const int steps = std::atoi(argv[2]), global = std::atoi(argv[3]);
  const bool fail = argc > 4 && std::strcmp(argv[4], "--fail") == 0;
  const bool use_corpus = argc > 6 && std::strcmp(argv[4], "--corpus") == 0;
  auto& ch = asc::comm::mpi_world_channel();
  std::unique_ptr<asc::Corpus> corpus;
  constexpr int64_t kLen = 16;
  auto setup = [&]() -> int64_t {
    if (fail) ASC_FAIL("corpus.h5: token 70000 at position 12 is outside the model's vocabulary");
    if (!use_corpus) return 37;
    asc::Corpus c(argv[5]);  // the coordinator's own validation
    asc::Tokenizer tok(argv[6]);
    if (tok.checksum() != c.info().tokenizer_checksum)
      ASC_FAIL("{} was built with tokenizer {} but {} is {}", argv[5], c.info().tokenizer_checksum,
               argv[6], tok.checksum());
    c.check_token_ids(tok.vocab_size());
    return c.num_windows(kLen);
  };
  try {
    asc::ShardedSampler s(ch, 2024, global, setup);
    if (use_corpus) corpus = std::make_unique<asc::Corpus>(argv[5]);  // every rank, read-only
    std::vector<long long> all;
    asc::DataState at3;
    std::vector<std::vector<int64_t>> after3;
    for (int k = 0; k < steps; ++k) {
      auto local = s.next_local_batch();
      if (k == 2) at3 = s.state();
      if (k >= 3) after3.push_back(local);
      std::vector<long long> mine(local.begin(), local.end());
      if (corpus)  // what this rank read from the file: first token * 2^32 + token sum
        for (auto& id : mine) {
          std::vector<int32_t> t(kLen);
          corpus->read_tokens(id * kLen, kLen, t.data());
          long long sum = 0;
          for (int32_t x : t) sum += x;
          id = (static_cast<long long>(t[0]) << 32) + sum;
        }
      std::vector<long long> gathered(static_cast<size_t>(global));
      MPI_Gather(mine.data(), int(mine.size()), MPI_LONG_LONG, gathered.data(), int(mine.size()),
                 MPI_LONG_LONG, 0, MPI_COMM_WORLD);
      all.insert(all.end(), gathered.begin(), gathered.end());
    }
    asc::ShardedSampler r(ch, 2024, global, setup);
    r.restore(at3);
    for (size_t k = 0; k < after3.size(); ++k)
      if (r.next_local_batch() != after3[k]) {
        std::fprintf(stderr, "rank %d: restored sampler differs at step %zu\n", ch.rank(), k + 3);
        return 1;
      }
    if (ch.rank() == 0) {
      FILE* f = std::fopen(out.c_str(), "w");
      for (int k = 0; k < steps; ++k) {
        for (int j = 0; j < global; ++j)
          std::fprintf(f, "%s%lld", j ? " " : "", all[size_t(k * global + j)]);
        std::fprintf(f, "\n");
      }
      std::fclose(f);
    }
  } catch (const asc::Error& e) {
    std::fprintf(stderr, "rank %d: error: %s\n", ch.rank(), e.what());
    return 1;
  }
  return 0;
}
