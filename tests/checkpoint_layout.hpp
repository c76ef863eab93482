// An independent reading of the checkpoint format as docs/checkpoints.md
// describes it: where every field sits, and a bit-at-a-time CRC-32. Tests use
// it to check the library's files against the documentation and to craft
// files that are well-formed (both checksums right) but say something wrong,
// such as lr = NaN. It shares no code with include/adamx/checkpoint.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace adamx_test {

/// CRC-32 (reflected polynomial 0xEDB88320), one bit at a time.
inline std::uint32_t bitwise_crc32(const unsigned char* data, std::size_t size) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

inline std::uint64_t read_le(const std::string& bytes, std::size_t offset, int width) {
  if (offset + static_cast<std::size_t>(width) > bytes.size())
    throw std::out_of_range("read_le past the end");
  std::uint64_t value = 0;
  for (int i = 0; i < width; ++i)
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[offset + static_cast<std::size_t>(i)]))
             << (8 * i);
  return value;
}

inline void write_le(std::string& bytes, std::size_t offset, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i)
    bytes[offset + static_cast<std::size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xFFu);
}

/// Offsets of the fields of one group in the header (absolute file offsets).
struct GroupFields {
  std::size_t name = 0;           // u32 length, then the bytes
  std::size_t lr = 0;             // 7 f64: lr, beta1, beta2, beta3, beta_norm, eps, weight_decay
  std::size_t decay_mode = 0;     // u8 each: decay_mode, amsgrad, maximize, nonfinite
  std::size_t final_lr = 0;       // 3 f64: final_lr, bound_speed, beta_step (version 2)
  std::size_t t = 0;              // i64
  std::size_t gamma = 0;          // f64
  std::size_t h = 0;              // f64
  std::size_t tensor_count = 0;   // u32
  std::vector<std::size_t> tensor_names;  // per tensor: name, then rows i64, cols i64, row_major u8
  std::vector<std::size_t> rows;
};

/// The layout of a checkpoint file, read per docs/checkpoints.md.
struct Layout {
  static constexpr std::size_t kMagic = 0;          // 8 bytes "ADAMXCKP"
  static constexpr std::size_t kVersion = 8;        // u32
  static constexpr std::size_t kHeaderLength = 12;  // u32
  static constexpr std::size_t kHeader = 16;        // the header block starts here
  std::size_t header_length = 0;
  std::size_t optimizer_name = kHeader;  // u32 length + bytes
  std::size_t parameter_type = 0;        // u8
  std::size_t state_type = 0;            // u8
  std::size_t group_count = 0;           // u32
  std::vector<GroupFields> groups;
  std::size_t header_crc = 0;            // u32, CRC of bytes [0, header_crc)
  std::size_t arrays = 0;                // first byte of the arrays
  std::size_t file_crc = 0;              // u32, CRC of bytes [0, file_crc), the last 4 bytes

  explicit Layout(const std::string& file) {
    header_length = static_cast<std::size_t>(read_le(file, kHeaderLength, 4));
    std::size_t at = kHeader;
    const auto skip_string = [&]() {
      const auto length = static_cast<std::size_t>(read_le(file, at, 4));
      at += 4 + length;
    };
    optimizer_name = at;
    skip_string();
    parameter_type = at++;
    state_type = at++;
    group_count = at;
    const auto groups_in_file = read_le(file, at, 4);
    at += 4;
    for (std::uint64_t g = 0; g < groups_in_file; ++g) {
      GroupFields fields;
      fields.name = at;
      skip_string();
      fields.lr = at;
      at += 7 * 8;
      fields.decay_mode = at;
      at += 4;
      fields.final_lr = at;
      at += 3 * 8;
      fields.t = at;
      at += 8;
      fields.gamma = at;
      at += 8;
      fields.h = at;
      at += 8;
      fields.tensor_count = at;
      const auto tensors = read_le(file, at, 4);
      at += 4;
      for (std::uint64_t j = 0; j < tensors; ++j) {
        fields.tensor_names.push_back(at);
        skip_string();
        fields.rows.push_back(at);
        at += 8 + 8 + 1;
      }
      groups.push_back(fields);
    }
    if (at != kHeader + header_length) throw std::runtime_error("header length does not match its contents");
    header_crc = at;
    arrays = at + 4;
    file_crc = file.size() - 4;
  }

  /// Recomputes both checksums after a field was patched, so the file is
  /// well-formed again and only the patched meaning is wrong.
  void reseal(std::string& file) const {
    const auto* bytes = reinterpret_cast<const unsigned char*>(file.data());
    write_le(file, header_crc, bitwise_crc32(bytes, header_crc), 4);
    write_le(file, file_crc, bitwise_crc32(bytes, file_crc), 4);
  }
};

inline void patch_f64(std::string& file, std::size_t offset, double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  write_le(file, offset, bits, 8);
}

}  // namespace adamx_test
