// The inputs of the PyTorch golden vectors, regenerated bit for bit without
// Python. tools/torch_golden.py implements the same functions; the data files
// record a hash of the inputs PyTorch saw, which the tests check, so a drift
// between the two implementations fails loudly instead of comparing
// different problems.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace golden {

/// Vigna's splitmix64: a 64-bit counter through a fixed mixer.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// An integer in [−2^20, 2^20): the top 21 bits, centred.
  std::int64_t int21() { return static_cast<std::int64_t>(next() >> 43) - (std::int64_t{1} << 20); }

 private:
  std::uint64_t state_;
};

/// Gradient regimes; every value is k·2^e with |k| < 2^21, exact in float.
enum Regime : int { kNoise = 0, kDriftDecay = 1, kTiny = 2, kBursts = 3 };

/// Gradient of element `element` of a tensor in `regime` at step t (≥ 1),
/// from the stream's next integer k.
inline double gradient_value(int regime, std::int64_t k, std::int64_t element, std::int64_t t) {
  switch (regime) {
    case kNoise: return std::ldexp(static_cast<double>(k), -20);
    case kDriftDecay:
      return std::ldexp(static_cast<double>(k + ((element % 7) - 3) * (std::int64_t{1} << 18)),
                        static_cast<int>(-20 - t / 25));
    case kTiny: return (t >= 100 && t < 140) ? 0.0 : std::ldexp(static_cast<double>(k), -47);
    case kBursts: return std::ldexp(static_cast<double>(k), t % 50 == 0 ? -12 : -24);
    default: return std::nan("");
  }
}

/// n values in [−1, 1): the initial parameters, and the clipping tests' inputs (scaled).
inline std::vector<double> uniform_values(SplitMix64& rng, std::size_t n, int exponent = -20) {
  std::vector<double> out(n);
  for (double& x : out) x = std::ldexp(static_cast<double>(rng.int21()), exponent);
  return out;
}

/// 64-bit FNV-1a over the little-endian bytes of `values` stored as Scalar.
template <class Scalar>
std::uint64_t fnv1a64(const std::vector<double>& values, std::uint64_t h = 0xCBF29CE484222325ull) {
  for (const double x : values) {
    const Scalar y = static_cast<Scalar>(x);
    unsigned char bytes[sizeof(Scalar)];
    std::memcpy(bytes, &y, sizeof y);
    for (const unsigned char b : bytes) h = (h ^ b) * 0x100000001B3ull;
  }
  return h;
}

}  // namespace golden
