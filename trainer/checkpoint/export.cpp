#include "checkpoint/export.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "checkpoint/hf_io.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/sharded.h"
#include "comm/communicator.h"
#include "comm/objects.h"
#include "common/error.h"
#include "common/fs.h"

namespace fs = std::filesystem;

namespace asc {

namespace {

constexpr double kExportTimeout = 6 * 3600.0;  // ranks may arrive far apart after writing

struct Placed {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  size_t file = 0;
  uint64_t offset = 0;  // absolute, in the file
};

struct Layout {
  std::vector<std::string> files;
  std::vector<std::string> headers;  // 8-byte length + JSON, per file
  std::vector<uint64_t> sizes;
  std::vector<Placed> tensors;
  uint64_t total = 0;  // data bytes
};

// The grouping and headers of save_hf_dir (hf_io.cpp): a new shard when the current one would
// pass max_shard_bytes; one file named model.safetensors when everything fits.
Layout plan(const LlamaConfig& c, st::DType dt, uint64_t max_shard_bytes) {
  Layout l;
  std::vector<std::vector<size_t>> groups(1);
  uint64_t in_shard = 0;
  for (const auto& [name, shape] : llama_parameter_shapes(c)) {
    Placed p{name, shape, 1, 0, 0};
    for (int64_t d : shape) p.numel *= d;
    const uint64_t bytes = uint64_t(p.numel) * st::dtype_size(dt);
    if (!groups.back().empty() && in_shard + bytes > max_shard_bytes)
      groups.emplace_back(), in_shard = 0;
    groups.back().push_back(l.tensors.size());
    in_shard += bytes, l.total += bytes;
    l.tensors.push_back(p);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    l.files.push_back(groups.size() == 1 ? std::string("model.safetensors")
                                         : fmt::format("model-{:05d}-of-{:05d}.safetensors", g + 1,
                                                       groups.size()));
    std::vector<st::TensorRef> refs;
    for (size_t i : groups[g]) refs.push_back({l.tensors[i].name, dt, l.tensors[i].shape, nullptr});
    l.headers.push_back(st::framed_header(refs, {{"format", "pt"}}));
    uint64_t off = l.headers.back().size();
    for (size_t i : groups[g]) {
      l.tensors[i].file = g;
      l.tensors[i].offset = off;
      off += uint64_t(l.tensors[i].numel) * st::dtype_size(dt);
    }
    l.sizes.push_back(off);
  }
  return l;
}

void pwrite_all(int fd, const void* data, size_t n, uint64_t off, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  for (size_t done = 0; done < n;) {
    const ssize_t w = ::pwrite(fd, p + done, n - done, off_t(off + done));
    if (w < 0) ASC_FAIL("{}: write failed at byte {}: {}", path, off + done, std::strerror(errno));
    done += size_t(w);
  }
}

}  // namespace

ExportStats export_hf_parallel(const std::string& src, const std::string& out_dir,
                               c10::ScalarType dtype, uint64_t max_shard_bytes,
                               comm::Communicator& comm) {
  ASC_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
            "export: dtype must be fp32, bf16 or fp16");
  const int rank = comm.rank(), W = comm.size();
  const std::string dir = resolve_model_dir(src);
  const LlamaConfig config = read_hf_config(dir);
  const st::DType dt = dtype == at::kFloat      ? st::DType::F32
                       : dtype == at::kBFloat16 ? st::DType::BF16
                                                : st::DType::F16;
  const Layout l = plan(config, dt, max_shard_bytes);
  const fs::path out(out_dir);
  auto partial = [&](size_t f) { return (out / (l.files[f] + ".partial")).string(); };

  // 1. Rank 0: files at their final size, headers in place.
  std::string error;
  if (rank == 0) {
    try {
      fs::create_directories(out);
      for (size_t f = 0; f < l.files.size(); ++f) {
        const int fd = ::open(partial(f).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) ASC_FAIL("{}: cannot create: {}", partial(f), std::strerror(errno));
        const int rc = ::ftruncate(fd, off_t(l.sizes[f]));
        if (rc == 0) pwrite_all(fd, l.headers[f].data(), l.headers[f].size(), 0, partial(f));
        ::close(fd);
        if (rc != 0)
          ASC_FAIL("{}: cannot size to {} bytes: {}", partial(f), l.sizes[f], std::strerror(errno));
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  comm::agree_on_error(&comm, "export", error, kExportTimeout);

  // 2. Every rank: its share of every tensor, read by byte range, converted, written in place.
  ExportStats stats;
  try {
    CheckpointReader reader(dir);
    std::vector<int> fds(l.files.size(), -1);
    struct Closer {  // the files are closed on every path
      std::vector<int>& fds;
      ~Closer() {
        for (int& fd : fds)
          if (fd >= 0) ::close(fd), fd = -1;
      }
    } closer{fds};
    for (size_t f = 0; f < l.files.size(); ++f) {
      fds[f] = ::open(partial(f).c_str(), O_WRONLY | O_CLOEXEC);
      if (fds[f] < 0) ASC_FAIL("{}: cannot open: {}", partial(f), std::strerror(errno));
    }
    const size_t es = st::dtype_size(dt);
    for (const Placed& t : l.tensors) {
      const int64_t c = (t.numel + W - 1) / W;
      const int64_t b = std::min(t.numel, rank * c), e = std::min(t.numel, (rank + 1) * c);
      if (b >= e) continue;
      ASC_CHECK(reader.has(t.name), "{}: no tensor '{}' (config.json expects it)", dir, t.name);
      at::Tensor part = at::empty({e - b}, at::kFloat);
      const uint64_t before = reader.bytes_read();
      reader.read(t.name, "master", b, e, part.data_ptr<float>());
      stats.bytes_read += reader.bytes_read() - before;
      at::Tensor conv = part.to(dtype).contiguous();
      pwrite_all(fds[t.file], conv.data_ptr(), size_t(conv.nbytes()), t.offset + uint64_t(b) * es,
                 partial(t.file));
      stats.bytes_written += uint64_t(conv.nbytes());
    }
    for (size_t f = 0; f < l.files.size(); ++f) {
      if (::fsync(fds[f]) != 0) ASC_FAIL("{}: fsync failed: {}", partial(f), std::strerror(errno));
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  comm::agree_on_error(&comm, "export", error, kExportTimeout);

  // 3. Rank 0: into place, with config, generation config and index.
  if (rank == 0) {
    try {
      write_hf_config_files(out_dir, config, dtype);
      if (l.files.size() == 1) {
        fs::remove(out / "model.safetensors.index.json");
      } else {
        fs::remove(out / "model.safetensors");
        nlohmann::ordered_json index;
        index["metadata"] = {{"total_size", l.total}};
        nlohmann::ordered_json map = nlohmann::ordered_json::object();
        for (const Placed& t : l.tensors) map[t.name] = l.files[t.file];
        index["weight_map"] = map;
        write_file_atomic((out / "model.safetensors.index.json").string(), index.dump(2) + "\n");
      }
      for (size_t f = 0; f < l.files.size(); ++f) fs::rename(partial(f), out / l.files[f]);
      fsync_dir(out_dir);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  comm::agree_on_error(&comm, "export", error, kExportTimeout);
  return stats;
}

}  // namespace asc
