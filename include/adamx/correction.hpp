// AdamX's per-group correction: the factor γ that scales g² in the second
// moment, driven by how the group's squared gradient norm s compares with its
// own bias-corrected EMA history (docs/design.md section 3, decisions D2, D3, D5).
//
//   h ← β_n h + (1 − β_n) s          (the history includes the current step)
//   ĥ ← h / (1 − β_n^t)
//   r ← s / ĥ                        (r = 1 while every gradient so far was zero)
//   γ ← β3 γ + (1 − β3) r
//
// Because h includes s before the ratio is taken, step 1 gives r = 1, a
// constant norm keeps r = 1, and r is invariant to the gradients' scale; no ε
// is needed and none is used (D3). Everything here is double whatever the
// parameters' type.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// The largest value γ can take: r ≤ (1 − β_n^t)/(1 − β_n) < 1/(1 − β_n), and γ
/// is a convex combination of earlier r's.
inline double gamma_bound(double beta_norm) { return 1.0 / (1.0 - beta_norm); }

/// Advances γ and h (a group's state, see state.hpp) by one step with squared
/// norm `s` at step `t` (t ≥ 1, the step just taken). A non-finite s leaves
/// both unchanged (D5): one bad gradient must not poison every later step.
/// Returns false then.
inline bool advance_correction(double& gamma, double& h_state, double s, std::int64_t t,
                               double beta3, double beta_norm) {
  if (!std::isfinite(s)) return false;
  const double h = beta_norm * h_state + (1.0 - beta_norm) * s;
  const double h_hat = h / (1.0 - std::pow(beta_norm, static_cast<double>(t)));
  const double bound = gamma_bound(beta_norm);
  // ĥ = 0 only when every s so far was 0: nothing to compare, r = 1. The min
  // guards the mathematical bound against rounding (and against ĥ underflowing
  // to 0 while s > 0, which would give r = ∞); it changes r by at most an ulp
  // otherwise.
  const double r = h_hat > 0.0 ? std::min(s / h_hat, bound) : 1.0;
  // With β3 = 1 this is γ·1 + 0·r = γ exactly, so Adam's γ never leaves 1.
  gamma = std::min(beta3 * gamma + (1.0 - beta3) * r, bound);
  h_state = h;
  return true;
}

ADAMX_NAMESPACE_END  // namespace adamx
