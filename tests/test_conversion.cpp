// The vectorised bfloat16/half <-> float conversions of the element passes
// (simd.hpp, kernel_passes.hpp), on every instruction set this machine runs
// (isa.hpp), against Eigen's scalar conversions, which define the library's
// rounding (the scalar lanes of an update rule store through static_cast,
// kernel_passes.hpp). Exact: every result is compared bit for bit, NaN
// payloads included.
//   widening:  all 65536 inputs of each type;
//   narrowing: every one of the 2^32 float bit patterns in an optimised build
//              (about 20 s with -O2); with sanitizers or without
//              optimisation, where that would take far longer, every float
//              whose bits are a multiple of a prime stride plus every
//              boundary case below and its 64 neighbours on either side.
#include <gtest/gtest.h>

#include <adamx/kernel.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
constexpr bool kInstrumented = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
constexpr bool kInstrumented = true;
#else
constexpr bool kInstrumented = false;
#endif
#else
constexpr bool kInstrumented = false;
#endif

#if defined(__OPTIMIZE__)
constexpr bool kOptimised = true;
#else
constexpr bool kOptimised = false;
#endif

constexpr bool kExhaustive = kOptimised && !kInstrumented;

float float_from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
std::uint32_t bits_of(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}
template <class Narrow>
std::uint16_t bits_of(Narrow x) {
  std::uint16_t bits;
  static_assert(sizeof(Narrow) == sizeof bits, "a 16-bit type");
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}
template <class Narrow>
Narrow narrow_from_bits(std::uint16_t bits) {
  Narrow x;
  std::memcpy(static_cast<void*>(&x), &bits, sizeof bits);  // a 16-bit struct, standard layout
  return x;
}

std::string hex(std::uint32_t x) {
  std::ostringstream out;
  out << "0x" << std::hex << x;
  return out.str();
}

// Float bit patterns where rounding to bfloat16 or half changes behaviour.
std::vector<std::uint32_t> boundary_floats() {
  std::vector<std::uint32_t> magnitudes = {
      0x00000000, 0x00000001, 0x007FFFFF, 0x00800000,  // zero, float subnormals, FLT_MIN
      0x7F7FFFFF, 0x7F800000,                          // FLT_MAX, Inf
      0x7F800001, 0x7FBFFFFF, 0x7FC00000, 0x7FC00001,  // signalling and quiet NaNs
      0x7FFFFFFF, 0x7F80FFFF, 0x7FC0FFFF, 0x7FFF0000,  // NaN payloads in either half
      0x3F800000, 0x3F808000, 0x3F818000, 0x3F807FFF,  // bfloat16 ties (to even: down, up) and below
      0x3F808001, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF,  // above a tie; the ties into bfloat16 Inf
      0x477FE000, 0x477FEFFF, 0x477FF000, 0x47800000,  // 65504 = half max, the tie to Inf, 2^16
      0x38800000, 0x387FFFFF, 0x387FE000, 0x387FF000,  // half min normal 2^-14 and below it
      0x33800000, 0x33000000, 0x33000001, 0x33C00000,  // 2^-24, its half-tie 2^-25, 1.5·2^-24
      0x34400000, 0x34200000, 0x32FFFFFF, 0x3A801000,  // subnormal ties to even; a normal half tie
  };
  std::vector<std::uint32_t> all;
  for (const std::uint32_t m : magnitudes)
    for (const std::uint32_t sign : {0u, 0x80000000u}) all.push_back(m | sign);
  return all;
}

void print_instruction_sets() {
  std::string sets;
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets())
    sets += std::string(sets.empty() ? "" : ", ") + adamx::instruction_set_name(set);
  std::printf("checked on: %s\n", sets.c_str());
}

// Converts `bits` with the conversions of every instruction set this
// machine runs and counts mismatches with Eigen's scalar cast (computed
// once), recording the first few.
template <class Narrow>
void check_narrowing(const std::vector<std::uint32_t>& bits, std::uint64_t& mismatches,
                     std::vector<std::string>& examples) {
  std::vector<float> in(bits.size());
  std::vector<std::uint16_t> expected(bits.size());
  std::vector<Narrow> out(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) {
    in[i] = float_from_bits(bits[i]);
    expected[i] = bits_of(static_cast<Narrow>(in[i]));
  }
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets()) {
    adamx::set_instruction_set(set);
    adamx::detail::convert_block(in.data(), out.data(), static_cast<Eigen::Index>(in.size()));
    for (std::size_t i = 0; i < bits.size(); ++i) {
      if (bits_of(out[i]) != expected[i]) {
        ++mismatches;
        if (examples.size() < 5)
          examples.push_back(std::string(adamx::instruction_set_name(set)) + ": " + hex(bits_of(in[i])) + " -> " +
                             hex(bits_of(out[i])) + ", Eigen " + hex(expected[i]));
      }
    }
  }
}

template <class Narrow>
void narrowing_matches_eigen() {
  const adamx::InstructionSet before = adamx::instruction_set();
  std::uint64_t mismatches = 0;
  std::vector<std::string> examples;
  std::vector<std::uint32_t> batch;
  batch.reserve(1 << 16);
  const auto flush = [&] {
    while (batch.size() % 8 != 0) batch.push_back(0);
    check_narrowing<Narrow>(batch, mismatches, examples);
    batch.clear();
  };
  for (const std::uint32_t b : boundary_floats())
    for (std::uint32_t d = 0; d <= 128; ++d) batch.push_back(b - 64 + d);
  flush();
  // 257 is prime, so the sample meets every residue class of the low bits
  // (mantissa patterns) as well as every exponent.
  const std::uint64_t stride = kExhaustive ? 1 : 257;
  std::uint64_t checked = 0;
  for (std::uint64_t b = 0; b <= 0xFFFFFFFFu; b += stride) {
    batch.push_back(static_cast<std::uint32_t>(b));
    ++checked;
    if (batch.size() == (1 << 16)) flush();
  }
  flush();
  std::ostringstream first;
  for (const std::string& e : examples) first << "\n  " << e;
  adamx::set_instruction_set(before);
  EXPECT_EQ(mismatches, 0u) << "of " << checked << " floats (stride " << stride << ") on every instruction set"
                            << ", first mismatches:" << first.str();
  print_instruction_sets();
}

template <class Narrow>
void widening_matches_eigen() {
  std::vector<Narrow> in(65536);
  std::vector<float> out(in.size());
  for (std::uint32_t k = 0; k < 65536; ++k) in[k] = narrow_from_bits<Narrow>(static_cast<std::uint16_t>(k));
  adamx::detail::convert_block(in.data(), out.data(), static_cast<Eigen::Index>(in.size()));
  int mismatches = 0;
  for (std::size_t k = 0; k < in.size(); ++k) {
    const std::uint32_t expected = bits_of(static_cast<float>(in[k]));
    if (bits_of(out[k]) != expected && ++mismatches <= 5)
      ADD_FAILURE() << "input " << hex(bits_of(in[k])) << " -> " << hex(bits_of(out[k])) << ", Eigen "
                    << hex(expected);
  }
  EXPECT_EQ(mismatches, 0);
}

// Runs check() once on each instruction set this machine runs, with that
// set active, and says which ones ran.
template <class Check>
void on_every_instruction_set(Check check) {
  const adamx::InstructionSet before = adamx::instruction_set();
  std::string ran;
  for (const adamx::InstructionSet set : adamx::supported_instruction_sets()) {
    SCOPED_TRACE(std::string("instruction set ") + adamx::instruction_set_name(set));
    adamx::set_instruction_set(set);
    check();
    ran += std::string(ran.empty() ? "" : ", ") + adamx::instruction_set_name(set);
  }
  adamx::set_instruction_set(before);
  std::printf("checked on: %s\n", ran.c_str());
}

TEST(Conversion, BFloat16WideningMatchesEigenForAllInputs) {
  on_every_instruction_set(widening_matches_eigen<Eigen::bfloat16>);
}
TEST(Conversion, HalfWideningMatchesEigenForAllInputs) { on_every_instruction_set(widening_matches_eigen<Eigen::half>); }

TEST(Conversion, BFloat16NarrowingMatchesEigen) { narrowing_matches_eigen<Eigen::bfloat16>(); }
TEST(Conversion, HalfNarrowingMatchesEigen) { narrowing_matches_eigen<Eigen::half>(); }

// The boundary list is only useful if it holds what it claims: spot-check
// that Eigen itself treats a few of them as described above.
TEST(Conversion, BoundaryCasesAreTheBoundaries) {
  EXPECT_EQ(bits_of(static_cast<Eigen::bfloat16>(float_from_bits(0x3F808000))), 0x3F80);  // tie, even
  EXPECT_EQ(bits_of(static_cast<Eigen::bfloat16>(float_from_bits(0x3F818000))), 0x3F82);  // tie, odd
  EXPECT_EQ(bits_of(static_cast<Eigen::bfloat16>(float_from_bits(0x7F7F8000))), 0x7F80);  // to Inf
  EXPECT_EQ(bits_of(static_cast<Eigen::half>(65504.0f)), 0x7BFF);                       // half max
  EXPECT_EQ(bits_of(static_cast<Eigen::half>(float_from_bits(0x477FF000))), 0x7C00);    // tie to Inf
  EXPECT_EQ(bits_of(static_cast<Eigen::half>(float_from_bits(0x33000000))), 0x0000);    // 2^-25: to 0
  EXPECT_EQ(bits_of(static_cast<Eigen::half>(float_from_bits(0x33C00000))), 0x0002);    // 1.5·2^-24
  EXPECT_EQ(bits_of(static_cast<Eigen::half>(std::numeric_limits<float>::quiet_NaN())) & 0x7C00,
            0x7C00);
}

}  // namespace
