// The passes over a tensor's memory: the fused update (θ, m, v and the partial
// sums of s in one pass, docs/design.md D1) and the checking pass of the skip/error
// non-finite policies. The only loops over elements live here.
//
// s is summed in double in a fixed pattern that does not depend on how the
// work is split (docs/design.md, "How s is summed"): each tensor is cut into blocks of kNormBlock
// elements; inside a block, element k goes to lane k mod kNormLanes; a block's
// partial is the lanes combined pairwise in a fixed tree; the group's s is the
// blocks' partials added in order, tensor after tensor. Threads or shards that
// split work on block boundaries therefore reproduce s bit for bit.
#pragma once

#include <algorithm>

#include "adamx/rule.hpp"
#include "adamx/tensor_ref.hpp"

namespace adamx {
namespace detail {

constexpr Index kNormBlock = 4096;
constexpr int kNormLanes = 8;
static_assert(kNormBlock % kNormLanes == 0, "blocks must hold whole lane groups");

inline double combine_lanes(const double (&lanes)[kNormLanes]) {
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

inline double square(double x) { return x * x; }

/// Applies the Adam-family rule to n elements and adds the tensor's block
/// partials of s = Σg² (transformed g) to `s`, in order. `v_max` may be null
/// when amsgrad is off.
template <class Scalar>
void fused_adam_pass(const AdamCoefficients<Scalar>& c, Scalar* param, const Scalar* grad,
                     Scalar* m, Scalar* v, Scalar* v_max, Index n, double& s) {
  for (Index start = 0; start < n; start += kNormBlock) {
    const Index end = std::min(start + kNormBlock, n);
    double lanes[kNormLanes] = {};
    for (Index i = start; i < end; ++i) {
      const Scalar g = adam_update(c, param[i], grad[i], m[i], v[i], v_max ? v_max + i : nullptr);
      lanes[(i - start) % kNormLanes] += square(static_cast<double>(g));
    }
    s += combine_lanes(lanes);
  }
}

/// The same s as fused_adam_pass would add, without changing anything: the
/// first pass of the skip and error policies.
template <class Scalar>
void squared_norm_pass(const AdamCoefficients<Scalar>& c, const Scalar* param, const Scalar* grad,
                       Index n, double& s) {
  for (Index start = 0; start < n; start += kNormBlock) {
    const Index end = std::min(start + kNormBlock, n);
    double lanes[kNormLanes] = {};
    for (Index i = start; i < end; ++i) {
      const Scalar g = transformed_gradient(c, grad[i], param[i]);
      lanes[(i - start) % kNormLanes] += square(static_cast<double>(g));
    }
    s += combine_lanes(lanes);
  }
}

}  // namespace detail
}  // namespace adamx
