// Chunk: kNormLanes (8) consecutive values of the element passes
// (kernel.hpp) held in vector registers, with the few operations the passes
// use. Why not Eigen's fixed-size arrays, which the passes used first: in an
// unoptimised build (-O0, what a Debug build of a user's program compiles
// the library with) every Eigen operation is a tree of real function calls,
// and a step cost hundreds of times what it costs at -O2. A Chunk
// is built on the compilers' vector extensions (g++ and clang++): an
// operation on it is the vector instruction itself, no call, at any
// optimisation level; its member functions are always inlined. At -O2 it
// is as fast as Eigen's packets were (bench/bench_step.cpp).
//
// Every operation is elementwise and IEEE (no reassociation, no fused
// multiply-add of its own, negation a sign flip, selects by all-ones masks),
// so a Chunk computes bit for bit what the same rule computes for one Scalar
// (the lanes at the end of this file). Without the extensions (another compiler) a Chunk is
// eight plain scalars with the same operations.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__GNUC__) && (defined(__AVX__) || defined(__SSE2__))
#include <immintrin.h>
#endif

#include "adamx/abi.hpp"
#include "adamx/unoptimised_builds.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

#if defined(__GNUC__)
// Joining two vectors into one: g++ 12 and clang have the builtin.
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define ADAMX_HAS_SHUFFLEVECTOR 1
#endif
#endif
#ifndef ADAMX_HAS_SHUFFLEVECTOR
#define ADAMX_HAS_SHUFFLEVECTOR 0
#endif

/// The register width of the baseline: what this translation unit's own
/// flags give (isa.hpp). Wider instruction sets pass theirs as Chunk's
/// RegisterBytes.
constexpr int kBaselineRegisterBytes =
#if defined(__AVX__)
    32;
#else
    16;
#endif
// clang++ lowers a vector wider than the registers to register-wide
// instructions even unoptimised, so a chunk is one vector and an operation
// one statement (-O0: 18 ns per element against 38 for register-wide
// pieces in a loop). g++ -O0 lowers such a vector element by element (50 ns
// against 30), and compiles the passes optimised anyway
// (unoptimised_builds.hpp), so with g++ a chunk is register-wide pieces.
#if defined(__clang__)
constexpr bool kWholeChunk = true;
#else
constexpr bool kWholeChunk = false;
#endif

#if defined(__SSE2__)
/// The square root of each element of one register of Bytes bytes, by the
/// instruction of that width: SSE2's for 16 bytes, here. The AVX widths
/// (32 and 64 bytes) are only declared: kernel_passes.hpp defines them
/// inside the AVX2 and AVX-512 regions, so their code is compiled for those
/// sets, and only those passes' chunks use them. The update rules that call
/// sqrt are compiled for the baseline; a function compiled for a wider set
/// cannot be inlined into them, so these are plain inline functions, which
/// the compilers inline into the pass once the rule is inlined there
/// (checked in the disassembly of the bench: one VSQRTPS per register).
/// Taking an AVX register 16 bytes at a time by SSE2's instruction instead
/// halved the square roots' throughput (Zen 4: 5.5 ns per 16 floats against
/// 2.7), which was the largest cost of the whole step in cache.
template <class Scalar, int Bytes>
struct RegisterSqrt;
template <class Scalar>
struct RegisterSqrt<Scalar, 16> {
  typedef Scalar Vector __attribute__((vector_size(16), aligned(16)));
  static ADAMX_ALWAYS_INLINE void apply(Vector& x) {
    if constexpr (sizeof(Scalar) == 4) x = reinterpret_cast<Vector>(_mm_sqrt_ps(reinterpret_cast<__m128>(x)));
    else x = reinterpret_cast<Vector>(_mm_sqrt_pd(reinterpret_cast<__m128d>(x)));
  }
};

/// The square root of each element of a vector of Bytes bytes, a register of
/// RegisterBytes at a time: a wider vector is split into halves and joined
/// again with the extensions' shuffles, which compile to register moves
/// (through memory, as a store of two halves and a load of the whole, every
/// chunk would wait on store forwarding).
template <class Scalar, int Bytes, int RegisterBytes>
struct SplitSqrt {
  // Aligned as VectorOf's vectors are (below).
  typedef Scalar Vector __attribute__((vector_size(Bytes), aligned(Bytes < 16 ? Bytes : 16)));
  typedef Scalar Half __attribute__((vector_size(Bytes / 2), aligned(Bytes / 2 < 16 ? Bytes / 2 : 16)));
  static constexpr int kHalfLanes = Bytes / 2 / static_cast<int>(sizeof(Scalar));

  template <std::size_t... Lane>
  static ADAMX_ALWAYS_INLINE void split(const Vector& x, Half& low, Half& high, std::index_sequence<Lane...>) {
#if ADAMX_HAS_SHUFFLEVECTOR
    low = __builtin_shufflevector(x, x, static_cast<int>(Lane)...);
    high = __builtin_shufflevector(x, x, (kHalfLanes + static_cast<int>(Lane))...);
#else
    Scalar lanes[2 * kHalfLanes];
    std::memcpy(lanes, &x, sizeof lanes);
    std::memcpy(&low, lanes, sizeof low);
    std::memcpy(&high, lanes + kHalfLanes, sizeof high);
#endif
  }
  template <std::size_t... Lane>
  static ADAMX_ALWAYS_INLINE void join(const Half& low, const Half& high, Vector& x, std::index_sequence<Lane...>) {
#if ADAMX_HAS_SHUFFLEVECTOR
    x = __builtin_shufflevector(low, high, static_cast<int>(Lane)...);
#else
    std::memcpy(reinterpret_cast<char*>(&x), &low, sizeof low);
    std::memcpy(reinterpret_cast<char*>(&x) + sizeof low, &high, sizeof high);
#endif
  }
  static ADAMX_ALWAYS_INLINE void apply(Vector& x) {
    if constexpr (Bytes <= RegisterBytes) {
      RegisterSqrt<Scalar, Bytes>::apply(x);
    } else {
      Half low, high;
      split(x, low, high, std::make_index_sequence<static_cast<std::size_t>(kHalfLanes)>());
      SplitSqrt<Scalar, Bytes / 2, RegisterBytes>::apply(low);
      SplitSqrt<Scalar, Bytes / 2, RegisterBytes>::apply(high);
      join(low, high, x, std::make_index_sequence<static_cast<std::size_t>(2 * kHalfLanes)>());
    }
  }
};
#endif

/// A vector of the extensions holding Lanes values of Scalar (kWholeChunk,
/// or a chunk narrower than a register) or one register's worth
/// (RegisterBytes) of them, its unaligned-access form (loads and stores at
/// any element address) and the mask a comparison gives.
template <class Scalar, int Lanes, int RegisterBytes>
struct VectorOf {
  using Integer = std::conditional_t<sizeof(Scalar) == 8, std::int64_t, std::int32_t>;
  static constexpr int kBytes =
      kWholeChunk || Lanes * static_cast<int>(sizeof(Scalar)) < RegisterBytes
          ? Lanes * static_cast<int>(sizeof(Scalar))
          : RegisterBytes;
  // At most 16-byte aligned: a chunk is passed by value between the rules'
  // functions (compiled for the baseline), and g++ notes at every program
  // that an argument aligned to 32 bytes or more is passed differently since
  // GCC 4.6. The functions are always inlined, so no call is ever made; the
  // vectors live in registers either way.
  static constexpr int kAlign = kBytes < 16 ? kBytes : 16;
  typedef Integer Mask __attribute__((vector_size(kBytes), aligned(kAlign)));
  typedef Scalar Vector __attribute__((vector_size(kBytes), aligned(kAlign)));
  typedef Scalar Unaligned __attribute__((vector_size(kBytes), aligned(alignof(Scalar)), may_alias));
  static constexpr int kLanes = kBytes / static_cast<int>(sizeof(Scalar));

  // Vectors travel by reference: passed or returned by value, one wider
  // than the target's registers would change the calling convention (and
  // g++ warns, -Wpsabi).
  static ADAMX_ALWAYS_INLINE void splat(Scalar value, Vector& out) {
    for (int k = 0; k < kLanes; ++k) out[k] = value;
  }
  static ADAMX_ALWAYS_INLINE void load(const Scalar* x, Vector& out) { out = *reinterpret_cast<const Unaligned*>(x); }
  static ADAMX_ALWAYS_INLINE void store(const Vector& value, Scalar* x) { *reinterpret_cast<Unaligned*>(x) = value; }
  static ADAMX_ALWAYS_INLINE void select(const Mask& mask, const Vector& if_set, const Vector& otherwise,
                                         Vector& out) {
    out = reinterpret_cast<Vector>((reinterpret_cast<Mask>(if_set) & mask) |
                                   (reinterpret_cast<Mask>(otherwise) & ~mask));
  }
  /// The correctly rounded square root of each element: the hardware's
  /// instruction, register by register. (Eigen's packet sqrt, with
  /// EIGEN_FAST_MATH, its default, is for float an rsqrt estimate plus one
  /// Newton step that flushes subnormals to zero; the optimizer promises
  /// IEEE results.) The update rules call this from code compiled for the
  /// baseline, whatever instruction set the pass that inlines it targets
  /// (isa.hpp): RegisterSqrt's instruction of the pass's register width
  /// (RegisterBytes) is defined in that pass's region, and SSE2's 16-byte
  /// one serves the baseline.
  // g++ in an unoptimised build inlines nothing that is not always-inline,
  // not even into the passes it compiles at -O2 (unoptimised_builds.hpp),
  // so an AVX RegisterSqrt would be a call per chunk there (measured: the
  // -O0 step 2.4x the -O2 one in cache, against 1.1): it keeps to SSE2's
  // 16-byte instruction, which is always inlined.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
  static constexpr int kSqrtRegisterBytes = 16;
#else
  static constexpr int kSqrtRegisterBytes = RegisterBytes < 16 ? 16 : RegisterBytes;
#endif

  static ADAMX_ALWAYS_INLINE void sqrt(Vector& x) {
#if defined(__AVX__)
    if constexpr (kBytes % 32 == 0) {
      Scalar* const lane = reinterpret_cast<Scalar*>(&x);
      constexpr int kStep = 32 / static_cast<int>(sizeof(Scalar));
      for (int k = 0; k < kLanes; k += kStep) {
        if constexpr (sizeof(Scalar) == 4) _mm256_storeu_ps(lane + k, _mm256_sqrt_ps(_mm256_loadu_ps(lane + k)));
        else _mm256_storeu_pd(lane + k, _mm256_sqrt_pd(_mm256_loadu_pd(lane + k)));
      }
      return;
    }
#endif
#if defined(__SSE2__)
    SplitSqrt<Scalar, kBytes, kSqrtRegisterBytes>::apply(x);
#else
    Scalar* const lane = reinterpret_cast<Scalar*>(&x);
    for (int k = 0; k < kLanes; ++k) lane[k] = std::sqrt(lane[k]);
#endif
  }
};
#else
/// Without vector extensions: one Scalar per "vector", Lanes of them.
constexpr int kBaselineRegisterBytes = 0;
template <class Scalar, int, int>
struct VectorOf {
  using Mask = bool;
  using Vector = Scalar;
  static constexpr int kLanes = 1;

  static void splat(Scalar value, Vector& out) { out = value; }
  static void load(const Scalar* x, Vector& out) { out = *x; }
  static void store(const Vector& value, Scalar* x) { *x = value; }
  static void select(Mask mask, Vector if_set, Vector otherwise, Vector& out) { out = mask ? if_set : otherwise; }
  static void sqrt(Vector& x) { x = std::sqrt(x); }  // correctly rounded
};
#endif

/// Lanes values of Scalar in vector registers of RegisterBytes bytes (the
/// baseline's unless a pass for a wider instruction set asks for its own).
template <class Scalar, int Lanes, int RegisterBytes = kBaselineRegisterBytes>
class Chunk {
  using V = VectorOf<Scalar, Lanes, RegisterBytes>;
  using Vector = typename V::Vector;
  static constexpr int kParts = Lanes / V::kLanes;
  static_assert(kParts * V::kLanes == Lanes, "a chunk is whole vectors");

 public:
  /// Comparison results, one all-ones or all-zeros mask per element.
  struct Mask {
    typename V::Mask part[kParts];
    ADAMX_ALWAYS_INLINE Mask operator|(const Mask& other) const {
      Mask out;
      for (int k = 0; k < kParts; ++k) out.part[k] = part[k] | other.part[k];
      return out;
    }
  };

  Chunk() = default;
  /// Every element `value`.
  ADAMX_ALWAYS_INLINE explicit Chunk(Scalar value) {
    for (int k = 0; k < kParts; ++k) V::splat(value, part_[k]);
  }

  static ADAMX_ALWAYS_INLINE Chunk load(const Scalar* x) {
    Chunk out;
    for (int k = 0; k < kParts; ++k) V::load(x + k * V::kLanes, out.part_[k]);
    return out;
  }
  ADAMX_ALWAYS_INLINE void store(Scalar* x) const {
    for (int k = 0; k < kParts; ++k) V::store(part_[k], x + k * V::kLanes);
  }

  /// The elements in memory, in order (for the intrinsics of simd.hpp).
  ADAMX_ALWAYS_INLINE Scalar* data() { return reinterpret_cast<Scalar*>(part_); }
  ADAMX_ALWAYS_INLINE const Scalar* data() const { return reinterpret_cast<const Scalar*>(part_); }

  ADAMX_ALWAYS_INLINE Chunk operator-() const {
    Chunk out;
    for (int k = 0; k < kParts; ++k) out.part_[k] = -part_[k];
    return out;
  }

#define ADAMX_CHUNK_OPERATOR(op)                                                                  \
  friend ADAMX_ALWAYS_INLINE Chunk operator op(const Chunk& a, const Chunk& b) {                  \
    Chunk out;                                                                                    \
    for (int k = 0; k < kParts; ++k) out.part_[k] = a.part_[k] op b.part_[k];                     \
    return out;                                                                                   \
  }                                                                                               \
  /* With a scalar, which the vector extensions broadcast. */                                  \
  friend ADAMX_ALWAYS_INLINE Chunk operator op(const Chunk& a, Scalar b) {                        \
    Chunk out;                                                                                    \
    for (int k = 0; k < kParts; ++k) out.part_[k] = a.part_[k] op b;                              \
    return out;                                                                                   \
  }                                                                                               \
  friend ADAMX_ALWAYS_INLINE Chunk operator op(Scalar a, const Chunk& b) {                        \
    Chunk out;                                                                                    \
    for (int k = 0; k < kParts; ++k) out.part_[k] = a op b.part_[k];                              \
    return out;                                                                                   \
  }
  ADAMX_CHUNK_OPERATOR(+)
  ADAMX_CHUNK_OPERATOR(-)
  ADAMX_CHUNK_OPERATOR(*)
  ADAMX_CHUNK_OPERATOR(/)
#undef ADAMX_CHUNK_OPERATOR

#define ADAMX_CHUNK_COMPARISON(op)                                                    \
  friend ADAMX_ALWAYS_INLINE Mask operator op(const Chunk& a, const Chunk& b) {       \
    Mask out;                                                                         \
    for (int k = 0; k < kParts; ++k) out.part[k] = a.part_[k] op b.part_[k];          \
    return out;                                                                       \
  }                                                                                   \
  friend ADAMX_ALWAYS_INLINE Mask operator op(const Chunk& a, Scalar b) { return a op Chunk(b); }
  ADAMX_CHUNK_COMPARISON(<)
  ADAMX_CHUNK_COMPARISON(>)
  ADAMX_CHUNK_COMPARISON(!=)
#undef ADAMX_CHUNK_COMPARISON

  /// Element k of if_set where mask k is set, else of otherwise.
  friend ADAMX_ALWAYS_INLINE Chunk select(const Mask& mask, const Chunk& if_set, const Chunk& otherwise) {
    Chunk out;
    for (int k = 0; k < kParts; ++k) V::select(mask.part[k], if_set.part_[k], otherwise.part_[k], out.part_[k]);
    return out;
  }

  /// The correctly rounded square root of each element (VectorOf::sqrt).
  friend ADAMX_ALWAYS_INLINE Chunk sqrt(const Chunk& x) {
    Chunk out = x;
    for (int k = 0; k < kParts; ++k) V::sqrt(out.part_[k]);
    return out;
  }

 private:
  Vector part_[kParts];
};

// ---- lanes ------------------------------------------------------------------
// The update rules (include/adamx/rules/) write each element update once, as
// a function template over a "lane" type L: a Chunk (kNormLanes elements of
// a block, the vectorised body) or the Scalar itself (the elements of a
// block's last partial chunk). The operators +, −, ×, ÷, unary −, < , > and !=
// read the same for both; these two functions give the rest one spelling.

/// The correctly rounded square root, of a scalar or of each element of a chunk.
template <class Scalar, std::enable_if_t<std::is_floating_point<Scalar>::value, int> = 0>
ADAMX_ALWAYS_INLINE Scalar lane_sqrt(Scalar x) {
  return std::sqrt(x);
}
template <class Scalar, int Lanes, int RegisterBytes>
ADAMX_ALWAYS_INLINE Chunk<Scalar, Lanes, RegisterBytes> lane_sqrt(const Chunk<Scalar, Lanes, RegisterBytes>& x) {
  return sqrt(x);
}

/// `if_set` where `mask` holds, else `otherwise`: a branch for a scalar (a
/// comparison, or comparisons joined with |), a blend for a chunk. Both pick
/// one of the two values unchanged, so they agree bit for bit.
template <class Scalar, std::enable_if_t<std::is_floating_point<Scalar>::value, int> = 0>
ADAMX_ALWAYS_INLINE Scalar lane_select(bool mask, Scalar if_set, Scalar otherwise) {
  return mask ? if_set : otherwise;
}
template <class Scalar, int Lanes, int RegisterBytes>
ADAMX_ALWAYS_INLINE Chunk<Scalar, Lanes, RegisterBytes> lane_select(
    const typename Chunk<Scalar, Lanes, RegisterBytes>::Mask& mask, const Chunk<Scalar, Lanes, RegisterBytes>& if_set,
    const Chunk<Scalar, Lanes, RegisterBytes>& otherwise) {
  return select(mask, if_set, otherwise);
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
