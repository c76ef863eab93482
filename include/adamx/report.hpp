// What one step did to one group.
#pragma once

#include <cstdint>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

struct StepReport {
  std::int64_t step = 0;       ///< the group's t after this call
  double grad_norm_sq = 0.0;   ///< s: Σg² over the group (after maximize/L2), in double
  double gamma = 1.0;          ///< γ after this step (the value the next step uses)
  bool finite = true;          ///< s was finite; otherwise γ and h were left as they were
  bool applied = true;         ///< m, v and θ were updated (false: skipped by policy)
};

ADAMX_NAMESPACE_END  // namespace adamx
