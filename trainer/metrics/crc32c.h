// crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord framing needs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace asc {

uint32_t crc32c(const void* data, size_t n);
// TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
inline uint32_t crc32c_masked(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace asc
