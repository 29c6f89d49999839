#include "comm/objects.h"

#include <algorithm>
#include <cstring>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "common/error.h"

namespace asc::comm {

std::string broadcast_string(Communicator* comm, const std::string& s, int root) {
  if (!comm) return s;
  at::Tensor len = at::full({1}, int64_t(s.size()), at::kLong);
  comm->broadcast(len, {root})->wait();
  at::Tensor bytes = at::zeros({std::max<int64_t>(1, len.item<int64_t>())}, at::kByte);
  if (comm->rank() == root) std::memcpy(bytes.data_ptr(), s.data(), s.size());
  comm->broadcast(bytes, {root})->wait();
  return std::string(static_cast<const char*>(bytes.data_ptr()), size_t(len.item<int64_t>()));
}

std::vector<std::string> all_gather_strings(Communicator* comm, const std::string& mine,
                                            double timeout_s,
                                            const std::function<int64_t()>& progress) {
  if (!comm) return {mine};
  if (timeout_s > 0) comm->barrier({timeout_s, progress});
  const int W = comm->size();
  at::Tensor len = at::full({1}, int64_t(mine.size()), at::kLong);
  at::Tensor lens = at::empty({W}, at::kLong);
  comm->all_gather(lens, len)->wait();
  const int64_t max = std::max<int64_t>(1, lens.max().item<int64_t>());
  at::Tensor buf = at::zeros({max}, at::kByte);
  std::memcpy(buf.data_ptr(), mine.data(), mine.size());
  at::Tensor all = at::empty({W * max}, at::kByte);
  comm->all_gather(all, buf)->wait();
  std::vector<std::string> out;
  for (int r = 0; r < W; ++r)
    out.emplace_back(static_cast<const char*>(all.data_ptr()) + r * max,
                     size_t(lens[r].item<int64_t>()));
  return out;
}

void agree_on_error(Communicator* comm, const std::string& what, const std::string& error,
                    double timeout_s, const std::function<int64_t()>& progress) {
  const auto errors = all_gather_strings(comm, error, timeout_s, progress);
  std::string all;
  for (size_t r = 0; r < errors.size(); ++r)
    if (!errors[r].empty())
      all += fmt::format("{}rank {}: {}", all.empty() ? "" : "; ", r, errors[r]);
  if (!all.empty()) ASC_FAIL("{} failed: {}", what, all);
}

std::string on_root(Communicator* comm, const std::function<std::string()>& fn, int root) {
  if (!comm) return fn();
  // The answer travels with a one-byte tag: '+' a result, '!' the root's error message.
  std::string answer;
  if (comm->rank() == root) {
    try {
      answer = "+" + fn();
    } catch (const std::exception& e) {
      answer = std::string("!") + e.what();
    }
  }
  answer = broadcast_string(comm, answer, root);
  if (!answer.empty() && answer[0] == '!') throw Error(answer.substr(1));
  return answer.substr(1);
}

}  // namespace asc::comm
