// The passes over a tensor's memory: the fused update (θ, the rule's state
// slots and the partial sums of s in one pass, docs/design.md D1) and the checking pass of the
// skip/error non-finite policies. The only loops over elements live here.
//
// s is summed in double in a fixed pattern that does not depend on how the
// work is split (docs/design.md, "How s is summed"): each tensor is cut into
// blocks of kNormBlock elements; inside a block, element k goes to lane
// k mod kNormLanes; a block's partial is the lanes combined pairwise in a
// fixed tree; the group's s is the blocks' partials added in order, tensor
// after tensor. Threads or shards that split work on block boundaries
// therefore reproduce s bit for bit.
//
// Speed: the pass is memory-bound, so it must vectorise under the flags users
// really compile with (-O2, no -ffast-math). A scalar loop does not: std::sqrt
// may set errno, and a double accumulator is a serial dependency. So each
// block is processed in chunks of kNormLanes elements held in vector registers
// (chunk.hpp: no reordering of IEEE operations, correctly rounded sqrt), the
// lanes of s and the bfloat16/half conversions by the intrinsics in simd.hpp
// (one lane of s per element of a chunk, conversions bit for bit as Eigen's).
// Each update rule (include/adamx/rules/) writes its element update once, as
// a template over the lane type: here it is run on chunks, and on plain
// scalars for a block's last partial chunk. Every operation is elementwise,
// so both compute the same bits for the same element. This file never names
// a rule.
//
// Instruction sets: the passes themselves are in kernel_passes.hpp, which
// this file includes once per instruction set the compiler can target
// (isa.hpp: the baseline, and with GCC or Clang on x86-64 AVX2 and
// AVX-512), each inside a region compiled for that set; the functions named
// fused_block, squared_norm_block, gradient_within_safe_bound_block and
// squared_sum_block below call the one of the set chosen at run time. No
// pass contracts a multiplication and an addition into a fused
// multiply-add (ADAMX_KERNEL_PASS, and the library-wide region of abi.hpp),
// which some sets have and others lack: the sets compute the same bits.
//
// The same code must also be fast unoptimised (a Debug build of a user's
// program): every per-chunk helper is always inlined, and with g++ the
// passes are compiled optimised whatever the build (unoptimised_builds.hpp).
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "adamx/abi.hpp"
#include "adamx/chunk.hpp"
#include "adamx/isa.hpp"
#include "adamx/simd.hpp"
#include "adamx/tensor_ref.hpp"
#include "adamx/unoptimised_builds.hpp"

#if ADAMX_DISPATCH
#include <immintrin.h>
#endif

ADAMX_NAMESPACE_BEGIN
namespace detail {

constexpr Index kNormBlock = 4096;
constexpr int kNormLanes = 8;
static_assert(kNormBlock % kNormLanes == 0, "blocks must hold whole chunks");

/// The lanes of a block's partial of s, lane k summing elements k mod kNormLanes.
struct Lanes {
  double lane[kNormLanes] = {};
};

inline double combine_lanes(const Lanes& l) {
  const double* const lanes = l.lane;
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

inline double square(double x) { return x * x; }

/// Asks for the cache lines kPrefetchDistance elements ahead. The element
/// pass has enough arithmetic (a sqrt and a division per element) that the
/// out-of-order window fills with it and memory requests start late; issuing
/// them explicitly lets the loads overlap the arithmetic (measured at 2^24
/// floats, SSE2: 1.5 ns per element without, 1.05 ns with). Past the end of
/// a tensor the prefetches move on to the next tensor of the group rather
/// than fetch memory nobody reads.
constexpr Index kPrefetchDistance = 512;

/// The distance used from a block whose tensor has `remaining` elements left.
/// A short tensor (at most four distances) is instead given its own length:
/// the whole of the next tensor is requested while this one is processed, a
/// full tensor ahead. With the fixed distance such a tensor spends part of its
/// pass fetching its own later lines and only the rest fetching the next
/// tensor, whose first lines then arrive late. Measured, one group of 1024
/// float tensors of 1024 elements against one tensor of 2^20, SSE2: 1.42×
/// with the fixed distance, 1.24× with this rule; tensors of 2048 elements
/// 1.23× → 1.19×; the one-tensor case does not change (docs/design.md,
/// "Many small tensors").
inline Index prefetch_distance(Index remaining) {
  return remaining <= 4 * kPrefetchDistance ? remaining : kPrefetchDistance;
}

/// The arrays of one tensor from some element on, and how many elements
/// remain to the tensor's end (`size`): θ, g and the rule's state slots
/// (rules/, in the rule's slot order). Arrays a pass or a step does not use
/// are null.
template <class Param, class Scalar, int Slots>
struct TensorArrays {
  Param* param;
  const Param* grad;
  Scalar* slot[Slots];
  Index size;
};

template <bool Write, class T>
ADAMX_ALWAYS_INLINE void prefetch(const T* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, Write ? 1 : 0);
#else
  (void)p;
#endif
}

/// Prefetches element `at` of the slots from K on that `a` holds, unrolled
/// (a loop over the slots is kept as a loop, reading the pointers from memory).
/// Slots below Bound are known to be bound (a rule's kBoundSlots), so not
/// tested: a test and a branch per slot and chunk is measurable in cache.
template <int K, int Bound, class Param, class Scalar, int Slots>
ADAMX_ALWAYS_INLINE void prefetch_slots(const TensorArrays<Param, Scalar, Slots>& a, Index at) {
  if constexpr (K < Slots) {
    if (K < Bound || a.slot[K]) prefetch<true>(a.slot[K] + at);
    prefetch_slots<K + 1, Bound>(a, at);
  }
}

/// prefetch_arrays' Bound for a pass that reads the gradients alone (and θ
/// where the rule's gradient needs it): the slots are not even tested.
constexpr int kGradientOnly = -1;

/// Prefetches element `at` of the arrays that `a` holds (null ones skipped).
template <int Bound = 0, class Param, class Scalar, int Slots>
ADAMX_ALWAYS_INLINE void prefetch_arrays(const TensorArrays<Param, Scalar, Slots>& a, Index at) {
  if (Bound > 0 || a.param) prefetch<true>(a.param + at);
  prefetch<false>(a.grad + at);
  if constexpr (Bound != kGradientOnly) prefetch_slots<0, Bound>(a, at);
}

/// The state slots of one element (L = Scalar) or one chunk (L = a Chunk)
/// as a rule's update sees them: load(k) and store(k, x) of slot k at the
/// lane's position.
template <class L, class Scalar, int Slots>
struct LaneState {
  // The pointers themselves, not a pointer to them: a chunk's stores may
  // alias anything (chunk.hpp), and pointers read through memory would be
  // reloaded after each one.
  Scalar* slot[Slots];
  Index at;

  ADAMX_ALWAYS_INLINE L load(int k) const {
    if constexpr (std::is_floating_point<L>::value) {
      return slot[k][at];
    } else {
      return L::load(slot[k] + at);
    }
  }
  ADAMX_ALWAYS_INLINE void store(int k, const L& value) const {
    if constexpr (std::is_floating_point<L>::value) {
      slot[k][at] = value;
    } else {
      value.store(slot[k] + at);
    }
  }
};

/// Whether a rule's Coefficients offer visit(f): f called with a type that
/// holds a per-step choice of the rule's as a constant (docs/design.md,
/// "Update rules").
struct VisitProbe {
  template <class T>
  int operator()(const T&) const { return 0; }
};
template <class C, class = void>
struct HasVisit : std::false_type {};
template <class C>
struct HasVisit<C, std::void_t<decltype(std::declval<const C&>().visit(VisitProbe{}))>> : std::true_type {};

/// A magnitude that no transformed gradient may exceed if s is to be certainly
/// finite. With every |g| ≤ B, each square rounded to double is ≤ B² ≤ P for a
/// power of two P, and a sum of k ≥ 1 such non-negative terms, added in any
/// order, is ≤ k·P: by induction, two partial sums ≤ i·P and ≤ j·P add to at
/// most (i + j)·P, which is representable (i + j < 2^53, as no group holds 2^53
/// elements), so rounding, being monotonic, cannot carry the sum past it. With
/// k·P < 2^53·P below the largest double, s is finite.
///   float arithmetic (float, bfloat16, half parameters): B = FLT_MAX, i.e.
///     "g is finite"; P = 2^256.
///   double: B = 2^400, P = 2^800. Larger finite gradients may or may not
///     overflow s; for them the exact s decides.
template <class Scalar>
constexpr Scalar kSafeGradient = std::numeric_limits<float>::max();
template <>
constexpr double kSafeGradient<double> = 0x1p400;

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx

// ---- the passes, once per instruction set -----------------------------------

#define ADAMX_KERNEL_ISA 0
#include "adamx/kernel_passes.hpp"
#undef ADAMX_KERNEL_ISA

#if ADAMX_DISPATCH
// Every function defined in a region is compiled for its set; the update
// rules and chunk.hpp, defined outside, are compiled for the baseline and
// inlined into them (a function may inline one compiled for a subset of its
// own instructions). No FMA in either target: AVX-512F has its own FMA
// encodings, which ADAMX_KERNEL_PASS keeps g++ from contracting into.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#endif
#define ADAMX_KERNEL_ISA 1
#include "adamx/kernel_passes.hpp"
#undef ADAMX_KERNEL_ISA
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,f16c"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,f16c")
#endif
#define ADAMX_KERNEL_ISA 2
#include "adamx/kernel_passes.hpp"
#undef ADAMX_KERNEL_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // ADAMX_DISPATCH

ADAMX_NAMESPACE_BEGIN
namespace detail {

// ---- dispatch ------------------------------------------------------------------
// One branch per block of kNormBlock elements on the set isa.hpp chose
// (a relaxed load: sets may change between blocks, which changes no result).
// A step asks instruction_set() before it changes anything, so the choice is
// made, or its error raised, by then; unmade, the baseline runs.

#if ADAMX_DISPATCH
#define ADAMX_DISPATCH_PASS(pass, ...)                                                        \
  switch (active_instruction_set().load(std::memory_order_relaxed)) {                         \
    case static_cast<int>(InstructionSet::avx512): return isa_avx512::pass(__VA_ARGS__);      \
    case static_cast<int>(InstructionSet::avx2): return isa_avx2::pass(__VA_ARGS__);          \
    default: return isa_baseline::pass(__VA_ARGS__);                                          \
  }
#else
#define ADAMX_DISPATCH_PASS(pass, ...) return isa_baseline::pass(__VA_ARGS__);
#endif

template <class Rule, class Param, class Scalar, int Slots>
inline double fused_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                          const TensorArrays<Param, Scalar, Slots> here, Index n,
                          const TensorArrays<Param, Scalar, Slots> next) {
  ADAMX_DISPATCH_PASS(fused_block<Rule>, coefficients, here, n, next)
}

template <class Rule, class Param, class Scalar, int Slots>
inline double squared_norm_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                 const TensorArrays<Param, Scalar, Slots> here, Index n,
                                 const TensorArrays<Param, Scalar, Slots> next) {
  ADAMX_DISPATCH_PASS(squared_norm_block<Rule>, coefficients, here, n, next)
}

template <class Rule, class Param, class Scalar, int Slots>
inline bool gradient_within_safe_bound_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                             const TensorArrays<Param, Scalar, Slots> here, Index n,
                                             const TensorArrays<Param, Scalar, Slots> next) {
  ADAMX_DISPATCH_PASS(gradient_within_safe_bound_block<Rule>, coefficients, here, n, next)
}

template <class Scalar>
inline double squared_sum_block(const Scalar* x, Index n, Index available) {
  ADAMX_DISPATCH_PASS(squared_sum_block, x, n, available)
}

/// Float to or from bfloat16 or half, n values (kernel_passes.hpp).
template <class From, class To>
inline void convert_block(const From* x, To* out, Index n) {
  ADAMX_DISPATCH_PASS(convert_block, x, out, n)
}

#undef ADAMX_DISPATCH_PASS

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
