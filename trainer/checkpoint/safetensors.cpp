#include "checkpoint/safetensors.h"

#include <cstdint>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"

namespace asc::st {
namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit

struct DTypeEntry {
  DType d;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},           {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::U16, "U16", 2},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4},         {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},   {DType::F64, "F64", 8},         {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

size_t dtype_size(DType d) {
  for (const auto& e : kDTypes)
    if (e.d == d) return e.size;
  return 0;
}
const char* dtype_name(DType d) {
  for (const auto& e : kDTypes)
    if (e.d == d) return e.name;
  return "?";
}
bool dtype_from_name(const std::string& s, DType* out) {
  for (const auto& e : kDTypes)
    if (s == e.name) return *out = e.d, true;
  return false;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t s : shape) n *= uint64_t(s);
  return n;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ASC_FAIL("{}: cannot open safetensors file: {}", path, std::strerror(errno));
  struct stat sb {};
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    ::close(fd);
    ASC_FAIL("{}: cannot stat: {}", path, std::strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    ::close(fd);
    ASC_FAIL("{}: not a regular file", path);
  }
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  size_t size = size_t(sb.st_size);
  const uint8_t* base = nullptr;
  if (size > 0) {
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    if (m == MAP_FAILED) ASC_FAIL("{}: cannot mmap: {}", path, std::strerror(e));
    f->map_ = m, f->map_size_ = size;
    base = static_cast<const uint8_t*>(m);
  } else {
    ::close(fd);
  }
  f->validate(base, size);
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size,
                                                        const std::string& name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->validate(data, size);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::validate(const uint8_t* base, size_t size) {
  const std::string& p = path_;
  if (size < 8)
    ASC_FAIL("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", p,
             size);
  const uint64_t n = read_le64(base);
  if (n > kMaxHeader) ASC_FAIL("{}: header length {} exceeds the 100000000-byte limit", p, n);
  if (n > size - 8)
    ASC_FAIL("{}: header length {} runs past the end of the file ({} bytes)", p, n, size);
  const char* hdr = reinterpret_cast<const char*>(base + 8);
  if (n == 0 || hdr[0] != '{') ASC_FAIL("{}: header does not start with '{{'", p);

  // Parse, rejecting duplicate top-level names (nlohmann keeps the last one silently).
  std::set<std::string> names;
  std::string duplicate;
  nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev,
                                             nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!names.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(hdr, hdr + n, cb);
  } catch (const nlohmann::json::exception& e) {
    ASC_FAIL("{}: header is not valid JSON: {}", p, e.what());
  }
  if (!duplicate.empty()) ASC_FAIL("{}: duplicate tensor name '{}' in header", p, duplicate);
  if (!j.is_object()) ASC_FAIL("{}: header is not a JSON object", p);

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) ASC_FAIL("{}: __metadata__ is not an object of strings", p);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          ASC_FAIL("{}: __metadata__ value of '{}' is not a string", p, m.key());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) ASC_FAIL("{}: tensor '{}': entry is not an object", p, name);
    TensorInfo t;
    t.name = name;
    if (!v.contains("dtype") || !v["dtype"].is_string())
      ASC_FAIL("{}: tensor '{}': missing or non-string dtype", p, name);
    if (!dtype_from_name(v["dtype"].get<std::string>(), &t.dtype))
      ASC_FAIL("{}: tensor '{}': unknown dtype '{}'", p, name, v["dtype"].get<std::string>());
    if (!v.contains("shape") || !v["shape"].is_array())
      ASC_FAIL("{}: tensor '{}': missing or non-array shape", p, name);
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        ASC_FAIL("{}: tensor '{}': shape entries must be non-negative integers", p, name);
      uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(INT64_MAX)) ASC_FAIL("{}: tensor '{}': dimension overflows", p, name);
      t.shape.push_back(int64_t(dim));
    }
    const auto& off = v.contains("data_offsets") ? v["data_offsets"] : nlohmann::json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      ASC_FAIL("{}: tensor '{}': data_offsets must be [begin, end] non-negative integers", p, name);
    t.begin = off[0].get<uint64_t>(), t.end = off[1].get<uint64_t>();
    tensors_.push_back(std::move(t));
  }

  // Offsets: contiguous from 0, in order, each span = numel × dtype size, covering the data.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& t : tensors_) {
    if (t.begin != cursor || t.end < t.begin)
      ASC_FAIL(
          "{}: tensor '{}': data_offsets [{}, {}] are not contiguous (expected to start at {})", p,
          t.name, t.begin, t.end, cursor);
    uint64_t elems = 1;
    for (int64_t d : t.shape) {
      if (d != 0 && elems > UINT64_MAX / uint64_t(d))
        ASC_FAIL("{}: tensor '{}': shape element count overflows", p, t.name);
      elems *= uint64_t(d);
    }
    const uint64_t es = dtype_size(t.dtype);
    if (elems > UINT64_MAX / es) ASC_FAIL("{}: tensor '{}': byte size overflows", p, t.name);
    if (t.end - t.begin != elems * es)
      ASC_FAIL("{}: tensor '{}': {} bytes in data_offsets but shape × {} size needs {}", p, t.name,
               t.end - t.begin, dtype_name(t.dtype), elems * es);
    cursor = t.end;
  }
  const uint64_t data_size = size - 8 - n;
  if (cursor != data_size)
    ASC_FAIL("{}: tensors cover {} bytes of data but the file holds {} after the header", p, cursor,
             data_size);
  data_ = base + 8 + n;
  data_offset_ = 8 + n;
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsFile::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) ASC_FAIL("{}: no tensor named '{}'", path_, name);
  return *t;
}

namespace {
std::string make_header(const std::vector<TensorRef>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  // nlohmann::ordered_json keeps our order; readers do not care, humans do.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    if (!seen.insert(t.name).second) ASC_FAIL("safetensors writer: duplicate tensor '{}'", t.name);
    uint64_t bytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) bytes *= uint64_t(d);
    h[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}
uint64_t nbytes(const TensorRef& t) {
  uint64_t b = dtype_size(t.dtype);
  for (int64_t d : t.shape) b *= uint64_t(d);
  return b;
}
std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
  return s;
}
}  // namespace

std::string framed_header(const std::vector<TensorRef>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  const std::string header = make_header(tensors, metadata);
  return le64(header.size()) + header;
}

std::string serialize_safetensors(const std::vector<TensorRef>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  std::string out = framed_header(tensors, metadata);
  for (const auto& t : tensors) out.append(static_cast<const char*>(t.bytes), nbytes(t));
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  AtomicFile out(path);
  out.write(framed_header(tensors, metadata));
  for (const auto& t : tensors) out.write(t.bytes, nbytes(t));
  out.commit();
}

}  // namespace asc::st
