#include <gtest/gtest.h>

#include <string>

#include "metrics/crc32c.h"

// CRC-32C check values from RFC 3720 (iSCSI), appendix B.4.
TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(asc::crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(asc::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(asc::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::string inc(32, '\0');
  for (int i = 0; i < 32; ++i) inc[i] = char(i);
  EXPECT_EQ(asc::crc32c(inc.data(), inc.size()), 0x46DD794Eu);
}
