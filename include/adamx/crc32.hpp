// CRC-32 as used by zlib, PNG and Ethernet (polynomial 0x04C11DB7, reflected,
// initial value and final XOR 0xFFFFFFFF; check value of "123456789" is
// 0xCBF43926). Checkpoints carry it so that any single corrupted bit, and any
// burst of up to 32, is detected before a file is trusted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace adamx {
namespace detail {

// The 256-entry table of the reflected polynomial 0xEDB88320, built once at
// compile time.
constexpr std::array<std::uint32_t, 256> make_crc32_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    table[byte] = crc;
  }
  return table;
}

inline constexpr std::array<std::uint32_t, 256> kCrc32Table = make_crc32_table();

}  // namespace detail

/// An incremental CRC-32: feed bytes in any number of pieces, read value().
class Crc32 {
 public:
  void update(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i)
      register_ = detail::kCrc32Table[(register_ ^ bytes[i]) & 0xFFu] ^ (register_ >> 8);
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

}  // namespace adamx
