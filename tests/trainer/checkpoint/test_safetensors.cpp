// safetensors reader/writer: round trip of every dtype, and each malformed-file case rejected
// with its own message (never a crash or an allocation sized by the header).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "checkpoint/safetensors.h"
#include "common/error.h"
#include "common/fs.h"

namespace st = asc::st;
using testing::HasSubstr;

namespace {
std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
  return s;
}
// A file image from a raw header and data.
std::string image(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}
std::string parse_error(const std::string& bytes) {
  try {
    st::SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                               "f.st");
  } catch (const asc::Error& e) {
    return e.message();
  }
  return "<no error>";
}
}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  const st::DType all[] = {st::DType::BOOL, st::DType::U8,      st::DType::I8,     st::DType::I16,
                           st::DType::U16,  st::DType::F16,     st::DType::BF16,   st::DType::I32,
                           st::DType::U32,  st::DType::F32,     st::DType::F64,    st::DType::I64,
                           st::DType::U64,  st::DType::F8_E4M3, st::DType::F8_E5M2};
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<st::TensorRef> refs;
  for (auto d : all) {
    std::vector<int64_t> shape = {2, 3};
    std::vector<uint8_t> b(6 * st::dtype_size(d));
    for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i * 7 + int(d));
    if (d == st::DType::BOOL)
      for (auto& x : b) x &= 1;
    buffers.push_back(b);
    refs.push_back({std::string("t_") + st::dtype_name(d), d, shape, buffers.back().data()});
  }
  // A scalar and an empty tensor too.
  float scalar = 3.5f;
  refs.push_back({"scalar", st::DType::F32, {}, &scalar});
  refs.push_back({"empty", st::DType::F32, {0, 4}, nullptr});
  const auto path = (std::filesystem::temp_directory_path() / "asc_roundtrip.safetensors").string();
  st::write_safetensors(path, refs, {{"format", "pt"}});
  auto f = st::SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), refs.size());
  for (size_t i = 0; i < refs.size(); ++i) {
    const auto& t = f->at(refs[i].name);
    EXPECT_EQ(t.dtype, refs[i].dtype);
    EXPECT_EQ(t.shape, refs[i].shape);
    size_t n = t.end - t.begin;
    if (n) {
      EXPECT_EQ(std::memcmp(f->data(t), refs[i].bytes, n), 0) << refs[i].name;
    }
  }
  // Header padded to a multiple of 8.
  std::ifstream in(path, std::ios::binary);
  uint64_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 8);
  EXPECT_EQ(hlen % 8, 0u);
  std::filesystem::remove(path);
}

TEST(Safetensors, MalformedFilesEachHaveTheirOwnMessage) {
  const std::string ok_hdr = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data8(8, '\0');
  EXPECT_EQ(parse_error(image(ok_hdr, data8)), "<no error>");

  EXPECT_THAT(parse_error("abc"), HasSubstr("shorter than the 8-byte header length"));
  EXPECT_THAT(parse_error(le64(200'000'000) + "{}"), HasSubstr("exceeds the 100000000-byte limit"));
  EXPECT_THAT(parse_error(le64(1000) + "{}"), HasSubstr("runs past the end of the file"));
  EXPECT_THAT(parse_error(image("[]")), HasSubstr("does not start with '{'"));
  EXPECT_THAT(parse_error(image("")), HasSubstr("does not start with '{'"));
  EXPECT_THAT(parse_error(image("{\"a\":")), HasSubstr("header is not valid JSON"));
  EXPECT_THAT(parse_error(image("{\"\xff\xfe\":{}}")), HasSubstr("header is not valid JSON"));
  EXPECT_THAT(
      parse_error(image(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", data8)),
      HasSubstr("tensor 'a': unknown dtype 'F33'"));
  EXPECT_THAT(parse_error(image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", data8)),
              HasSubstr("tensor 'a': missing or non-string dtype"));
  EXPECT_THAT(
      parse_error(image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8)),
      HasSubstr("shape entries must be non-negative integers"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data8)),
              HasSubstr("missing or non-array shape"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8)),
              HasSubstr("data_offsets must be [begin, end]"));
  EXPECT_THAT(
      parse_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data8)),
      HasSubstr("are not contiguous (expected to start at 0)"));
  EXPECT_THAT(
      parse_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8)),
      HasSubstr("are not contiguous"));
  EXPECT_THAT(
      parse_error(image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8)),
      HasSubstr("8 bytes in data_offsets but shape × F32 size needs 12"));
  EXPECT_THAT(parse_error(image(ok_hdr, data8 + "xx")),
              HasSubstr("tensors cover 8 bytes of data but the file holds 10"));
  EXPECT_THAT(parse_error(image(ok_hdr, "1234")),
              HasSubstr("tensors cover 8 bytes of data but the file holds 4"));
  EXPECT_THAT(
      parse_error(image(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
          data8 + data8)),
      HasSubstr("duplicate tensor name 'a'"));
  EXPECT_THAT(parse_error(image(R"({"__metadata__":{"k":1}})")),
              HasSubstr("__metadata__ value of 'k' is not a string"));
  EXPECT_THAT(
      parse_error(image(
          R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
          data8)),
      HasSubstr("overflows"));
  EXPECT_THAT(parse_error(image(R"({"a":[1,2]})")),
              HasSubstr("tensor 'a': entry is not an object"));
  EXPECT_THAT(parse_error(image("[1]")), HasSubstr("does not start with '{'"));
  EXPECT_THAT(parse_error(image("{} 1")), HasSubstr("header is not valid JSON"));
}

TEST(Safetensors, OpenNamesTheFile) {
  try {
    st::SafetensorsFile::open("/nonexistent/x.safetensors");
    FAIL();
  } catch (const asc::Error& e) {
    EXPECT_THAT(e.message(), HasSubstr("/nonexistent/x.safetensors: cannot open"));
  }
  const auto path = (std::filesystem::temp_directory_path() / "asc_bad.safetensors").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << le64(1000) << "{}";
  }
  try {
    st::SafetensorsFile::open(path);
    FAIL();
  } catch (const asc::Error& e) {
    EXPECT_THAT(e.message(), HasSubstr(path + ": header length 1000 runs past the end"));
  }
  std::filesystem::remove(path);
}

TEST(Safetensors, WriterRejectsDuplicateNames) {
  float x = 1;
  EXPECT_THROW(
      st::serialize_safetensors({{"a", st::DType::F32, {1}, &x}, {"a", st::DType::F32, {1}, &x}}),
      asc::Error);
}

// The page-cache-bypassing writer (AtomicFile with direct: O_DIRECT, two aligned 16 MiB buffers,
// the tail padded then cut), fed a safetensors file piece by piece as the shard writer does,
// writes exactly its bytes, for sizes around every boundary it has.
TEST(Safetensors, DirectWriterWritesTheSameBytes) {
  const auto dir = std::filesystem::temp_directory_path() / "asc_st_direct";
  std::filesystem::create_directories(dir);
  const int64_t block = int64_t(16) << 20;
  // The tensor size that makes the whole file exactly one block (no tail to pad and cut).
  auto file_size = [](int64_t n) {
    uint8_t b = 0;
    return int64_t(st::framed_header({{"x", st::DType::U8, {n}, &b}, {"y", st::DType::U8, {3}, &b}},
                                     {{"k", "v"}})
                       .size()) +
           n + 3;
  };
  int64_t exact = block - file_size(block) + block;
  exact += block - file_size(exact);
  ASSERT_EQ(file_size(exact), block);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(4095), int64_t(4096), block - 200, block,
                    block + 3, 2 * block + 4097, 3 * block, exact}) {
    std::vector<uint8_t> data(static_cast<size_t>(n) + 3);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t((i * 2654435761u) >> 13);
    const std::vector<st::TensorRef> refs = {{"x", st::DType::U8, {n}, data.data()},
                                             {"y", st::DType::U8, {3}, data.data()}};
    const auto path = (dir / ("d" + std::to_string(n) + ".safetensors")).string();
    {
      asc::AtomicFile out(path, /*direct=*/true);
      out.write(st::framed_header(refs, {{"k", "v"}}));
      out.write(data.data(), size_t(n));
      out.write(data.data(), 3);
      out.commit();
    }
    std::ifstream in(path, std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string want = st::serialize_safetensors(refs, {{"k", "v"}});
    EXPECT_EQ(got.size(), want.size()) << n;
    EXPECT_TRUE(got == want) << "bytes differ at size " << n;
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
  }
  std::filesystem::remove_all(dir);
}
