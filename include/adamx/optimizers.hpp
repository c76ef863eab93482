// The optimizers by name, each an Optimizer<Scalar, flavour> (optimizer.hpp)
// for every entry of ADAMX_FOR_EACH_OPTIMIZER (rules.hpp).
// A header of its own so that adamx/core.hpp can offer them without the
// checkpoint I/O that adamx/adamx.hpp brings.
#pragma once

#include "adamx/abi.hpp"
#include "adamx/optimizer.hpp"

ADAMX_NAMESPACE_BEGIN

// adamx::Name<Scalar> = Optimizer<Scalar, flavour::Name>, one alias per entry
// of ADAMX_FOR_EACH_OPTIMIZER (rules.hpp), so the list and the aliases cannot
// disagree. What each optimizer is, its paper and its defaults are in its
// rule file (include/adamx/rules/) and in docs/design.md.
#define ADAMX_OPTIMIZER_ALIAS(Name) \
  template <class Scalar>           \
  using Name = Optimizer<Scalar, flavour::Name>;
ADAMX_FOR_EACH_OPTIMIZER(ADAMX_OPTIMIZER_ALIAS)
#undef ADAMX_OPTIMIZER_ALIAS

ADAMX_NAMESPACE_END  // namespace adamx
