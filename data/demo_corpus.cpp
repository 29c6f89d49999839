#include "data/demo_corpus.h"

#include <cstdint>

#include <numeric>
#include <random>

namespace asc {
namespace {
uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

DemoCorpus::DemoCorpus(int64_t vocab_size, int64_t seq_len, int64_t num_samples, uint64_t seed)
    : vocab_(vocab_size), seq_len_(seq_len), num_samples_(num_samples), seed_(seed) {
  successors_.resize(size_t(vocab_) * 4);
  for (int64_t t = 0; t < vocab_; ++t)
    for (int k = 0; k < 4; ++k)
      successors_[size_t(t) * 4 + k] =
          int32_t(mix(seed_ ^ mix(uint64_t(t) * 4 + k)) % uint64_t(vocab_));
}

void DemoCorpus::sample(int64_t i, int64_t* out) const {
  uint64_t h = mix(seed_ + 0x51ed270b27ull * uint64_t(i + 1));
  int64_t tok = int64_t(h % uint64_t(vocab_));
  for (int64_t t = 0; t < seq_len_; ++t) {
    out[t] = tok;
    h = mix(h);
    tok = successors_[size_t(tok) * 4 + (h & 3)];
  }
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix(seed) ^ mix(uint64_t(epoch) + 17));
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher–Yates with our own draw (portable)
    int64_t j = int64_t(rng() % uint64_t(i + 1));
    std::swap(order[size_t(i)], order[size_t(j)]);
  }
  return order;
}

}  // namespace asc
