// safetensors.h — our own reader and writer of the safetensors format (no C++ library for it is
// packaged on Debian; format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}, then the data,
// offsets relative to the end of the header).
//
// Reading maps the file (zero copy) and checks everything the reference implementation checks:
// header length limit (100 MB) and bounds, the header starts with '{', well-formed UTF-8 JSON,
// known dtypes, shapes whose element count does not overflow, byte size = elements × dtype size,
// offsets contiguous from 0 in order with the data covering the whole rest of the file, plus
// duplicate tensor names (which the reference silently collapses). Each defect has its own
// message naming the file. No allocation is sized from unchecked header values.
// Thread-safety: a SafetensorsFile is immutable after open; views stay valid while it lives.
// No libtorch here (fuzzed and sanitized on its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace asc::st {

enum class DType {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
  F8_E4M3,
  F8_E5M2
};
size_t dtype_size(DType d);
const char* dtype_name(DType d);
bool dtype_from_name(const std::string& s, DType* out);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
  uint64_t numel() const;
};

class SafetensorsFile {
 public:
  // Opens and validates; throws asc::Error naming the file and the defect.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Validates an in-memory image (no copy; `data` must outlive the object). For fuzzing/tests.
  static std::shared_ptr<SafetensorsFile> parse(const uint8_t* data, size_t size,
                                                const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors in file order (by offset).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& at(const std::string& name) const;  // throws naming the file
  const uint8_t* data(const TensorInfo& t) const { return data_ + t.begin; }
  // Where the data section starts in the file (8 + header length): a tensor's bytes lie at
  // [data_offset() + begin, data_offset() + end).
  uint64_t data_offset() const { return data_offset_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  void validate(const uint8_t* base, size_t size);
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: name, dtype, shape and a pointer to its bytes (row-major, little-endian).
struct TensorRef {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* bytes;
};

// Writes a safetensors file (header padded with spaces to a multiple of 8) to `path`, via a
// temporary file that is fsynced and renamed, so a crash never leaves a torn file under `path`.
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// What precedes the data in the file: the header's length (8 bytes, little-endian), then it.
std::string framed_header(const std::vector<TensorRef>& tensors,
                          const std::map<std::string, std::string>& metadata = {});
// The serialized bytes (tests, fuzz seeds).
std::string serialize_safetensors(const std::vector<TensorRef>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace asc::st
