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
#include "adamx/simd.hpp"
#include "adamx/tensor_ref.hpp"
#include "adamx/unoptimised_builds.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

constexpr Index kNormBlock = 4096;
constexpr int kNormLanes = 8;
static_assert(kNormBlock % kNormLanes == 0, "blocks must hold whole chunks");

/// The chunk type of the passes: kNormLanes values of Scalar.
template <class Scalar>
using ChunkOf = Chunk<Scalar, kNormLanes>;

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

/// Prefetches element `at` of the arrays that `a` holds (null ones skipped).
template <int Bound = 0, class Param, class Scalar, int Slots>
ADAMX_ALWAYS_INLINE void prefetch_arrays(const TensorArrays<Param, Scalar, Slots>& a, Index at) {
  if (Bound > 0 || a.param) prefetch<true>(a.param + at);
  prefetch<false>(a.grad + at);
  prefetch_slots<0, Bound>(a, at);
}

/// kNormLanes parameters or gradients from `x` in the arithmetic type Scalar:
/// a plain load when they are of that type, else widened in registers
/// (simd.hpp), exactly as static_cast<Scalar> widens one.
template <class Scalar, class Param>
ADAMX_ALWAYS_INLINE ChunkOf<Scalar> load_chunk(const Param* x) {
  if constexpr (std::is_same<Param, Scalar>::value) {
    return ChunkOf<Scalar>::load(x);
  } else {
    ChunkOf<Scalar> widened;
    widen8(x, widened.data());
    return widened;
  }
}

/// Stores a chunk to parameters of type Param, rounded in registers when
/// Param is narrower (simd.hpp), exactly as static_cast<Param> rounds one.
template <class Param, class Scalar>
ADAMX_ALWAYS_INLINE void store_chunk(const ChunkOf<Scalar>& value, Param* x) {
  if constexpr (std::is_same<Param, Scalar>::value) {
    value.store(x);
  } else {
    narrow8(value.data(), x);
  }
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

/// Runs chunk(i) for each whole chunk of a block of a pass over `here` (n
/// elements from here's pointers on), with the prefetches that go with it:
/// `distance` (prefetch_distance's) elements ahead, in this tensor or, past
/// its end, in the next one of the group, or none past that. Stops early,
/// returning false, when chunk returns false; returns the index after the
/// last whole chunk otherwise (through `end`). The chunks are split into
/// those three runs up front rather than asking per chunk where its prefetch
/// goes: a tensor of a few thousand elements prefetches only the next one
/// (prefetch_distance), and a test and two branches per chunk there cost
/// about 1 700 instructions per 1024-element tensor, more than the rest of
/// a step's per-tensor work. With Bound > 0 (the fused pass, whose next
/// tensor binds the same arrays as this one), θ and the slots below Bound
/// are bound in both tensors, not tested.
template <int Bound = 0, class Param, class Scalar, int Slots, class OnChunk>
ADAMX_ALWAYS_INLINE bool for_each_chunk_prefetching(const TensorArrays<Param, Scalar, Slots> here,
                                                    const TensorArrays<Param, Scalar, Slots> next, Index n,
                                                    Index& end, OnChunk chunk) {
  const Index distance = prefetch_distance(here.size);
  const Index whole = n - n % kNormLanes;
  // The first chunk index at or after `limit` (a chunk starts at a multiple of kNormLanes).
  const auto chunk_stop = [whole](Index limit) {
    if (limit <= 0) return Index{0};
    const Index rounded = (limit + kNormLanes - 1) / kNormLanes * kNormLanes;
    return rounded < whole ? rounded : whole;
  };
  // Chunk i prefetches here's element i + distance while that is < here.size,
  // then next's element i + distance − here.size while that is < next.size.
  const Index in_here = chunk_stop(here.size - distance);
  const Index in_next = chunk_stop(here.size - distance + next.size);
  Index i = 0;
  for (; i < in_here; i += kNormLanes) {
    prefetch_arrays<Bound>(here, i + distance);
    if (!chunk(i)) return false;
  }
  // `at` as an induction variable of its own: each prefetch is then one
  // instruction, as in the loop above, not an address computation and one.
  for (Index at = i + distance - here.size; i < in_next; i += kNormLanes, at += kNormLanes) {
    prefetch_arrays<Bound>(next, at);
    if (!chunk(i)) return false;
  }
  for (; i < whole; i += kNormLanes)
    if (!chunk(i)) return false;
  end = i;
  return true;
}

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

/// The loops of fused_block, for coefficients `coefficients` of type C (the
/// rule's Coefficients or a specialisation its visit gives).
template <class Rule, class Param, class Scalar, int Slots, class C>
ADAMX_ALWAYS_INLINE double fused_block_loops(const C& coefficients, const TensorArrays<Param, Scalar, Slots> here,
                                             Index n, const TensorArrays<Param, Scalar, Slots> next) {
  Param* const param = here.param;
  const Param* const grad = here.grad;
  // A local copy: stores through θ and the slots could alias the caller's
  // struct as far as the compiler knows, which would make it reload and
  // re-broadcast every constant in every chunk.
  const C c = coefficients;
  using Chunk = ChunkOf<Scalar>;
  Lanes lanes;
  Index i = 0;
  for_each_chunk_prefetching<Rule::kBoundSlots>(here, next, n, i, [&](Index at) ADAMX_ALWAYS_INLINE_LAMBDA {
    LaneState<Chunk, Scalar, Slots> state;
    for (int k = 0; k < Slots; ++k) state.slot[k] = here.slot[k];
    state.at = at;
    Chunk g;
    const Chunk updated = Rule::update(c, load_chunk<Scalar>(param + at), load_chunk<Scalar>(grad + at), g, state);
    store_chunk<Param>(updated, param + at);
    add_squares8(g.data(), lanes.lane);
    return true;
  });
  for (int lane = 0; i < n; ++i, ++lane) {
    LaneState<Scalar, Scalar, Slots> state;
    for (int k = 0; k < Slots; ++k) state.slot[k] = here.slot[k];
    state.at = i;
    Scalar g;
    param[i] = static_cast<Param>(
        Rule::update(c, static_cast<Scalar>(param[i]), static_cast<Scalar>(grad[i]), g, state));
    lanes.lane[lane] += square(static_cast<double>(g));
  }
  return combine_lanes(lanes);
}

/// One block (n ≤ kNormBlock elements, pointers at the block's start) of the
/// fused update by Rule (rules/): θ and the state slots updated, and the
/// block's partial of s = Σg² (g as the rule transforms it) returned. Param
/// is the type of the parameters and gradients, Scalar that of the state and
/// the arithmetic (float for bfloat16 and half parameters, converted on load
/// and rounded once on store). The rule's update is one function template:
/// here it runs on chunks of kNormLanes elements, then on the scalars of the
/// block's last partial chunk, the same operations in the same order. When
/// the rule's Coefficients offer visit (HasVisit), the loops are compiled
/// once per variant it names and the choice is made once per block, not by
/// a branch per chunk.
template <class Rule, class Param, class Scalar, int Slots>
ADAMX_OPTIMISED_PASS double fused_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                        const TensorArrays<Param, Scalar, Slots> here, Index n,
                                        const TensorArrays<Param, Scalar, Slots> next) {
  using C = typename Rule::template Coefficients<Scalar>;
  if constexpr (HasVisit<C>::value) {
    return coefficients.visit([&](const auto& c) ADAMX_ALWAYS_INLINE_LAMBDA {
      return fused_block_loops<Rule>(c, here, n, next);
    });
  } else {
    return fused_block_loops<Rule>(coefficients, here, n, next);
  }
}

/// Visits one block's transformed gradient (the g the moments would see) for
/// the passes that only read: on_chunk(g) for each whole chunk, then
/// on_element(g, k) for each element k of the last partial chunk. Either
/// returns false to stop early; the visit returns whether it reached the
/// end. Prefetches as fused_block does, for the arrays the caller passes (g
/// always, θ when the rule's gradient reads it).
template <class Rule, class Param, class Scalar, int Slots, class OnChunk, class OnElement>
ADAMX_OPTIMISED_PASS bool visit_transformed_gradient(
    const typename Rule::template Coefficients<Scalar>& coefficients,
    const TensorArrays<Param, Scalar, Slots> here, Index n, const TensorArrays<Param, Scalar, Slots> next,
    OnChunk on_chunk, OnElement on_element) {
  const typename Rule::template Coefficients<Scalar> c = coefficients;  // see fused_block
  const Param* const param = here.param;
  const Param* const grad = here.grad;
  TensorArrays<Param, Scalar, Slots> ahead = here;  // the caller leaves the slots null
  if (!c.gradient_reads_param()) ahead.param = nullptr;
  Index i = 0;
  const bool reached_end = for_each_chunk_prefetching(ahead, next, n, i, [&](Index at) ADAMX_ALWAYS_INLINE_LAMBDA {
    return on_chunk(
        Rule::gradient(c, load_chunk<Scalar>(grad + at), [&] { return load_chunk<Scalar>(param + at); }));
  });
  if (!reached_end) return false;
  for (int k = 0; i < n; ++i, ++k)
    if (!on_element(Rule::gradient(c, static_cast<Scalar>(grad[i]), [&] { return static_cast<Scalar>(param[i]); }),
                    k))
      return false;
  return true;
}

/// The same partial of s that fused_block would return, without changing
/// anything: what the skip and error policies report and name the first bad
/// tensor by when a gradient is not within kSafeGradient (below).
template <class Rule, class Param, class Scalar, int Slots>
ADAMX_OPTIMISED_PASS double squared_norm_block(const typename Rule::template Coefficients<Scalar>& coefficients,
                                               const TensorArrays<Param, Scalar, Slots> here, Index n,
                                               const TensorArrays<Param, Scalar, Slots> next) {
  Lanes lanes;
  visit_transformed_gradient<Rule>(
      coefficients, here, n, next,
      [&](const ChunkOf<Scalar>& g) {
        add_squares8(g.data(), lanes.lane);
        return true;
      },
      [&](Scalar g, int lane) {
        lanes.lane[lane] += square(static_cast<double>(g));
        return true;
      });
  return combine_lanes(lanes);
}

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

/// Whether every transformed gradient of the block is within kSafeGradient
/// (false for NaN): the first pass of the skip and error policies, which then
/// need s itself only when this fails. It reads g as squared_norm_block does
/// but only compares, so it runs at the speed memory delivers g instead of
/// waiting on a chain of additions per lane of s.
template <class Rule, class Param, class Scalar, int Slots>
ADAMX_OPTIMISED_PASS bool gradient_within_safe_bound_block(
    const typename Rule::template Coefficients<Scalar>& coefficients,
    const TensorArrays<Param, Scalar, Slots> here, Index n, const TensorArrays<Param, Scalar, Slots> next) {
  const Scalar bound = kSafeGradient<Scalar>;
  return visit_transformed_gradient<Rule>(
      coefficients, here, n, next,
      [bound](const ChunkOf<Scalar>& g) { return all_within8(g.data(), bound); },
      [bound](Scalar g, int) { return std::abs(g) <= bound; });
}

/// Squares of a plain array in the same block pattern (gradient clipping).
/// bfloat16 and half values are widened to float first (exactly).
template <class Scalar>
ADAMX_OPTIMISED_PASS double squared_sum_block(const Scalar* x, Index n, Index available) {
  Lanes lanes;
  Index i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    if (i + kPrefetchDistance < available) prefetch<false>(x + i + kPrefetchDistance);
    if constexpr (std::is_same<Scalar, float>::value || std::is_same<Scalar, double>::value) {
      add_squares8(x + i, lanes.lane);
    } else {
      float widened[kNormLanes];
      widen8(x + i, widened);
      add_squares8(widened, lanes.lane);
    }
  }
  for (int lane = 0; i < n; ++i, ++lane) lanes.lane[lane] += square(static_cast<double>(x[i]));
  return combine_lanes(lanes);
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
