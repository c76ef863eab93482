// The lane operations that need more than chunk.hpp's elementwise
// arithmetic, written once with intrinsics for the targets that have them
// and a plain loop for the rest (all always inlined, see unoptimised_builds.hpp):
//   * s's lanes: Eigen 3.4 converts float to double one element at a time
//     through memory; the conversion instructions do it per register.
//   * the magnitude test of the skip/error policies' checking pass.
//   * bfloat16 and half to and from float: Eigen 3.4 converts them one
//     element at a time, which made a bfloat16 step 2-3x slower than a float
//     one on SSE2. These do eight at once in registers and give exactly the
//     bits Eigen's scalar conversions give (tests/test_conversion.cpp checks
//     every 16-bit input and every float or a dense sample of them), so a
//     parameter stored by the vectorised pass is the one the scalar rule stores.
// All operate on kNormLanes = 8 consecutive values.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdint>

#include "adamx/abi.hpp"
#include "adamx/unoptimised_builds.hpp"

#if defined(__AVX__) || defined(__F16C__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

ADAMX_NAMESPACE_BEGIN
namespace detail {

/// lanes[k] += double(g[k])² for k < 8 (exact squares for float g).
ADAMX_ALWAYS_INLINE void add_squares8(const float* g, double* lanes) {
#if defined(__AVX__)
  const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(g));
  const __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(g + 4));
  _mm256_storeu_pd(lanes, _mm256_add_pd(_mm256_loadu_pd(lanes), _mm256_mul_pd(lo, lo)));
  _mm256_storeu_pd(lanes + 4, _mm256_add_pd(_mm256_loadu_pd(lanes + 4), _mm256_mul_pd(hi, hi)));
#elif defined(__SSE2__)
  for (int k = 0; k < 8; k += 4) {
    const __m128 x = _mm_loadu_ps(g + k);
    const __m128d a = _mm_cvtps_pd(x);
    const __m128d b = _mm_cvtps_pd(_mm_movehl_ps(x, x));
    _mm_storeu_pd(lanes + k, _mm_add_pd(_mm_loadu_pd(lanes + k), _mm_mul_pd(a, a)));
    _mm_storeu_pd(lanes + k + 2, _mm_add_pd(_mm_loadu_pd(lanes + k + 2), _mm_mul_pd(b, b)));
  }
#else
  for (int k = 0; k < 8; ++k) lanes[k] += static_cast<double>(g[k]) * static_cast<double>(g[k]);
#endif
}

ADAMX_ALWAYS_INLINE void add_squares8(const double* g, double* lanes) {
  // Plain doubles: a loop the compiler vectorises (no conversion, no sqrt).
  for (int k = 0; k < 8; ++k) lanes[k] += g[k] * g[k];
}

/// Whether |x[k]| ≤ bound for every k < 8; false if any x[k] is NaN.
ADAMX_ALWAYS_INLINE bool all_within8(const float* x, float bound) {
#if defined(__SSE2__)
  const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
  const __m128 b = _mm_set1_ps(bound);
  const __m128 lo = _mm_cmple_ps(_mm_and_ps(_mm_loadu_ps(x), magnitude), b);
  const __m128 hi = _mm_cmple_ps(_mm_and_ps(_mm_loadu_ps(x + 4), magnitude), b);
  return _mm_movemask_ps(_mm_and_ps(lo, hi)) == 0xF;
#else
  bool within = true;
  for (int k = 0; k < 8; ++k) within = within && std::abs(x[k]) <= bound;
  return within;
#endif
}

ADAMX_ALWAYS_INLINE bool all_within8(const double* x, double bound) {
#if defined(__SSE2__)
  const __m128d magnitude = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffff));
  const __m128d b = _mm_set1_pd(bound);
  __m128d within = _mm_castsi128_pd(_mm_set1_epi32(-1));
  for (int k = 0; k < 8; k += 2)
    within = _mm_and_pd(within, _mm_cmple_pd(_mm_and_pd(_mm_loadu_pd(x + k), magnitude), b));
  return _mm_movemask_pd(within) == 0x3;
#else
  bool within = true;
  for (int k = 0; k < 8; ++k) within = within && std::abs(x[k]) <= bound;
  return within;
#endif
}

// ---- bfloat16 and half <-> float -------------------------------------------

#if defined(__SSE2__)
namespace sse2 {

ADAMX_ALWAYS_INLINE __m128i load8x16(const void* x) { return _mm_loadu_si128(static_cast<const __m128i*>(x)); }

// Eight floats from two registers. With AVX, Eigen reads a chunk of eight
// floats as one 32-byte load, which two 16-byte stores cannot forward to (a
// stall of about a dozen cycles per chunk), so the halves are joined first.
ADAMX_ALWAYS_INLINE void store8(float* out, __m128 lo, __m128 hi) {
#if defined(__AVX__)
  _mm256_storeu_ps(out, _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1));
#else
  _mm_storeu_ps(out, lo);
  _mm_storeu_ps(out + 4, hi);
#endif
}

// Eight 16-bit values held sign-extended in 32-bit lanes (two registers),
// stored as eight 16-bit values. SSE2 has only a signed saturating pack, which
// keeps exactly the values that are sign-extended 16-bit ones; the converters
// below produce them so (an arithmetic shift or a sign spread with srai).
ADAMX_ALWAYS_INLINE void store8x16(__m128i lo, __m128i hi, void* out) {
  _mm_storeu_si128(static_cast<__m128i*>(out), _mm_packs_epi32(lo, hi));
}

ADAMX_ALWAYS_INLINE __m128i select(__m128i mask, __m128i if_set, __m128i otherwise) {
  return _mm_or_si128(_mm_and_si128(mask, if_set), _mm_andnot_si128(mask, otherwise));
}

// Four floats' bits as bfloat16 bits (sign-extended in 32-bit lanes), as Eigen's
// float_to_bfloat16_rtne<false>: NaN becomes the quiet NaN 0x7FC0 with the
// input's sign; everything else rounds to nearest, ties to even, by adding
// 0x7FFF plus the lowest kept bit and truncating (which carries into the
// exponent and reaches ±Inf exactly when the rounded value overflows).
// (No sum wraps: a non-NaN float's bits are at most 0xFF800000.)
ADAMX_ALWAYS_INLINE __m128i float_to_bfloat16_bits(__m128 f) {
  const __m128i bits = _mm_castps_si128(f);
  const __m128i top = _mm_srai_epi32(bits, 16);
  const __m128i lsb = _mm_and_si128(top, _mm_set1_epi32(1));
  const __m128i rounded =
      _mm_srai_epi32(_mm_add_epi32(_mm_add_epi32(bits, _mm_set1_epi32(0x7FFF)), lsb), 16);
  const __m128i quiet_nan = _mm_or_si128(
      _mm_and_si128(top, _mm_set1_epi32(static_cast<int>(0xFFFF8000u))), _mm_set1_epi32(0x7FC0));
  return select(_mm_castps_si128(_mm_cmpunord_ps(f, f)), quiet_nan, rounded);
}

#if !defined(EIGEN_HAS_FP16_C)
// Four half values (zero-extended in 32-bit lanes) as float bits, as Eigen's
// scalar half_to_float without F16C: move exponent and mantissa into place
// and rebias; Inf/NaN get the float's all-ones exponent (payload kept);
// zeros and subnormals are renormalised by one exact float subtraction.
ADAMX_ALWAYS_INLINE __m128 half_bits_to_float(__m128i h) {
  const __m128i shifted_exponent = _mm_set1_epi32(0x7C00 << 13);
  __m128i o = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7FFF)), 13);
  const __m128i exponent = _mm_and_si128(o, shifted_exponent);
  o = _mm_add_epi32(o, _mm_set1_epi32((127 - 15) << 23));
  const __m128i inf_or_nan = _mm_cmpeq_epi32(exponent, shifted_exponent);
  const __m128i zero_or_subnormal = _mm_cmpeq_epi32(exponent, _mm_setzero_si128());
  const __m128i special = _mm_add_epi32(o, _mm_set1_epi32((128 - 16) << 23));
  const __m128i renormalised = _mm_castps_si128(
      _mm_sub_ps(_mm_castsi128_ps(_mm_add_epi32(o, _mm_set1_epi32(1 << 23))),
                 _mm_castsi128_ps(_mm_set1_epi32(113 << 23))));
  o = select(inf_or_nan, special, select(zero_or_subnormal, renormalised, o));
  return _mm_castsi128_ps(
      _mm_or_si128(o, _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16)));
}

// Four floats' bits as half bits (sign-extended in 32-bit lanes), as Eigen's scalar
// float_to_half_rtne without F16C: ≥ 2^16 in magnitude gives Inf (or the
// quiet NaN 0x7E00 for a NaN); below 2^-14 the value is aligned by adding
// 0.5f, whose rounding (to nearest even) yields the subnormal; otherwise the
// exponent is rebiased and the mantissa rounded to nearest even by adding
// 0xFFF plus the lowest kept bit. The sign is put back last. All compares are
// between non-negative 32-bit values, so the signed compares SSE2 has are exact.
ADAMX_ALWAYS_INLINE __m128i float_to_half_bits(__m128 f) {
  const __m128i bits = _mm_castps_si128(f);
  const __m128i sign = _mm_and_si128(bits, _mm_set1_epi32(static_cast<int>(0x80000000u)));
  const __m128i a = _mm_xor_si128(bits, sign);
  const __m128i overflow = _mm_cmpgt_epi32(a, _mm_set1_epi32(((127 + 16) << 23) - 1));
  const __m128i nan = _mm_cmpgt_epi32(a, _mm_set1_epi32(255 << 23));
  const __m128i inf_or_nan =
      select(nan, _mm_set1_epi32(0x7E00), _mm_set1_epi32(0x7C00));
  const __m128i small = _mm_cmplt_epi32(a, _mm_set1_epi32(113 << 23));
  const __m128i denorm_magic = _mm_set1_epi32(((127 - 15) + (23 - 10) + 1) << 23);
  const __m128i subnormal = _mm_sub_epi32(
      _mm_castps_si128(_mm_add_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(denorm_magic))),
      denorm_magic);
  const __m128i mantissa_odd = _mm_and_si128(_mm_srli_epi32(a, 13), _mm_set1_epi32(1));
  const __m128i normal = _mm_srli_epi32(
      _mm_add_epi32(_mm_add_epi32(a, _mm_set1_epi32(static_cast<int>(0xC8000FFFu))),
                    mantissa_odd),
      13);
  // Every branch gives at most 0x7E00, so the sign spread over the upper bits
  // leaves the lane a sign-extended 16-bit value.
  const __m128i magnitude = select(overflow, inf_or_nan, select(small, subnormal, normal));
  return _mm_or_si128(magnitude, _mm_srai_epi32(sign, 16));
}
#endif  // !EIGEN_HAS_FP16_C

}  // namespace sse2
#endif  // __SSE2__

/// out[k] = float(x[k]) for k < 8 (exact: a bfloat16 is a float's top half).
ADAMX_ALWAYS_INLINE void widen8(const Eigen::bfloat16* x, float* out) {
#if defined(__SSE2__)
  const __m128i bits = sse2::load8x16(x);
  sse2::store8(out, _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), bits)),
               _mm_castsi128_ps(_mm_unpackhi_epi16(_mm_setzero_si128(), bits)));
#else
  for (int k = 0; k < 8; ++k) out[k] = static_cast<float>(x[k]);
#endif
}

/// out[k] = bfloat16(x[k]) for k < 8, rounded as Eigen rounds.
ADAMX_ALWAYS_INLINE void narrow8(const float* x, Eigen::bfloat16* out) {
#if defined(__SSE2__)
  sse2::store8x16(sse2::float_to_bfloat16_bits(_mm_loadu_ps(x)),
                  sse2::float_to_bfloat16_bits(_mm_loadu_ps(x + 4)), out);
#else
  for (int k = 0; k < 8; ++k) out[k] = static_cast<Eigen::bfloat16>(x[k]);
#endif
}

/// out[k] = float(x[k]) for k < 8 (exact).
ADAMX_ALWAYS_INLINE void widen8(const Eigen::half* x, float* out) {
#if defined(EIGEN_HAS_FP16_C)
  // Eigen's scalar conversion is then the F16C instruction too. (Eigen 3.4
  // defines the macro only for clang with F16C: its test reads
  // EIGEN_COMP_CLANG, which is 0 under g++, so g++ -march=native takes the
  // software path below, as Eigen's own scalar conversion does.)
  _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))));
#elif defined(__SSE2__)
  const __m128i bits = sse2::load8x16(x);
  sse2::store8(out, sse2::half_bits_to_float(_mm_unpacklo_epi16(bits, _mm_setzero_si128())),
               sse2::half_bits_to_float(_mm_unpackhi_epi16(bits, _mm_setzero_si128())));
#else
  for (int k = 0; k < 8; ++k) out[k] = static_cast<float>(x[k]);
#endif
}

/// out[k] = half(x[k]) for k < 8, rounded as Eigen rounds.
ADAMX_ALWAYS_INLINE void narrow8(const float* x, Eigen::half* out) {
#if defined(EIGEN_HAS_FP16_C)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm256_cvtps_ph(_mm256_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__SSE2__)
  sse2::store8x16(sse2::float_to_half_bits(_mm_loadu_ps(x)),
                  sse2::float_to_half_bits(_mm_loadu_ps(x + 4)), out);
#else
  for (int k = 0; k < 8; ++k) out[k] = static_cast<Eigen::half>(x[k]);
#endif
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
