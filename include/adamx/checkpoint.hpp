// Checkpoints: the whole optimizer state in adamx's own binary format
// (docs/checkpoints.md has the byte layout), to and from a stream or a file.
//
// Loading is all-or-nothing. A checkpoint is read into fresh state objects,
// checked (magic, version, optimizer and scalar type, every group and tensor
// by name and shape, both checksums, every value) and only then swapped into
// the optimizer; any failure throws CheckpointError naming the problem and
// leaves the optimizer exactly as it was. The header (names, shapes, options,
// scalars) carries its own CRC-32 so that it is verified before it is
// interpreted: a corrupt size can neither allocate memory nor be reported as
// a "mismatch" when the truth is "corrupt file".
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <istream>
#include <iterator>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <unistd.h>
#define ADAMX_CHECKPOINT_FSYNC 1
#endif

#include "adamx/abi.hpp"
#include "adamx/crc32.hpp"
#include "adamx/errors.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/optimizer.hpp"
#include "adamx/option_fields.hpp"
#include "adamx/options.hpp"

ADAMX_NAMESPACE_BEGIN

/// The checkpoint format version this adamx writes. It reads this one and
/// kCheckpointVersionLegacy.
// Version 3 lists each group's options and scalars, and the state slots, by
// name, as the optimizer's update rule declares them; version 2 held one
// fixed union of every optimizer's options and γ, h (docs/checkpoints.md).
inline constexpr std::uint32_t kCheckpointVersion = 3;
/// The older format version this adamx still reads (never writes).
inline constexpr std::uint32_t kCheckpointVersionLegacy = 2;

namespace detail {

inline constexpr char kCheckpointMagic[8] = {'A', 'D', 'A', 'M', 'X', 'C', 'K', 'P'};
// Bytes before the header: magic, version, header length.
inline constexpr std::size_t kCheckpointPreamble = 8 + 4 + 4;
// A header holds names, shapes and a few scalars per tensor; anything larger
// than this is a corrupt length field, refused before it is allocated.
inline constexpr std::uint32_t kMaxHeaderBytes = 1u << 30;
// Names are read in pieces of at most this size, so a corrupt length in a
// crafted header cannot allocate more than the header itself holds.
inline constexpr std::size_t kStreamChunk = 1 << 16;

// Fuzzing builds (docs/fuzzing.md) define the conventional macro below to
// let mutated inputs past the two checksums, so that the fuzzer reaches the
// parsing and validation behind them. Never define it anywhere else.
#if defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
inline constexpr bool kVerifyChecksums = false;
#else
inline constexpr bool kVerifyChecksums = true;
#endif

// Scalar type codes stored in the header.
template <class T>
struct scalar_code;
template <>
struct scalar_code<float> {
  static constexpr std::uint8_t value = 1;
};
template <>
struct scalar_code<double> {
  static constexpr std::uint8_t value = 2;
};
template <>
struct scalar_code<Eigen::bfloat16> {
  static constexpr std::uint8_t value = 3;
};
template <>
struct scalar_code<Eigen::half> {
  static constexpr std::uint8_t value = 4;
};

inline const char* scalar_name(std::uint8_t code) {
  switch (code) {
    case 1: return "float";
    case 2: return "double";
    case 3: return "bfloat16";
    case 4: return "half";
    default: return nullptr;
  }
}

inline std::string describe_scalar(std::uint8_t code) {
  const char* name = scalar_name(code);
  return name ? std::string(name) : "unknown type code " + std::to_string(code);
}

// The unsigned integer with a scalar's bits (bfloat16 and half parameters
// are stored by run checkpoints in their own two bytes).
template <class T>
using bits_of = std::conditional_t<sizeof(T) == 8, std::uint64_t,
                                   std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint16_t>>;

// Little-endian encoding, independent of the host's byte order.
template <class Unsigned>
void put_le(std::string& out, Unsigned value) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFFu));
}
template <class Unsigned>
Unsigned get_le(const unsigned char* bytes) {
  Unsigned value = 0;
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i)
    value |= static_cast<Unsigned>(static_cast<Unsigned>(bytes[i]) << (8 * i));
  return value;
}
template <class Float>
bits_of<Float> float_bits(Float value) {
  bits_of<Float> bits;
  std::memcpy(&bits, &value, sizeof(Float));
  return bits;
}
template <class Float>
Float float_from_bits(bits_of<Float> bits) {
  Float value;
  // Through void*: Eigen's bfloat16 and half are classes, trivially copyable in fact.
  std::memcpy(static_cast<void*>(&value), &bits, sizeof(Float));
  return value;
}

inline void put_u8(std::string& out, std::uint8_t value) { out.push_back(static_cast<char>(value)); }
inline void put_u32(std::string& out, std::uint32_t value) { put_le(out, value); }
inline void put_i64(std::string& out, std::int64_t value) {
  put_le(out, static_cast<std::uint64_t>(value));
}
inline void put_f64(std::string& out, double value) { put_le(out, float_bits(value)); }
inline void put_string(std::string& out, const std::string& text) {
  put_u32(out, static_cast<std::uint32_t>(text.size()));
  out += text;
}

[[noreturn]] inline void checkpoint_failure(const std::string& what) {
  throw CheckpointError("adamx::load_checkpoint: " + what);
}

// The operating system's words for an errno value, e.g. "No space left on
// device"; every file error message ends with them. 0 means the failing call
// set no errno, which is said as such rather than guessed.
inline std::string os_reason(int error) {
  if (error <= 0) return "the system reported no reason";
  return std::error_code(error, std::generic_category()).message();
}

// Reads the header block, which has already passed its checksum; anything
// malformed here comes from a crafted file, so it is named with its offset.
class HeaderReader {
 public:
  HeaderReader(const std::string& bytes, std::size_t file_offset)
      : bytes_(bytes), file_offset_(file_offset) {}

  std::uint8_t u8(const char* what) { return *take(1, what); }
  std::uint32_t u32(const char* what) { return get_le<std::uint32_t>(take(4, what)); }
  std::int64_t i64(const char* what) {
    return static_cast<std::int64_t>(get_le<std::uint64_t>(take(8, what)));
  }
  double f64(const char* what) { return float_from_bits<double>(get_le<std::uint64_t>(take(8, what))); }
  bool boolean(const char* what) {
    const std::uint8_t value = u8(what);
    if (value > 1) malformed(std::string(what) + " is " + std::to_string(value) + " (must be 0 or 1)");
    return value == 1;
  }
  std::string string(const char* what) {
    const std::uint32_t length = u32(what);
    const unsigned char* text = take(length, what);
    return std::string(reinterpret_cast<const char*>(text), length);
  }
  bool at_end() const { return position_ == bytes_.size(); }
  std::size_t offset() const { return file_offset_ + position_; }
  /// Where the next read starts in the block, and going back there.
  std::size_t position() const { return position_; }
  void seek(std::size_t position) { position_ = std::min(position, bytes_.size()); }

  [[noreturn]] void malformed(const std::string& what) const {
    checkpoint_failure("malformed header at byte " + std::to_string(offset()) + ": " + what);
  }

 private:
  const unsigned char* take(std::size_t count, const char* what) {
    if (count > bytes_.size() - position_)
      malformed(std::string(what) + " needs " + std::to_string(count) + " bytes but the header has " +
                std::to_string(bytes_.size() - position_) + " left");
    const auto* data = reinterpret_cast<const unsigned char*>(bytes_.data()) + position_;
    position_ += count;
    return data;
  }

  const std::string& bytes_;
  std::size_t file_offset_;
  std::size_t position_ = 0;
};

// Reads the stream, keeping the offset (for messages) and the running CRC.
class CheckpointInput {
 public:
  /// `start_offset`: where the stream's current position lies in the file
  /// (a checkpoint may follow other data), so that messages give file bytes.
  explicit CheckpointInput(std::istream& in, std::uint64_t start_offset = 0)
      : in_(in), offset_(start_offset) {}

  void read(void* destination, std::size_t count, const std::string& what) {
    auto* out = static_cast<char*>(destination);
    std::size_t done = 0;
    while (done < count) {
      const std::size_t piece = std::min(count - done, kStreamChunk);
      errno = 0;  // so that a failed read's errno is not confused with an older one
      in_.read(out + done, static_cast<std::streamsize>(piece));
      const int error = errno;
      const auto got = static_cast<std::size_t>(in_.gcount());
      crc_.update(out + done, got);
      done += got;
      if (got < piece) {
        offset_ += done;
        // bad(): the read itself failed (an I/O error, a directory), which
        // is not a short file.
        if (in_.bad())
          checkpoint_failure("reading failed at byte " + std::to_string(offset_) + " (" + what + "): " +
                             os_reason(error));
        checkpoint_failure("truncated at byte " + std::to_string(offset_) + " (" + what + " needs " +
                           std::to_string(count) + " bytes from byte " +
                           std::to_string(offset_ - done) + ")");
      }
    }
    offset_ += count;
  }
  std::uint32_t u32(const std::string& what) {
    unsigned char bytes[4];
    read(bytes, 4, what);
    return get_le<std::uint32_t>(bytes);
  }
  /// Reads a block of `size` bytes whose length came from the file, in
  /// pieces: a corrupt length on a short stream fails as truncated after
  /// allocating no more than the stream held.
  std::string block(std::uint32_t size, const std::string& what) {
    std::string bytes;
    while (bytes.size() < size) {
      const std::size_t piece = std::min<std::size_t>(size - bytes.size(), kStreamChunk);
      const std::size_t old_size = bytes.size();
      bytes.resize(old_size + piece);
      read(&bytes[old_size], piece, what + " (" + std::to_string(size) + " bytes)");
    }
    return bytes;
  }
  /// Reads `count` bytes into the CRC only (verifying without keeping).
  void skip(std::uint64_t count, const std::string& what) {
    char buffer[4096];
    while (count > 0) {
      const std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(count, sizeof buffer));
      read(buffer, piece, what);
      count -= piece;
    }
  }
  std::uint32_t crc() const { return crc_.value(); }
  std::uint64_t offset() const { return offset_; }

 private:
  std::istream& in_;
  Crc32 crc_;
  std::uint64_t offset_ = 0;
};

inline std::string hex32(std::uint32_t value) {
  char text[11];
  std::snprintf(text, sizeof text, "0x%08x", static_cast<unsigned>(value));
  return text;
}

// True on little-endian hosts, where the arrays' memory already is the file's
// byte order and can be written and read as it is (compilers fold this).
inline bool host_is_little_endian() {
  const std::uint32_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// One array of state, little-endian, in pieces of at most kStreamChunk bytes
// (the arrays may be gigabytes; the staging buffer a big-endian host needs
// is not).
template <class Scalar>
void write_array(std::ostream& out, Crc32& crc, const Scalar* data, Index size) {
  using Bits = bits_of<Scalar>;
  constexpr Index kPiece = static_cast<Index>(kStreamChunk / sizeof(Scalar));
  std::string staging;
  for (Index start = 0; start < size; start += kPiece) {
    const Index end = std::min(size, start + kPiece);
    const char* bytes = reinterpret_cast<const char*>(data + start);
    const std::size_t count = static_cast<std::size_t>(end - start) * sizeof(Scalar);
    if (!host_is_little_endian()) {
      staging.clear();
      for (Index i = start; i < end; ++i) put_le<Bits>(staging, float_bits(data[i]));
      bytes = staging.data();
    }
    crc.update(bytes, count);
    out.write(bytes, static_cast<std::streamsize>(count));
  }
}

template <class Scalar>
void read_array(CheckpointInput& in, Scalar* data, Index size, const std::string& what) {
  using Bits = bits_of<Scalar>;
  if (size == 0) return;
  // Read straight into the (fresh, not yet published) array, then fix the
  // byte order in place if the host needs it.
  in.read(data, static_cast<std::size_t>(size) * sizeof(Scalar), what);
  if (!host_is_little_endian())
    for (Index i = 0; i < size; ++i) {
      unsigned char bytes[sizeof(Scalar)];
      std::memcpy(bytes, data + i, sizeof(Scalar));
      data[i] = float_from_bits<Scalar>(get_le<Bits>(bytes));
    }
}

// One field's value: a double as f64, a bool or an enumeration's code as u8.
inline void put_option_value(std::string& out, double value) { put_f64(out, value); }
inline void put_option_value(std::string& out, bool value) { put_u8(out, value ? 1 : 0); }
template <class Enum, class = std::enable_if_t<std::is_enum<Enum>::value>>
void put_option_value(std::string& out, Enum value) {
  put_u8(out, static_cast<std::uint8_t>(value));
}
inline void get_option_value(HeaderReader& in, const char* name, double& value) { value = in.f64(name); }
inline void get_option_value(HeaderReader& in, const char* name, bool& value) { value = in.boolean(name); }
template <class Enum, class = std::enable_if_t<std::is_enum<Enum>::value>>
void get_option_value(HeaderReader& in, const char* name, Enum& value) {
  const std::uint8_t code = in.u8(name);
  if (code >= std::size(OptionEnum<Enum>::names))
    in.malformed(std::string(name) + " code " + std::to_string(code) + " is unknown");
  value = static_cast<Enum>(code);
}

// Calls `present(field)` with the field of Options named `name`, or returns
// false if Options has none.
template <class Options, class Present>
bool with_option_field(const char* name, Present&& present) {
  bool found = false;
  for_each_option_field<Options>([&](const auto& field) {
    if (found || std::strcmp(field.name, name) != 0) return;
    found = true;
    present(field);
  });
  return found;
}

// ---- version 3: blocks that describe themselves ---------------------------
//
// A version-3 file lists what its optimizer declares, by name: the options
// (option_fields.hpp), the group scalars (group_scalars.hpp) and the state
// slots (the rule's slot_names). The writer and the reader below are made
// from those declarations alone, so a new rule needs no change here, and a
// file holds only what its optimizer has.

// How a field's value is stored: the tag byte before it in the options block.
enum class FieldEncoding : std::uint8_t {
  f64 = 1,        ///< a double, 8 bytes
  boolean = 2,    ///< a bool, one byte 0 or 1
  enum_code = 3,  ///< an enumeration's code, one byte
};

template <class T>
constexpr FieldEncoding encoding_of() {
  if constexpr (std::is_same<T, double>::value) {
    return FieldEncoding::f64;
  } else if constexpr (std::is_same<T, bool>::value) {
    return FieldEncoding::boolean;
  } else {
    static_assert(std::is_enum<T>::value, "a checkpointed field is a double, a bool or an enumeration");
    return FieldEncoding::enum_code;
  }
}

inline std::string describe_encoding(std::uint8_t tag) {
  switch (tag) {
    case static_cast<std::uint8_t>(FieldEncoding::f64): return "f64";
    case static_cast<std::uint8_t>(FieldEncoding::boolean): return "u8 bool";
    case static_cast<std::uint8_t>(FieldEncoding::enum_code): return "u8 enum code";
    default: return "unknown encoding " + std::to_string(tag);
  }
}

// What a declaration lists: each field's name and encoding, in order.
struct DeclaredField {
  const char* name;
  std::uint8_t encoding;
};

template <class Options>
std::vector<DeclaredField> declared_options() {
  std::vector<DeclaredField> fields;
  for_each_option_field<Options>([&](const auto& field) {
    using T = typename std::decay_t<decltype(field)>::value_type;
    fields.push_back({field.name, static_cast<std::uint8_t>(encoding_of<T>())});
  });
  return fields;
}

template <class Scalars>
std::vector<DeclaredField> declared_group_scalars() {
  std::vector<DeclaredField> fields;
  for_each_group_scalar<Scalars>(
      [&](const auto& field) { fields.push_back({field.name, static_cast<std::uint8_t>(FieldEncoding::f64)}); });
  return fields;
}

// The options block: u32 count, then per field its name, its encoding tag
// and its value.
template <class Options>
void put_options(std::string& out, const Options& o) {
  put_u32(out, static_cast<std::uint32_t>(declared_options<Options>().size()));
  for_each_option_field<Options>([&](const auto& field) {
    using T = typename std::decay_t<decltype(field)>::value_type;
    put_string(out, field.name);
    put_u8(out, static_cast<std::uint8_t>(encoding_of<T>()));
    put_option_value(out, o.*field.member);
  });
}

// The group scalars block: u32 count, then per scalar its name and f64 value.
template <class Scalars>
void put_group_scalars(std::string& out, const Scalars& scalars) {
  put_u32(out, static_cast<std::uint32_t>(declared_group_scalars<Scalars>().size()));
  for_each_group_scalar<Scalars>([&](const auto& field) {
    put_string(out, field.name);
    put_f64(out, scalars.*field.member);
  });
}

// Checks a list's names (and encodings) as the file has them against the
// declaration, in order; a difference is refused naming the first field
// that differs. `where`: the list ("the file's options of group 'fc1'");
// `whose`: the optimizer as messages name it ("AdamX<float>").
inline void check_declared(const std::vector<std::string>& names, const std::vector<std::uint8_t>& encodings,
                           const std::vector<DeclaredField>& declared, const std::string& where,
                           const std::string& whose) {
  const std::size_t common = std::min(names.size(), declared.size());
  for (std::size_t i = 0; i < common; ++i)
    if (names[i] != declared[i].name)
      checkpoint_failure(where + " have " + names[i] + " where " + whose + " expects " + declared[i].name +
                         " (field " + std::to_string(i + 1) + " of " + std::to_string(declared.size()) + ")");
  if (names.size() > declared.size())
    checkpoint_failure(where + " have " + names[common] + " after the " + std::to_string(declared.size()) +
                       " field(s) " + whose + " declares (the file has " + std::to_string(names.size()) + ")");
  if (names.size() < declared.size())
    checkpoint_failure(where + " end after " + std::to_string(names.size()) + " field(s) where " + whose +
                       " expects " + declared[common].name + " (it declares " + std::to_string(declared.size()) +
                       ")");
  for (std::size_t i = 0; i < common; ++i)
    if (encodings[i] != declared[i].encoding)
      checkpoint_failure(where + " store " + names[i] + " as " + describe_encoding(encodings[i]) + " where " +
                         whose + " expects " + describe_encoding(declared[i].encoding));
}

// Reads a version-3 options block into `o`: names, encodings, count and
// order must be the declaration's.
template <class Options>
void get_options(HeaderReader& in, Options& o, const std::string& group, const std::string& whose) {
  const std::uint32_t count = in.u32("option count");
  std::vector<std::string> names;
  std::vector<std::uint8_t> encodings;
  std::vector<std::size_t> offsets;  // of each value, read once the names are known to match
  HeaderReader values = in;
  for (std::uint32_t i = 0; i < count; ++i) {
    names.push_back(in.string("option name"));
    encodings.push_back(in.u8("option encoding"));
    offsets.push_back(in.position());
    if (encodings.back() == static_cast<std::uint8_t>(FieldEncoding::f64))
      in.f64(names.back().c_str());
    else if (encodings.back() == static_cast<std::uint8_t>(FieldEncoding::boolean) ||
             encodings.back() == static_cast<std::uint8_t>(FieldEncoding::enum_code))
      in.u8(names.back().c_str());
    else
      in.malformed("option " + names.back() + " has " + describe_encoding(encodings.back()));
  }
  check_declared(names, encodings, declared_options<Options>(), "the file's options of group '" + group + "'",
                 whose);
  std::size_t i = 0;
  for_each_option_field<Options>([&](const auto& field) {
    values.seek(offsets[i++]);
    get_option_value(values, field.name, o.*field.member);
  });
}

// Reads a version-3 group scalars block into `scalars`, checked likewise.
template <class Scalars>
void get_group_scalars(HeaderReader& in, Scalars& scalars, const std::string& group, const std::string& whose) {
  const std::uint32_t count = in.u32("group scalar count");
  std::vector<std::string> names;
  std::vector<double> values;
  for (std::uint32_t i = 0; i < count; ++i) {
    names.push_back(in.string("group scalar name"));
    values.push_back(in.f64(names.back().c_str()));
  }
  check_declared(names, std::vector<std::uint8_t>(names.size(), static_cast<std::uint8_t>(FieldEncoding::f64)),
                 declared_group_scalars<Scalars>(), "the file's group scalars of group '" + group + "'", whose);
  std::size_t i = 0;
  for_each_group_scalar<Scalars>([&](const auto& field) { scalars.*field.member = values[i++]; });
}

// ---- version 2 (read only) ------------------------------------------------

// Version 2's options block: every optimizer's options in one fixed union
// layout, in this order (docs/checkpoints.md). Each slot is found by name in
// the optimizer's field list (options.hpp). An optimizer without the field
// found `absent` there, the value version 2 held there by default (AdaBound's
// and AdaMod's defaults). Version 2 let every optimizer set those fields, so
// reading accepts any value version 2 accepted there (`range`: AdaBound's or
// AdaMod's own check) and drops it; a value outside it is refused as version
// 2 refused it. The library's optimizers all have the Adam family's eleven
// fields; a rule without some of them (its options are its own: docs/design.md,
// "Options") reads any value there and drops it. This table is the one place
// that knows the layout.
enum class V2Encoding { f64, u8 };
struct V2OptionSlot {
  const char* name;
  V2Encoding encoding;
  double absent;
  OptionCheck<double> range;
};
// The Adam family's slots: every optimizer of the library has the field.
inline constexpr OptionCheck<double> kAdamFamilyField{nullptr, nullptr};
inline constexpr V2OptionSlot kV2OptionsLayout[] = {
    {"lr", V2Encoding::f64, 1e-3, kAdamFamilyField},
    {"beta1", V2Encoding::f64, 0.9, kAdamFamilyField},
    {"beta2", V2Encoding::f64, 0.999, kAdamFamilyField},
    {"beta3", V2Encoding::f64, 1.0, kAdamFamilyField},
    {"beta_norm", V2Encoding::f64, 0.99, kAdamFamilyField},
    {"eps", V2Encoding::f64, 1e-8, kAdamFamilyField},
    {"weight_decay", V2Encoding::f64, 0.0, kAdamFamilyField},
    {"decay_mode", V2Encoding::u8, 0.0, kAdamFamilyField},
    {"amsgrad", V2Encoding::u8, 0.0, kAdamFamilyField},
    {"maximize", V2Encoding::u8, 0.0, kAdamFamilyField},
    {"nonfinite", V2Encoding::u8, 0.0, kAdamFamilyField},
    {"final_lr", V2Encoding::f64, 0.1, option_range::non_negative},
    {"bound_speed", V2Encoding::f64, 1e-3, option_range::positive},
    {"beta_step", V2Encoding::f64, 0.999, option_range::rate},
};

template <class Flavour>
BasicOptions<Flavour> get_v2_options(HeaderReader& in) {
  using Options = BasicOptions<Flavour>;
  Options o;
  for (const V2OptionSlot& slot : kV2OptionsLayout) {
    const bool present = with_option_field<Options>(slot.name, [&](const auto& field) {
      get_option_value(in, field.name, o.*field.member);
    });
    if (present) continue;
    if (slot.encoding == V2Encoding::u8) {  // an Adam family flag or code: any byte, dropped
      static_cast<void>(in.u8(slot.name));
      continue;
    }
    const double value = in.f64(slot.name);
    if (slot.range.holds != nullptr && !slot.range.holds(value))
      in.malformed("invalid " + std::string(slot.name) + " = " + format_value(value) + " (" + slot.range.rule +
                   "); " + Flavour::name + " has no option " + slot.name + " and ignores it");
  }
  return o;
}

// Version 2 stores two group scalars after t, whatever the rule: γ and h
// (the Adam family's, group_scalars.hpp). A rule without one reads only the
// value the Adam family starts from there.
struct V2GroupScalar {
  const char* name;
  double absent;  // the only value a rule without it reads
};
inline constexpr V2GroupScalar kV2GroupScalars[] = {{"gamma", 1.0}, {"h", 0.0}};

// `group` is the group's name, for the message (as every other refused value names its group).
template <class Input, class Scalars>
void get_v2_group_scalars(Input& in, Scalars& scalars, const std::string& group) {
  for (const V2GroupScalar& slot : kV2GroupScalars) {
    const double value = in.f64(slot.name);
    if (!set_group_scalar(scalars, slot.name, value) && float_bits(value) != float_bits(slot.absent))
      checkpoint_failure("group '" + group + "': the group scalar " + slot.name + " = " + format_value(value) +
                         " has no place in this optimizer (it keeps none; version 2 files hold " +
                         format_value(slot.absent) + " there)");
  }
}

// ---- the header -------------------------------------------------------------

// The optimizer as messages about its declarations name it: "AdamX<float>".
template <class Scalar, class Flavour>
std::string optimizer_description() {
  return std::string(Flavour::name) + "<" + describe_scalar(scalar_code<Scalar>::value) + ">";
}

// The header block (version 3): everything but the arrays, of the groups
// `states` (whose arrays are not read: a re-sharding writes headers of
// states it never holds).
template <class Scalar, class Flavour>
std::string encode_header(const std::vector<typename Optimizer<Scalar, Flavour>::State>& states) {
  using Opt = Optimizer<Scalar, Flavour>;
  using State = typename Opt::State;
  using StateScalar = typename Opt::state_scalar_type;
  using Rule = typename Flavour::Rule;
  std::string out;
  put_string(out, Flavour::name);
  put_u8(out, scalar_code<Scalar>::value);
  put_u8(out, scalar_code<StateScalar>::value);
  put_u32(out, static_cast<std::uint32_t>(Rule::kSlots));
  for (const char* slot : Rule::slot_names) put_string(out, slot);
  put_u32(out, static_cast<std::uint32_t>(states.size()));
  for (const State& g : states) {
    put_string(out, g.name);
    put_options(out, g.options);
    put_i64(out, g.t);
    put_group_scalars(out, g.scalars());
    put_u32(out, static_cast<std::uint32_t>(g.tensors.size()));
    for (const auto& ts : g.tensors) {
      put_string(out, ts.name);
      put_i64(out, ts.rows);
      put_i64(out, ts.cols);
      put_u8(out, ts.row_major ? 1 : 0);
    }
  }
  return out;
}

// Decodes a checksummed header of format `version` (2 or 3) into group
// states with empty arrays, checking the optimizer and scalar types, and in
// version 3 the slot, option and group scalar names, on the way.
template <class Scalar, class Flavour>
std::vector<typename Optimizer<Scalar, Flavour>::State> decode_header(const std::string& bytes,
                                                                       std::size_t file_offset,
                                                                       std::uint32_t version) {
  using Opt = Optimizer<Scalar, Flavour>;
  using State = typename Opt::State;
  using StateScalar = typename Opt::state_scalar_type;
  using Rule = typename Flavour::Rule;
  HeaderReader in(bytes, file_offset);
  const std::string optimizer_name = in.string("optimizer name");
  if (optimizer_name != Flavour::name)
    checkpoint_failure("optimizer mismatch: the checkpoint was saved by '" + optimizer_name +
                       "', this optimizer is '" + Flavour::name + "'");
  const std::uint8_t param_code = in.u8("parameter type");
  const std::uint8_t state_code = in.u8("state type");
  if (param_code != scalar_code<Scalar>::value || state_code != scalar_code<StateScalar>::value)
    checkpoint_failure("scalar type mismatch: the checkpoint holds " + describe_scalar(param_code) +
                       " parameters with " + describe_scalar(state_code) +
                       " state, this optimizer has " + describe_scalar(scalar_code<Scalar>::value) +
                       " parameters with " + describe_scalar(scalar_code<StateScalar>::value) +
                       " state");
  const std::string whose = optimizer_description<Scalar, Flavour>();
  if (version >= 3) {
    const std::uint32_t slot_count = in.u32("slot count");
    std::vector<std::string> slots;
    for (std::uint32_t k = 0; k < slot_count; ++k) slots.push_back(in.string("slot name"));
    std::vector<DeclaredField> declared;
    for (const char* slot : Rule::slot_names) declared.push_back({slot, 0});
    check_declared(slots, std::vector<std::uint8_t>(slots.size(), 0), declared, "the file's state slots", whose);
  }
  const std::uint32_t group_count = in.u32("group count");
  std::vector<State> groups;
  for (std::uint32_t gi = 0; gi < group_count; ++gi) {
    State g;
    g.name = in.string("group name");
    if (version >= 3) {
      get_options(in, g.options, g.name, whose);
      g.t = in.i64("t");
      get_group_scalars(in, g.scalars(), g.name, whose);
    } else {
      g.options = get_v2_options<Flavour>(in);
      g.t = in.i64("t");
      get_v2_group_scalars(in, g.scalars(), g.name);
    }
    const std::uint32_t tensor_count = in.u32("tensor count");
    for (std::uint32_t j = 0; j < tensor_count; ++j) {
      typename State::Tensor ts;
      ts.name = in.string("tensor name");
      ts.rows = static_cast<Index>(in.i64("rows"));
      ts.cols = static_cast<Index>(in.i64("cols"));
      ts.row_major = in.boolean("row_major");
      if (ts.rows < 0 || ts.cols < 0)
        in.malformed("tensor '" + g.name + "." + ts.name + "' has a negative dimension");
      if (ts.row_major && (ts.rows <= 1 || ts.cols <= 1))
        in.malformed("tensor '" + g.name + "." + ts.name + "' is a vector marked row-major");
      g.tensors.push_back(std::move(ts));
    }
    groups.push_back(std::move(g));
  }
  if (!in.at_end()) in.malformed("unexpected bytes after the last group");
  return groups;
}

#if defined(ADAMX_CHECKPOINT_FSYNC)
// Flushes a file (or directory) to stable storage, so the rename that
// publishes a checkpoint can never be seen before its contents.
inline bool sync_path(const std::filesystem::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}
#endif

// Writes the CRC-32 so far and returns its bytes (which a later CRC may cover).
inline std::string write_crc(std::ostream& out, const Crc32& crc) {
  std::string bytes;
  put_u32(bytes, crc.value());
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

// The start of every adamx file: 8 magic bytes, a u32 version, the u32
// length of `block`, `block` and the CRC-32 of all of those. Every byte,
// the CRC's included, goes into `crc`, which the file's final CRC continues.
inline void write_checked_block(std::ostream& out, Crc32& crc, const char (&magic)[8], std::uint32_t version,
                                const std::string& block) {
  std::string preamble(magic, sizeof magic);
  put_u32(preamble, version);
  put_u32(preamble, static_cast<std::uint32_t>(block.size()));
  const auto emit = [&](const std::string& bytes) {
    crc.update(bytes.data(), bytes.size());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  emit(preamble);
  emit(block);
  const std::string block_crc = write_crc(out, crc);
  crc.update(block_crc.data(), block_crc.size());
}

// Between eval() and train() (Schedule-Free AdamW) the parameters hold the
// evaluation point and the state continues from the training point eval()
// kept: a checkpoint taken then could not resume exactly, so it is refused.
template <class Scalar, class Flavour>
void refuse_eval_mode(const Optimizer<Scalar, Flavour>& optimizer, const char* function) {
  if (optimizer.in_eval_mode())
    throw std::logic_error(std::string(function) + ": the optimizer is in eval mode (eval()); call train(params) "
                           "before saving, and eval(params) again after if needed");
}

}  // namespace detail

/// Writes the optimizer's whole state (every group's options, t, γ, h, m, v,
/// v_max, with group and tensor names and shapes) to `out` in adamx's
/// checkpoint format. The optimizer is not changed. Throws CheckpointError if
/// the stream fails (what was written by then is incomplete).
template <class Scalar, class Flavour>
void save_checkpoint(const Optimizer<Scalar, Flavour>& optimizer, std::ostream& out) {
  detail::refuse_eval_mode(optimizer, "adamx::save_checkpoint");
  // The header from the scalars and shapes alone, the arrays written from
  // the optimizer's storage in place: saving never copies the state.
  std::vector<typename Optimizer<Scalar, Flavour>::State> headers;
  for (std::size_t g = 0; g < optimizer.num_groups(); ++g) headers.push_back(optimizer.state_without_arrays(g));
  const std::string header = detail::encode_header<Scalar, Flavour>(headers);
  if (header.size() > detail::kMaxHeaderBytes)
    throw CheckpointError("adamx::save_checkpoint: the header would be " +
                          std::to_string(header.size()) + " bytes, more than the format's " +
                          std::to_string(detail::kMaxHeaderBytes));
  Crc32 crc;
  // The header's CRC is itself covered by the final CRC.
  detail::write_checked_block(out, crc, detail::kCheckpointMagic, kCheckpointVersion, header);
  for (std::size_t g = 0; g < optimizer.num_groups(); ++g)
    for (std::size_t j = 0; j < headers[g].tensors.size(); ++j) {
      const auto ts = optimizer.state_view(g, j);
      for (int k = 0; k < Flavour::Rule::kSlots; ++k)
        detail::write_array(out, crc, ts.slot(k).data(), ts.slot(k).size());
    }
  detail::write_crc(out, crc);
  out.flush();
  if (!out) throw CheckpointError("adamx::save_checkpoint: writing to the stream failed");
}

namespace detail {

// Reads what write_checked_block wrote, after the magic bytes (which the
// caller has read and checked): the version, which must be one of
// `versions` (stored in `*found_version` if given), the block's length and
// bytes, and its checksum. `version_name` and `block_name` ("format
// version", "header") name them in messages. Returns the block, not yet
// interpreted.
inline std::string read_checked_block(CheckpointInput& input, std::initializer_list<std::uint32_t> versions,
                                      const std::string& version_name, const std::string& block_name,
                                      std::uint32_t* found_version = nullptr) {
  const std::uint32_t found = input.u32("the " + version_name);
  if (std::find(versions.begin(), versions.end(), found) == versions.end()) {
    std::string known;
    std::size_t i = 0;
    for (const std::uint32_t version : versions)
      known += (i++ == 0 ? "" : i == versions.size() ? " and " : ", ") + std::to_string(version);
    checkpoint_failure("unsupported " + version_name + " " + std::to_string(found) + " (this adamx reads " +
                       (versions.size() == 1 ? "version " : "versions ") + known + ")");
  }
  if (found_version != nullptr) *found_version = found;
  const std::uint32_t size = input.u32("the " + block_name + " length");
  if (size > kMaxHeaderBytes)
    checkpoint_failure("implausible " + block_name + " length " + std::to_string(size) + " (at most " +
                       std::to_string(kMaxHeaderBytes) + ")");
  const std::string block = input.block(size, "the " + block_name);
  const std::uint32_t computed = input.crc();
  // The block's CRC counts towards the final CRC like the bytes before it.
  const std::uint32_t stored = input.u32("the " + block_name + " checksum");
  if (kVerifyChecksums && stored != computed)
    checkpoint_failure(block_name + " checksum mismatch (stored " + hex32(stored) + ", computed " + hex32(computed) +
                       "): the file is corrupt");
  return block;
}

// Reads a checkpoint's preamble and header through `input` (positioned at
// the magic bytes) and checks magic, version and the header checksum: the
// header's bytes, not yet interpreted.
// `*version`, if given, receives the file's format version.
inline std::string read_header_bytes(CheckpointInput& input, std::uint32_t* version = nullptr) {
  char magic[sizeof detail::kCheckpointMagic];
  input.read(magic, sizeof magic, "the magic bytes");
  if (std::memcmp(magic, detail::kCheckpointMagic, sizeof magic) != 0)
    detail::checkpoint_failure("bad magic bytes: this is not an adamx checkpoint");
  return read_checked_block(input, {kCheckpointVersionLegacy, kCheckpointVersion}, "format version", "header",
                            version);
}

// read_header_bytes, decoded and checked against the optimizer and scalar
// types: the groups with empty arrays.
template <class Scalar, class Flavour>
std::vector<typename Optimizer<Scalar, Flavour>::State> read_header(CheckpointInput& input) {
  const std::uint64_t start = input.offset();
  std::uint32_t version = 0;
  const std::string header = read_header_bytes(input, &version);
  return detail::decode_header<Scalar, Flavour>(header, static_cast<std::size_t>(start) + detail::kCheckpointPreamble,
                                                version);
}

// The value checks of a decoded header, one group after another: options,
// t, gamma and h as restore() checks them, with CheckpointError's message.
// Every reader of checkpoint files runs these same checks, load_checkpoint
// and the conversions of sharded_checkpoint.hpp (which never load what they
// read), so a file one refuses the other refuses too, in the same words.
template <class Scalar, class Flavour>
void check_header_values(const std::vector<typename Optimizer<Scalar, Flavour>::State>& states) {
  for (const auto& g : states) {
    try {
      Optimizer<Scalar, Flavour>::check_scalars(g);
    } catch (const std::invalid_argument& error) {
      detail::checkpoint_failure(std::string("invalid value in the checkpoint: ") + error.what());
    }
  }
}

// Reads and validates a whole checkpoint into fresh state for `optimizer`
// without touching it; restore() of the result cannot fail. `start_offset`:
// where the checkpoint begins in its file (for messages).
template <class Scalar, class Flavour>
std::vector<typename Optimizer<Scalar, Flavour>::State> read_checkpoint(
    const Optimizer<Scalar, Flavour>& optimizer, std::istream& in, std::uint64_t start_offset = 0) {
  using Opt = Optimizer<Scalar, Flavour>;
  using State = typename Opt::State;
  detail::CheckpointInput input(in, start_offset);
  std::vector<State> states = read_header<Scalar, Flavour>(input);

  // Structure and values before the arrays: arrays are allocated only in the
  // sizes of the optimizer's own tensors, and every structural difference is
  // listed at once.
  const std::vector<std::string> differences = optimizer.structure_differences(states);
  if (!differences.empty()) {
    std::string message = "the checkpoint does not match the optimizer's groups:";
    for (const std::string& difference : differences) message += "\n  - " + difference;
    detail::checkpoint_failure(message);
  }
  check_header_values<Scalar, Flavour>(states);
  // Every tensor's slots follow in its rule's slot order (slot_names, which a
  // version-3 header lists), a
  // slot the group does not keep with its options taking no bytes.
  using Tensor = typename State::Tensor;
  for (State& g : states)
    for (auto& ts : g.tensors)
      for (int k = 0; k < Tensor::kSlots; ++k)
        if (Opt::keeps_slot(g.options, k)) ts.slot(k).setZero(ts.size());
  for (State& g : states)
    for (auto& ts : g.tensors) {
      const std::string where = "tensor '" + g.name + "." + ts.name + "'";
      for (int k = 0; k < Tensor::kSlots; ++k)
        detail::read_array(input, ts.slot(k).data(), ts.slot(k).size(), Tensor::slot_names[k] + (" of " + where));
    }
  const std::uint32_t crc = input.crc();
  const std::uint32_t stored_crc = input.u32("the checksum");
  if (kVerifyChecksums && stored_crc != crc)
    detail::checkpoint_failure("checksum mismatch (stored " + detail::hex32(stored_crc) +
                               ", computed " + detail::hex32(crc) + "): the file is corrupt");
  return states;
}

}  // namespace detail

/// Reads a checkpoint from `in` into `optimizer`, which must have the same
/// groups and tensors (names, order, shapes) as the optimizer that saved it;
/// the options, step counts, γ, h and moments all come from the checkpoint.
/// Everything is validated first; on any problem CheckpointError names it
/// and the optimizer is unchanged. Reads exactly the checkpoint's bytes, so
/// other data may follow it in the stream.
template <class Scalar, class Flavour>
void load_checkpoint(Optimizer<Scalar, Flavour>& optimizer, std::istream& in) {
  detail::refuse_eval_mode(optimizer, "adamx::load_checkpoint");
  optimizer.restore(detail::read_checkpoint(optimizer, in));
}

namespace detail {

// A test-only seam for fault injection. Every file operation the checkpoint
// writers perform asks injected_fault() first and, if it returns an errno,
// fails with it as if the system had: tests make each operation fail in turn
// and check what is left. Null unless a test sets it, where it costs a load
// and a compare per operation, next to a system call.
enum class FileOperation { create, write, sync, close, rename, remove };
inline int (*file_fault_hook)(FileOperation operation, const std::filesystem::path& path) = nullptr;
inline int injected_fault(FileOperation operation, const std::filesystem::path& path) {
  return file_fault_hook == nullptr ? 0 : file_fault_hook(operation, path);
}

// A stream buffer over a std::FILE that keeps the errno of its first failure,
// which std::ofstream loses: file errors name the OS reason. The FILE is
// unbuffered, so each failed write is seen, with its errno, when it happens.
class FileOutput : public std::streambuf {
 public:
  FileOutput() = default;
  FileOutput(const FileOutput&) = delete;
  FileOutput& operator=(const FileOutput&) = delete;
  ~FileOutput() override {
    if (file_ != nullptr) std::fclose(file_);
  }

  /// Creates (or truncates) `path`; returns 0 or the errno.
  int open(const std::filesystem::path& path) {
    path_ = path;
    if (const int error = injected_fault(FileOperation::create, path)) return error_ = error;
    errno = 0;
    file_ = std::fopen(path.string().c_str(), "wb");
    if (file_ == nullptr) return error_ = failure();
    std::setvbuf(file_, nullptr, _IONBF, 0);
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return 0;
  }
  /// The errno of the first failure (0 if none; -1 if it set none).
  int error() const { return error_; }
  /// Writes what is buffered and flushes it to stable storage; 0 or the errno.
  int sync_to_disk() {
    if (!drain()) return error_;
    if (const int error = injected_fault(FileOperation::sync, path_)) return error_ = error;
#if defined(ADAMX_CHECKPOINT_FSYNC)
    if (::fsync(::fileno(file_)) != 0) return error_ = failure();
#endif
    return 0;
  }
  /// Closes the file; 0 or the errno of the first failure.
  int close() {
    if (file_ == nullptr) return error_;
    drain();
    errno = 0;
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!closed && error_ == 0) error_ = failure();
    if (error_ == 0) error_ = injected_fault(FileOperation::close, path_);
    return error_;
  }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    if (error_ != 0 || file_ == nullptr) return false;
    const auto count = static_cast<std::size_t>(pptr() - pbase());
    if (count > 0) {
      if (const int error = injected_fault(FileOperation::write, path_)) {
        error_ = error;
        return false;
      }
    }
    errno = 0;
    if (count > 0 && std::fwrite(pbase(), 1, count, file_) != count) {
      error_ = failure();
      return false;
    }
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return true;
  }

  // errno after a failed call; -1 if the call set none, so that a failure
  // is never mistaken for success (os_reason says "no reason" for it).
  static int failure() { return errno != 0 ? errno : -1; }

  std::FILE* file_ = nullptr;
  std::filesystem::path path_;
  std::vector<char> buffer_ = std::vector<char>(kStreamChunk);
  int error_ = 0;
};

// "<what> '<path>' failed: <OS reason>".
inline std::string file_error(const std::string& what, const std::filesystem::path& path, int error) {
  return what + " '" + path.string() + "' failed: " + os_reason(error);
}

// Opens `path` for reading into `in`; throws CheckpointError "who: cannot
// open 'path': <OS reason>" if it cannot.
inline void open_for_reading(std::ifstream& in, const std::filesystem::path& path, const std::string& who) {
  errno = 0;
  in.open(path, std::ios::binary);
  if (!in) throw CheckpointError(who + ": cannot open '" + path.string() + "': " + os_reason(errno));
}

// Writes `partial` through `write(std::ostream&)` and flushes it to disk. On
// failure (of the writer too) it is removed, and file errors throw
// CheckpointError prefixed by `who`, ending with the OS reason.
template <class Writer>
void write_synced_file(const std::filesystem::path& partial, const std::string& who, Writer&& write) {
  const auto remove_partial = [&] {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
  };
  const auto fail = [&](const std::string& what) {
    remove_partial();
    throw CheckpointError(who + ": " + what);
  };
  {
    FileOutput file;
    if (const int error = file.open(partial))
      fail("cannot create '" + partial.string() + "': " + os_reason(error));
    std::ostream out(&file);
    try {
      write(out);
    } catch (const CheckpointError& error) {
      // A failed write surfaces as the writer's "stream failed"; the file
      // knows why.
      if (file.error() != 0) fail(file_error("writing", partial, file.error()));
      fail("writing '" + partial.string() + "' failed: " + error.what());
    } catch (...) {
      remove_partial();
      throw;
    }
    out.flush();
    if (file.error() != 0) fail(file_error("writing", partial, file.error()));
    if (const int error = file.sync_to_disk())
      fail("flushing '" + partial.string() + "' to disk failed: " + os_reason(error));
    if (const int error = file.close()) fail(file_error("closing", partial, error));
  }
}

// write_synced_file into `path` + ".partial"; returns that path.
template <class Writer>
std::filesystem::path write_partial_file(const std::filesystem::path& path, const std::string& who, Writer&& write) {
  std::filesystem::path partial = path;
  partial += ".partial";
  write_synced_file(partial, who, std::forward<Writer>(write));
  return partial;
}

// Makes the directory entries of `path`'s directory (a file just created or
// renamed there) durable. Best effort: where it fails, the files themselves
// are complete, and only a power cut could lose the entry.
inline void sync_directory_of(const std::filesystem::path& path) {
#if defined(ADAMX_CHECKPOINT_FSYNC)
  detail::sync_path(path.has_parent_path() ? path.parent_path() : std::filesystem::path("."), true);
#else
  (void)path;
#endif
}

// Renames a file written by write_partial_file over `path` and makes the
// rename durable.
inline void publish_file(const std::filesystem::path& partial, const std::filesystem::path& path,
                         const std::string& who) {
  std::error_code error;
  if (const int injected = injected_fault(FileOperation::rename, path))
    error.assign(injected, std::generic_category());
  else
    std::filesystem::rename(partial, path, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    throw CheckpointError(who + ": renaming '" + partial.string() + "' to '" + path.string() +
                          "' failed: " + error.message());
  }
  sync_directory_of(path);
}

// Writes a file the crash-safe way: into `path` + ".partial", flushed to
// disk, then renamed over `path`, so `path` is the previous file or the
// complete new one, never a half-written one.
template <class Writer>
void save_file_atomically(const std::filesystem::path& path, const std::string& who, Writer&& write) {
  publish_file(write_partial_file(path, who, std::forward<Writer>(write)), path, who);
}

}  // namespace detail

/// Saves to a file: writes `path` + ".partial", flushes it to disk, then
/// renames it over `path`, so a crash mid-save leaves the previous checkpoint
/// (or none), never a half-written one under the real name.
template <class Scalar, class Flavour>
void save_checkpoint(const Optimizer<Scalar, Flavour>& optimizer, const std::filesystem::path& path) {
  detail::refuse_eval_mode(optimizer, "adamx::save_checkpoint");
  detail::save_file_atomically(path, "adamx::save_checkpoint",
                               [&](std::ostream& out) { save_checkpoint(optimizer, out); });
}

/// Loads from a file, which must hold exactly one checkpoint (trailing bytes
/// are refused as corruption). Same guarantees as the stream version.
template <class Scalar, class Flavour>
void load_checkpoint(Optimizer<Scalar, Flavour>& optimizer, const std::filesystem::path& path) {
  detail::refuse_eval_mode(optimizer, "adamx::load_checkpoint");
  std::ifstream in;
  detail::open_for_reading(in, path, "adamx::load_checkpoint");
  try {
    auto states = detail::read_checkpoint(optimizer, in);
    if (in.peek() != std::char_traits<char>::eof())
      detail::checkpoint_failure("unexpected bytes after the checkpoint's checksum");
    optimizer.restore(states);
  } catch (const CheckpointError& error) {
    throw CheckpointError(std::string(error.what()) + " (file '" + path.string() + "')");
  }
}

// ---- reading the header alone ------------------------------------------------
//
// A program that does not know which optimizer wrote a file (a converter, a
// viewer, the Python package's adamx.checkpoint) reads the header first,
// builds the optimizer it names with the groups it lists, and then loads the
// file into it with load_checkpoint, which checks everything again.

/// What the header of a checkpoint file says about the optimizer that wrote it.
struct CheckpointHeader {
  std::uint32_t version = 0;   ///< the file's format version (kCheckpointVersion or kCheckpointVersionLegacy)
  std::string optimizer;       ///< the optimizer's name, its flavour's `name` ("AdamX")
  std::string parameter_type;  ///< "float", "double", "bfloat16" or "half"
  std::string state_type;      ///< the type of the state arrays, "float" or "double"
};

/// Reads the header of the checkpoint file `path` alone: the magic bytes,
/// the format version and the header's checksum are checked, and the
/// optimizer's name and scalar types returned; the rest of the file is not
/// read. Throws CheckpointError in load_checkpoint's words (it is the start of
/// loading), naming the file.
inline CheckpointHeader read_checkpoint_header(const std::filesystem::path& path) {
  std::ifstream in;
  detail::open_for_reading(in, path, "adamx::load_checkpoint");
  try {
    detail::CheckpointInput input(in);
    CheckpointHeader out;
    const std::string header = detail::read_header_bytes(input, &out.version);
    detail::HeaderReader reader(header, detail::kCheckpointPreamble);
    out.optimizer = reader.string("optimizer name");
    out.parameter_type = detail::describe_scalar(reader.u8("parameter type"));
    out.state_type = detail::describe_scalar(reader.u8("state type"));
    return out;
  } catch (const CheckpointError& error) {
    throw CheckpointError(std::string(error.what()) + " (file '" + path.string() + "')");
  }
}

/// The groups of the checkpoint file `path` as load_checkpoint reads them
/// for an Optimizer<Scalar, Flavour>, without the arrays (as
/// state_without_arrays gives them): names, shapes and memory orders,
/// options, t and group scalars. The header is checked as load_checkpoint
/// checks it (optimizer and scalar types, the names the optimizer declares,
/// every value), with its messages; the arrays and the final checksum are
/// not read, so only load_checkpoint into an optimizer built with these
/// groups vouches for the whole file.
template <class Scalar, class Flavour>
std::vector<typename Optimizer<Scalar, Flavour>::State> read_checkpoint_groups(const std::filesystem::path& path) {
  std::ifstream in;
  detail::open_for_reading(in, path, "adamx::load_checkpoint");
  try {
    detail::CheckpointInput input(in);
    auto states = detail::read_header<Scalar, Flavour>(input);
    detail::check_header_values<Scalar, Flavour>(states);
    return states;
  } catch (const CheckpointError& error) {
    throw CheckpointError(std::string(error.what()) + " (file '" + path.string() + "')");
  }
}

ADAMX_NAMESPACE_END  // namespace adamx
