// CRC-32 as used by zlib, PNG and Ethernet (polynomial 0x04C11DB7, reflected,
// initial value and final XOR 0xFFFFFFFF; check value of "123456789" is
// 0xCBF43926). Checkpoints carry it so that any single corrupted bit, and any
// burst of up to 32, is detected before a file is trusted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// Slicing-by-8 tables for the reflected polynomial 0xEDB88320, built once
// at compile time: table[0] is the classic byte-at-a-time table, table[k]
// advances a byte's contribution by k more zero bytes, so eight input bytes
// take eight lookups and no loop-carried dependency between them (several
// times the speed of one byte at a time; checkpoints can be gigabytes).
using Crc32Tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr Crc32Tables make_crc32_tables() {
  Crc32Tables tables{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    tables[0][byte] = crc;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::uint32_t byte = 0; byte < 256; ++byte)
      tables[k][byte] = (tables[k - 1][byte] >> 8) ^ tables[0][tables[k - 1][byte] & 0xFFu];
  return tables;
}

inline constexpr Crc32Tables kCrc32Tables = make_crc32_tables();

}  // namespace detail

/// An incremental CRC-32: feed bytes in any number of pieces, read value().
class Crc32 {
 public:
  void update(const void* data, std::size_t size) {
    const auto& t = detail::kCrc32Tables;
    const auto* bytes = static_cast<const unsigned char*>(data);
    std::uint32_t crc = register_;
    for (; size >= 8; size -= 8, bytes += 8) {
      // The bytes are combined explicitly in little-endian order, so this is
      // the same on any host.
      const std::uint32_t low = crc ^ (std::uint32_t{bytes[0]} | std::uint32_t{bytes[1]} << 8 |
                                       std::uint32_t{bytes[2]} << 16 | std::uint32_t{bytes[3]} << 24);
      crc = t[7][low & 0xFFu] ^ t[6][(low >> 8) & 0xFFu] ^ t[5][(low >> 16) & 0xFFu] ^
            t[4][low >> 24] ^ t[3][bytes[4]] ^ t[2][bytes[5]] ^ t[1][bytes[6]] ^ t[0][bytes[7]];
    }
    for (; size > 0; --size, ++bytes) crc = t[0][(crc ^ *bytes) & 0xFFu] ^ (crc >> 8);
    register_ = crc;
  }
  std::uint32_t value() const { return register_ ^ 0xFFFFFFFFu; }

 private:
  std::uint32_t register_ = 0xFFFFFFFFu;
};

/// CRC-32 of one buffer.
inline std::uint32_t crc32(const void* data, std::size_t size) {
  Crc32 crc;
  crc.update(data, size);
  return crc.value();
}

ADAMX_NAMESPACE_END  // namespace adamx
