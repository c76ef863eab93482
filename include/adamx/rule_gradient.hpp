// The gradient the moments see, for the update rules whose only change to
// the gradient is maximize's sign flip (Lion, Adan, Schedule-Free AdamW, Muon):
// none of them decays through the gradient, so θ is never read. Each rule
// still declares its own static `gradient` (the kernel calls Rule::gradient
// in the update and in the checking pass of the skip/error policies, which
// must agree to the bit) and forwards it here.
#pragma once

#include "adamx/abi.hpp"
#include "adamx/unoptimised_builds.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

/// −grad when maximizing, else grad; L is a Scalar or a Chunk of them (a
/// negation is a sign flip, so either gives the same bits).
template <class L>
ADAMX_ALWAYS_INLINE L maximize_only_gradient(bool maximize, L grad) {
  if (maximize) grad = -grad;
  return grad;
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
