// The passes over a tensor's memory: the fused update (θ, m, v and the partial
// sums of s in one pass, docs/design.md D1) and the checking pass of the
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
// Every operation is elementwise, so the chunked body computes exactly
// what the scalar rule in rule.hpp computes for the same element; the scalar
// rule handles a block's last partial chunk.
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

#include "adamx/chunk.hpp"
#include "adamx/rule.hpp"
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
/// remain to the tensor's end (`size`); pointers a pass does not use may be
/// null.
template <class Param, class Scalar>
struct TensorArrays {
  Param* param;
  const Param* grad;
  Scalar* m;
  Scalar* v;
  Scalar* v_max;
  Scalar* step_avg;  // AdaMod's EMA of the step size; null for the other rules
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

/// Prefetches element `at` of the arrays that `a` holds (null ones skipped).
template <class Param, class Scalar>
ADAMX_ALWAYS_INLINE void prefetch_arrays(const TensorArrays<Param, Scalar>& a, Index at) {
  if (a.param) prefetch<true>(a.param + at);
  prefetch<false>(a.grad + at);
  if (a.m) prefetch<true>(a.m + at);
  if (a.v) prefetch<true>(a.v + at);
  if (a.v_max) prefetch<true>(a.v_max + at);
  if (a.step_avg) prefetch<true>(a.step_avg + at);
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

/// transformed_gradient (rule.hpp) for a chunk: the same operations in the
/// same order. θ is read (from `param`) only for L2 decay.
template <class Scalar, class Param>
ADAMX_ALWAYS_INLINE void transform_gradient_chunk(const AdamCoefficients<Scalar>& c, ChunkOf<Scalar>& g,
                                                  const Param* param) {
  if (c.maximize) g = -g;
  if (c.use_l2) g = g + c.l2 * load_chunk<Scalar>(param);
}

/// stepped (rule.hpp) for a chunk under a rule fixed at compile time: the
/// same operations in the same order. `step_avg` points at the chunk's AdaMod
/// state (used by the modulated rule only).
template <ElementRule Rule, class Scalar>
ADAMX_ALWAYS_INLINE ChunkOf<Scalar> stepped_chunk(const AdamCoefficients<Scalar>& c, const ChunkOf<Scalar>& p,
                                                  const ChunkOf<Scalar>& m, const ChunkOf<Scalar>& second,
                                                  Scalar* step_avg) {
  using Chunk = ChunkOf<Scalar>;
  const Chunk root = sqrt(second);
  if constexpr (Rule == ElementRule::adam) {
    const Chunk denominator = root + c.eps;
    return p + (c.neg_step_size * m) / denominator;
  } else if constexpr (Rule == ElementRule::momentum) {
    return p + c.neg_step_size * m;
  } else if constexpr (Rule == ElementRule::bounded) {
    const Chunk eta = c.step_size / (root + c.eps);
    // nan_clip's selects, in its order: NaN fails both tests and stays.
    const Chunk clipped = select(eta < c.lower, Chunk(c.lower), select(eta > c.upper, Chunk(c.upper), eta));
    return p - clipped * m;
  } else {
    static_assert(Rule == ElementRule::modulated, "every rule is handled");
    const Chunk eta = c.step_size / (root + c.eps);
    const Chunk average = Chunk::load(step_avg) * c.beta_step + c.one_minus_beta_step * eta;
    average.store(step_avg);
    const Chunk capped = select((average < eta) | (average != average), average, eta);  // nan_min
    return p - capped * m;
  }
}

/// One block (n ≤ kNormBlock elements, pointers at the block's start) of the
/// fused Adam-family update. Returns the block's partial of s = Σg²
/// (transformed g). `v_max` is null when amsgrad is off. Param is the type of
/// the parameters and gradients, Scalar that of the state and the arithmetic
/// (see adam_update). Rule is the step's ElementRule (a template argument, so
/// Adam's loop holds nothing of the other rules).
template <ElementRule Rule = ElementRule::adam, class Param, class Scalar>
ADAMX_OPTIMISED_PASS double fused_adam_block(const AdamCoefficients<Scalar>& coefficients,
                        const TensorArrays<Param, Scalar> here, Index n,
                        const TensorArrays<Param, Scalar> next) {
  Param* const param = here.param;
  const Param* const grad = here.grad;
  Scalar* const m = here.m;
  Scalar* const v = here.v;
  Scalar* const v_max = here.v_max;
  // A local copy: stores through param, m and v could alias the caller's
  // struct as far as the compiler knows, which would make it reload and
  // re-broadcast every constant in every chunk.
  const AdamCoefficients<Scalar> c = coefficients;
  using Chunk = ChunkOf<Scalar>;
  const Index distance = prefetch_distance(here.size);
  Lanes lanes;
  Index i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    {
      const Index at = i + distance;
      if (at < here.size) {
        prefetch<true>(param + at);
        prefetch<false>(grad + at);
        prefetch<true>(m + at);
        prefetch<true>(v + at);
        if (v_max) prefetch<true>(v_max + at);
        if constexpr (Rule == ElementRule::modulated) prefetch<true>(here.step_avg + at);
      } else if (at - here.size < next.size) {
        prefetch_arrays(next, at - here.size);
      }
    }
    const Chunk p = load_chunk<Scalar>(param + i);
    Chunk g = load_chunk<Scalar>(grad + i);
    // The same operations, in the same order, as adam_update (rule.hpp).
    transform_gradient_chunk(c, g, param + i);
    Chunk decayed = p;
    if (c.use_decoupled) decayed = decayed * c.decay_factor;
    const Chunk mm = Chunk::load(m + i) * c.beta1 + c.one_minus_beta1 * g;
    mm.store(m + i);
    const Chunk vv = Chunk::load(v + i) * c.beta2 + (c.v_coefficient * g) * g;
    vv.store(v + i);
    Chunk second = vv;
    if (c.amsgrad) {
      const Chunk previous = Chunk::load(v_max + i);
      // NaN-propagating max, as in adam_update.
      second = select((previous < vv) | (vv != vv), vv, previous);
      second.store(v_max + i);
    }
    store_chunk<Param>(stepped_chunk<Rule>(c, decayed, mm, second,
                                           Rule == ElementRule::modulated ? here.step_avg + i : nullptr),
                       param + i);
    add_squares8(g.data(), lanes.lane);
  }
  for (int lane = 0; i < n; ++i, ++lane) {
    const Scalar g = adam_update(c, param[i], grad[i], m[i], v[i], v_max ? v_max + i : nullptr,
                                 here.step_avg ? here.step_avg + i : nullptr);
    lanes.lane[lane] += square(static_cast<double>(g));
  }
  return combine_lanes(lanes);
}

/// fused_adam_block for the rule `c` selects, instantiating only the rules
/// Flavour's steps can use (Adam's flavours: the Adam rule alone).
template <class Flavour, class Param, class Scalar>
double fused_update_block(const AdamCoefficients<Scalar>& c, const TensorArrays<Param, Scalar> here,
                          Index n, const TensorArrays<Param, Scalar> next) {
  if constexpr (Flavour::algorithm == Algorithm::adam) {
    return fused_adam_block<ElementRule::adam>(c, here, n, next);
  } else if constexpr (Flavour::algorithm == Algorithm::radam) {
    return c.rule == ElementRule::adam ? fused_adam_block<ElementRule::adam>(c, here, n, next)
                                       : fused_adam_block<ElementRule::momentum>(c, here, n, next);
  } else if constexpr (Flavour::algorithm == Algorithm::adabound) {
    return fused_adam_block<ElementRule::bounded>(c, here, n, next);
  } else {
    return fused_adam_block<ElementRule::modulated>(c, here, n, next);
  }
}

/// Visits one block's transformed gradient (the g the moments would see) for
/// the passes that only read: on_chunk(g) for each whole chunk (an Eigen array
/// of kNormLanes values), then on_element(g, k) for each element k of the last
/// partial chunk. Either returns false to stop early; the visit returns
/// whether it reached the end. Prefetches as fused_adam_block does, for the
/// arrays the caller passes (g always, θ for L2 decay).
template <class Param, class Scalar, class OnChunk, class OnElement>
ADAMX_OPTIMISED_PASS bool visit_transformed_gradient(const AdamCoefficients<Scalar>& coefficients,
                                const TensorArrays<Param, Scalar> here, Index n,
                                const TensorArrays<Param, Scalar> next, OnChunk on_chunk,
                                OnElement on_element) {
  const AdamCoefficients<Scalar> c = coefficients;  // see fused_adam_block
  const Param* const param = here.param;
  const Param* const grad = here.grad;
  using Chunk = ChunkOf<Scalar>;
  const Index distance = prefetch_distance(here.size);
  Index i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    {
      const Index at = i + distance;
      if (at < here.size) {
        prefetch<false>(grad + at);
        if (c.use_l2) prefetch<false>(param + at);
      } else if (at - here.size < next.size) {
        prefetch_arrays(next, at - here.size);  // the caller leaves m and v null
      }
    }
    Chunk g = load_chunk<Scalar>(grad + i);
    transform_gradient_chunk(c, g, param + i);
    if (!on_chunk(static_cast<const Chunk&>(g))) return false;
  }
  for (int k = 0; i < n; ++i, ++k)
    if (!on_element(transformed_gradient(c, static_cast<Scalar>(grad[i]),
                                         static_cast<Scalar>(param[i])),
                    k))
      return false;
  return true;
}

/// The same partial of s that fused_adam_block would return, without changing
/// anything: what the skip and error policies report and name the first bad
/// tensor by when a gradient is not within kSafeGradient (below).
template <class Param, class Scalar>
ADAMX_OPTIMISED_PASS double squared_norm_block(const AdamCoefficients<Scalar>& coefficients,
                          const TensorArrays<Param, Scalar> here, Index n,
                          const TensorArrays<Param, Scalar> next) {
  Lanes lanes;
  visit_transformed_gradient(
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
template <class Param, class Scalar>
ADAMX_OPTIMISED_PASS bool gradient_within_safe_bound_block(const AdamCoefficients<Scalar>& coefficients,
                                      const TensorArrays<Param, Scalar> here, Index n,
                                      const TensorArrays<Param, Scalar> next) {
  const Scalar bound = kSafeGradient<Scalar>;
  return visit_transformed_gradient(
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
