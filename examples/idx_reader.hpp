// idx_reader.hpp - load gzip-compressed IDX files (the MNIST / Fashion-MNIST format).
//
// IDX layout: a big-endian int32 magic number (0x00000803 for a 3-d array of
// unsigned bytes, i.e. images; 0x00000801 for a 1-d array, i.e. labels), then
// one big-endian int32 per dimension, then the raw unsigned bytes in row-major
// order. zlib's gzread also reads an uncompressed file unchanged, so both
// "foo-idx3-ubyte.gz" and a gunzipped copy work.
//
// Every check throws std::runtime_error whose message starts with the path, so
// a corrupt or truncated download is reported as such rather than as garbage
// accuracy later on.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace idx {

// Images stored one after another, each rows*cols bytes in row-major order.
struct Images {
  std::size_t count = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<std::uint8_t> pixels;  // count * rows * cols bytes

  std::size_t pixels_per_image() const { return rows * cols; }
};

namespace detail {

constexpr std::uint32_t kMagicUbyte1d = 0x00000801;  // labels
constexpr std::uint32_t kMagicUbyte3d = 0x00000803;  // images

// Refuse headers that would make us allocate absurd amounts of memory: the
// largest real IDX file of this family is well under 100 MB uncompressed.
constexpr std::size_t kMaxPayloadBytes = std::size_t{1} << 30;

[[noreturn]] inline void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

inline GzFile open(const std::string& path) {
  errno = 0;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    fail(path, std::string("cannot open: ") + (errno != 0 ? std::strerror(errno) : "gzopen failed"));
  }
  return GzFile(f);
}

// Reads up to n bytes, looping because gzread takes an unsigned int length and
// may return less than asked. Returns the number of bytes actually read.
inline std::size_t read_some(gzFile f, const std::string& path, void* dst, std::size_t n) {
  auto* out = static_cast<unsigned char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const std::size_t chunk = std::min<std::size_t>(n - done, std::size_t{1} << 24);
    const int got = gzread(f, out + done, static_cast<unsigned>(chunk));
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      std::string what = msg != nullptr ? msg : "unknown zlib error";
      if (what.compare(0, path.size() + 2, path + ": ") == 0) what.erase(0, path.size() + 2);  // zlib prefixes the path
      fail(path, "read error (corrupt gzip data?): " + what);
    }
    if (got == 0) break;  // end of file
    done += static_cast<std::size_t>(got);
  }
  return done;
}

inline void read_exact(gzFile f, const std::string& path, void* dst, std::size_t n, const char* what) {
  const std::size_t got = read_some(f, path, dst, n);
  if (got != n) {
    fail(path, std::string("truncated ") + what + ": expected " + std::to_string(n) + " bytes, got " +
                   std::to_string(got));
  }
}

inline std::uint32_t read_be32(gzFile f, const std::string& path, const char* what) {
  unsigned char b[4];
  read_exact(f, path, b, sizeof b, what);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

inline std::string hex32(std::uint32_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x00000000";
  for (int i = 9; i >= 2; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 0xf];
  return s;
}

// Reads the header (magic + dims), checks it, then reads exactly the payload
// and makes sure nothing follows it.
inline std::vector<std::uint8_t> read_ubyte_array(const std::string& path, std::uint32_t expected_magic,
                                                  std::vector<std::size_t>& dims) {
  GzFile file = open(path);
  gzFile f = file.get();

  const std::uint32_t magic = read_be32(f, path, "header");
  if (magic != expected_magic) {
    fail(path, "bad magic number " + hex32(magic) + ", expected " + hex32(expected_magic) +
                   (expected_magic == kMagicUbyte3d ? " (unsigned-byte images, 3 dims)"
                                                    : " (unsigned-byte labels, 1 dim)"));
  }

  const std::size_t ndims = magic & 0xffu;
  dims.assign(ndims, 0);
  std::size_t total = 1;
  for (std::size_t d = 0; d < ndims; ++d) {
    const std::uint32_t n = read_be32(f, path, "header");
    if (n == 0 || n > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max())) {
      fail(path, "dimension " + std::to_string(d + 1) + " of " + std::to_string(ndims) + " has invalid size " +
                     std::to_string(n));
    }
    dims[d] = n;
    if (total > kMaxPayloadBytes / n) {
      fail(path, "header claims more than " + std::to_string(kMaxPayloadBytes) + " bytes of data");
    }
    total *= n;
  }

  std::vector<std::uint8_t> data(total);
  read_exact(f, path, data.data(), total, "data");

  unsigned char extra = 0;
  if (read_some(f, path, &extra, 1) != 0) {
    fail(path, "unexpected trailing bytes after the " + std::to_string(total) + " bytes the header announces");
  }
  return data;
}

}  // namespace detail

// Loads an images file (magic 0x00000803: count x rows x cols unsigned bytes).
inline Images read_images(const std::string& path) {
  std::vector<std::size_t> dims;
  Images img;
  img.pixels = detail::read_ubyte_array(path, detail::kMagicUbyte3d, dims);
  img.count = dims[0];
  img.rows = dims[1];
  img.cols = dims[2];
  return img;
}

// The whole decompressed content of a gzip file (or of a plain file, which
// gzread passes through), at most kMaxPayloadBytes: for small text data such
// as the UCI digits CSV.
inline std::vector<std::uint8_t> read_gzip(const std::string& path) {
  detail::GzFile file = detail::open(path);
  std::vector<std::uint8_t> data;
  std::uint8_t buffer[1 << 16];
  std::size_t got = 0;
  while ((got = detail::read_some(file.get(), path, buffer, sizeof buffer)) > 0) {
    data.insert(data.end(), buffer, buffer + got);
    if (data.size() > detail::kMaxPayloadBytes) detail::fail(path, "larger than expected");
  }
  return data;
}

// Loads a labels file (magic 0x00000801: count unsigned bytes).
inline std::vector<std::uint8_t> read_labels(const std::string& path) {
  std::vector<std::size_t> dims;
  return detail::read_ubyte_array(path, detail::kMagicUbyte1d, dims);
}

}  // namespace idx
