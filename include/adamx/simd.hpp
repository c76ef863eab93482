// The lane operations Eigen's packet math cannot be trusted with, or does
// slowly, here,
// written once with intrinsics for the targets that have them and a plain
// loop for the rest:
//   * sqrt: with EIGEN_FAST_MATH (Eigen's default) a float packet sqrt is an
//     rsqrt estimate plus one Newton step that flushes subnormals to zero, and
//     on AVX-512 the double one is too. The optimizer promises IEEE results
//     (what the scalar rule and PyTorch compute), so it uses the hardware's
//     correctly rounded sqrt instructions.
//   * s's lanes: Eigen 3.4 converts float to double one element at a time
//     through memory; the conversion instructions do it per register.
// Both operate on kNormLanes = 8 consecutive values.
#pragma once

#include <cmath>

#if defined(__AVX__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace adamx {
namespace detail {

/// out[k] = sqrt(x[k]) for k < 8, correctly rounded.
inline void sqrt8(const float* x, float* out) {
#if defined(__AVX__)
  _mm256_storeu_ps(out, _mm256_sqrt_ps(_mm256_loadu_ps(x)));
#elif defined(__SSE2__)
  _mm_storeu_ps(out, _mm_sqrt_ps(_mm_loadu_ps(x)));
  _mm_storeu_ps(out + 4, _mm_sqrt_ps(_mm_loadu_ps(x + 4)));
#else
  for (int k = 0; k < 8; ++k) out[k] = std::sqrt(x[k]);
#endif
}

inline void sqrt8(const double* x, double* out) {
#if defined(__AVX__)
  _mm256_storeu_pd(out, _mm256_sqrt_pd(_mm256_loadu_pd(x)));
  _mm256_storeu_pd(out + 4, _mm256_sqrt_pd(_mm256_loadu_pd(x + 4)));
#elif defined(__SSE2__)
  for (int k = 0; k < 8; k += 2) _mm_storeu_pd(out + k, _mm_sqrt_pd(_mm_loadu_pd(x + k)));
#else
  for (int k = 0; k < 8; ++k) out[k] = std::sqrt(x[k]);
#endif
}

/// lanes[k] += double(g[k])² for k < 8 (exact squares for float g).
inline void add_squares8(const float* g, double* lanes) {
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

inline void add_squares8(const double* g, double* lanes) {
  // Plain doubles: a loop the compiler vectorises (no conversion, no sqrt).
  for (int k = 0; k < 8; ++k) lanes[k] += g[k] * g[k];
}

/// Whether |x[k]| ≤ bound for every k < 8; false if any x[k] is NaN.
inline bool all_within8(const float* x, float bound) {
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

inline bool all_within8(const double* x, double bound) {
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

/// Reduced-precision values (bfloat16, half): widened exactly through float.
template <class T>
inline void add_squares8(const T* g, double* lanes) {
  for (int k = 0; k < 8; ++k) {
    const double x = static_cast<double>(static_cast<float>(g[k]));
    lanes[k] += x * x;
  }
}

}  // namespace detail
}  // namespace adamx
