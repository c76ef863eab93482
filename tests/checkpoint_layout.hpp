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

/// One field of a self-describing block (version 3), or of version 2's
/// fixed layout: its name, encoding (1 f64, 2 u8 bool, 3 u8 enum code) and
/// where its name, tag and value sit (absolute file offsets; version 2 has
/// no name or tag in the file, and those offsets are 0).
struct Field {
  std::string name;
  unsigned encoding = 1;
  std::size_t name_at = 0;
  std::size_t encoding_at = 0;
  std::size_t value_at = 0;
};

/// Version 2's fixed options: name, encoding, and the value a version-2
/// writer put there for an optimizer without the field.
struct V2Slot {
  const char* name;
  unsigned encoding;
  double absent;
};
inline constexpr V2Slot kV2Options[] = {
    {"lr", 1, 1e-3},         {"beta1", 1, 0.9},      {"beta2", 1, 0.999},   {"beta3", 1, 1.0},
    {"beta_norm", 1, 0.99},  {"eps", 1, 1e-8},       {"weight_decay", 1, 0.0}, {"decay_mode", 3, 0},
    {"amsgrad", 2, 0},       {"maximize", 2, 0},     {"nonfinite", 3, 0},   {"final_lr", 1, 0.1},
    {"bound_speed", 1, 1e-3}, {"beta_step", 1, 0.999},
};

/// Offsets of the fields of one group in the header (absolute file offsets).
struct GroupFields {
  std::size_t name = 0;           // u32 length, then the bytes
  std::size_t option_count = 0;   // u32 (version 3)
  std::vector<Field> options;     // in file order
  std::size_t t = 0;              // i64
  std::size_t scalar_count = 0;   // u32 (version 3)
  std::vector<Field> scalars;     // f64 each, in file order
  std::size_t gamma = 0;          // f64, if the group has gamma
  std::size_t h = 0;              // f64, if the group has h
  std::size_t tensor_count = 0;   // u32
  std::vector<std::size_t> tensor_names;  // per tensor: name, then rows i64, cols i64, row_major u8
  std::vector<std::size_t> rows;

  /// Where the value of option `field` sits; throws if the group has none.
  std::size_t option(const std::string& field) const { return find(options, field); }
  std::size_t scalar(const std::string& field) const { return find(scalars, field); }
  bool has_option(const std::string& field) const {
    for (const Field& f : options)
      if (f.name == field) return true;
    return false;
  }

 private:
  static std::size_t find(const std::vector<Field>& fields, const std::string& field) {
    for (const Field& f : fields)
      if (f.name == field) return f.value_at;
    throw std::out_of_range("the group has no field " + field);
  }
};

/// The layout of a checkpoint file (version 2 or 3), read per docs/checkpoints.md.
struct Layout {
  static constexpr std::size_t kMagic = 0;          // 8 bytes "ADAMXCKP"
  static constexpr std::size_t kVersion = 8;        // u32
  static constexpr std::size_t kHeaderLength = 12;  // u32
  static constexpr std::size_t kHeader = 16;        // the header block starts here
  std::uint32_t version = 0;
  std::size_t header_length = 0;
  std::size_t optimizer_name = kHeader;  // u32 length + bytes
  std::size_t parameter_type = 0;        // u8
  std::size_t state_type = 0;            // u8
  std::size_t slot_count = 0;            // u32 (version 3)
  std::vector<std::string> slot_names;   // version 3
  std::size_t group_count = 0;           // u32
  std::vector<GroupFields> groups;
  std::size_t header_crc = 0;            // u32, CRC of bytes [0, header_crc)
  std::size_t arrays = 0;                // first byte of the arrays
  std::size_t file_crc = 0;              // u32, CRC of bytes [0, file_crc), the last 4 bytes

  explicit Layout(const std::string& file) {
    version = static_cast<std::uint32_t>(read_le(file, kVersion, 4));
    if (version != 2 && version != 3) throw std::runtime_error("not a version 2 or 3 checkpoint");
    header_length = static_cast<std::size_t>(read_le(file, kHeaderLength, 4));
    std::size_t at = kHeader;
    const auto string_at = [&]() {
      const auto length = static_cast<std::size_t>(read_le(file, at, 4));
      if (at + 4 + length > file.size()) throw std::out_of_range("string past the end");
      std::string text = file.substr(at + 4, length);
      at += 4 + length;
      return text;
    };
    optimizer_name = at;
    string_at();
    parameter_type = at++;
    state_type = at++;
    if (version == 3) {
      slot_count = at;
      const auto slots = read_le(file, at, 4);
      at += 4;
      for (std::uint64_t k = 0; k < slots; ++k) slot_names.push_back(string_at());
    }
    group_count = at;
    const auto groups_in_file = read_le(file, at, 4);
    at += 4;
    for (std::uint64_t g = 0; g < groups_in_file; ++g) {
      GroupFields fields;
      fields.name = at;
      string_at();
      // A version-3 block: u32 count, then per field its name, (if
      // `tagged`) an encoding tag, and its value.
      const auto named_block = [&](std::size_t& count_at, std::vector<Field>& out, bool tagged) {
        count_at = at;
        const auto count = read_le(file, at, 4);
        at += 4;
        for (std::uint64_t i = 0; i < count; ++i) {
          Field f;
          f.name_at = at;
          f.name = string_at();
          if (tagged) {
            f.encoding_at = at;
            f.encoding = static_cast<unsigned>(read_le(file, at, 1));
            ++at;
          }
          f.value_at = at;
          if (f.encoding == 1) at += 8;
          else if (f.encoding == 2 || f.encoding == 3) at += 1;
          else throw std::runtime_error("unknown encoding tag");
          out.push_back(f);
        }
      };
      if (version == 3) {
        named_block(fields.option_count, fields.options, true);
      } else {
        for (const V2Slot& slot : kV2Options) {
          Field f;
          f.name = slot.name;
          f.encoding = slot.encoding;
          f.value_at = at;
          at += slot.encoding == 1 ? 8 : 1;
          fields.options.push_back(f);
        }
      }
      fields.t = at;
      at += 8;
      if (version == 3) {
        named_block(fields.scalar_count, fields.scalars, false);  // f64 each
      } else {
        for (const char* name : {"gamma", "h"}) {
          Field f;
          f.name = name;
          f.value_at = at;
          at += 8;
          fields.scalars.push_back(f);
        }
      }
      for (const Field& f : fields.scalars) {
        if (f.name == "gamma") fields.gamma = f.value_at;
        if (f.name == "h") fields.h = f.value_at;
      }
      fields.tensor_count = at;
      const auto tensors = read_le(file, at, 4);
      at += 4;
      for (std::uint64_t j = 0; j < tensors; ++j) {
        fields.tensor_names.push_back(at);
        string_at();
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

/// `file` (version 3) with its header block replaced by `header` (the bytes
/// from the optimizer name to the last tensor), the header length and both
/// checksums recomputed, and the version set to `version`.
inline std::string with_header(const std::string& file, const std::string& header, std::uint32_t version) {
  const Layout layout(file);
  std::string out = file.substr(0, Layout::kHeader) + header + "0000" + file.substr(layout.arrays);
  write_le(out, Layout::kVersion, version, 4);
  write_le(out, Layout::kHeaderLength, header.size(), 4);
  const std::size_t header_crc = Layout::kHeader + header.size();
  const auto* bytes = reinterpret_cast<const unsigned char*>(out.data());
  write_le(out, header_crc, bitwise_crc32(bytes, header_crc), 4);
  write_le(out, out.size() - 4, bitwise_crc32(bytes, out.size() - 4), 4);
  return out;
}

/// A version-3 file rewritten in version 2's layout as docs/checkpoints.md
/// documents it (and as a version-2 writer wrote it): the fourteen option
/// slots, an optimizer's missing ones holding version 2's defaults, then t,
/// gamma and h (1 and 0 for a rule without them). The arrays are the same.
inline std::string as_version2(const std::string& file) {
  const Layout layout(file);
  if (layout.version != 3) throw std::runtime_error("as_version2 takes a version 3 file");
  std::string header = file.substr(Layout::kHeader, layout.slot_count - Layout::kHeader);
  const auto put = [&](std::uint64_t value, int width) {
    header.append(static_cast<std::size_t>(width), '\0');
    write_le(header, header.size() - static_cast<std::size_t>(width), value, width);
  };
  const auto copy = [&](std::size_t from, std::size_t to) { header += file.substr(from, to - from); };
  const auto f64_bits = [](double value) {
    std::uint64_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
  };
  copy(layout.group_count, layout.group_count + 4);
  for (const GroupFields& g : layout.groups) {
    copy(g.name, g.option_count);
    for (const V2Slot& slot : kV2Options) {
      const int width = slot.encoding == 1 ? 8 : 1;
      if (g.has_option(slot.name))
        copy(g.option(slot.name), g.option(slot.name) + static_cast<std::size_t>(width));
      else
        put(width == 8 ? f64_bits(slot.absent) : static_cast<std::uint64_t>(slot.absent), width);
    }
    copy(g.t, g.t + 8);
    put(g.gamma != 0 ? read_le(file, g.gamma, 8) : f64_bits(1.0), 8);
    put(g.h != 0 ? read_le(file, g.h, 8) : f64_bits(0.0), 8);
    copy(g.tensor_count, g.tensor_names.empty() ? g.tensor_count + 4 : g.rows.back() + 17);
  }
  return with_header(file, header, 2);
}

inline void patch_f64(std::string& file, std::size_t offset, double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  write_le(file, offset, bits, 8);
}

}  // namespace adamx_test
