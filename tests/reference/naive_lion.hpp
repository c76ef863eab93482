// An independent scalar reference for Lion, written straight from the
// equations of Chen et al. 2023 (Algorithm 2; docs/design.md, "Lion"):
//     c = β1·m + (1 − β1)·g
//     θ ← θ·(1 − αλ) − α·sign(c)
//     m ← β2·m + (1 − β2)·g
// long double, one loop per element, nothing shared with the library (no
// adamx header is included).
//
// As in naive_adamx.hpp, every quantity carries a first-order bound on the
// rounding error the library's Scalar arithmetic (with per-step constants
// computed in double and rounded once) can have accumulated relative to this
// trajectory. sign(c) is not continuous: where |c| exceeds the slack times
// its bound, the library's sign must be the reference's, and θ's bound grows
// only by the roundings of the decay and the sum. Where |c| is within its
// bound (a "near tie"), either sign is a correct rounding of the equations:
// the reference counts the event (so a test can require near ties to be
// rare) and takes the sign the library took, read off the library's new θ
// (which differs from θ·(1 − αλ) by about α, or not at all for sign 0) when
// the caller passes it, or else widens θ's bound by 2α, the distance between
// the two outcomes. An exact 0 is a tie only
// when both products are exactly 0 (m and g both 0); then the library's c is
// exactly 0 too and sign(0) = 0 leaves θ to the decay.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "rounding.hpp"

namespace naive_lion {

using reference::Precision;
using reference::Real;
using reference::tiny;

struct Hyper {
  Real lr = 1e-4L;
  Real beta1 = 0.9L, beta2 = 0.99L;
  Real weight_decay = 0;
  bool maximize = false;
  bool skip_nonfinite = false;  // otherwise non-finite gradients propagate
};

struct Element {
  Real theta = 0, m = 0;
  Real err_theta = 0, err_m = 0;  // bounds on |library − reference|
};

struct Group {
  std::vector<std::vector<Element>> tensors;
  std::int64_t t = 0;
  std::int64_t near_ties = 0;  // elements whose sign the rounding could flip
};

inline Real sign(Real c) { return c > 0 ? Real{1} : c < 0 ? Real{-1} : c == 0 ? Real{0} : c; }

/// One step with the gradients `grads[j][i]` (exactly those the library
/// received). `slack` is the factor the caller's comparisons allow over the
/// bounds: a sign counts as decided only where |c| > slack·bound. Returns
/// false when the step was skipped (a non-finite gradient with skip).
/// `library_theta`, if given, holds the library's θ after this step; it is
/// read only at near ties.
inline bool step(Group& group, const Hyper& hp, const std::vector<std::vector<Real>>& grads, const Precision& p,
                 Real slack, const std::vector<std::vector<Real>>* library_theta = nullptr) {
  const Real u = p.u, eta = p.eta, ud = p.u_double;
  if (hp.skip_nonfinite) {
    for (const auto& tensor : grads)
      for (Real g : tensor)
        if (!std::isfinite(g)) return false;
  }
  ++group.t;
  const Real decay = 1 - hp.lr * hp.weight_decay;
  // Constants as the library makes them: in double, rounded once to Scalar.
  const Real rel_decay = 2 * ud + u;  // 1 − α·λ: a product and a difference in double
  const Real rel_beta = u;            // β rounded to Scalar
  const Real rel_one_minus_beta = ud + u;
  const Real err_lr = u * hp.lr;  // −α rounded to Scalar

  for (std::size_t j = 0; j < group.tensors.size(); ++j) {
    for (std::size_t i = 0; i < group.tensors[j].size(); ++i) {
      Element& e = group.tensors[j][i];
      const Real g = hp.maximize ? -grads[j][i] : grads[j][i];

      // ---- the equations ---------------------------------------------------
      Real theta = e.theta;
      Real err_theta = e.err_theta;
      const bool decays = hp.weight_decay != 0;
      if (decays) {
        theta = theta * decay;
        err_theta = std::fabs(decay) * err_theta + (rel_decay + u) * std::fabs(theta) + tiny(theta, eta);
      }
      const Real c = hp.beta1 * e.m + (1 - hp.beta1) * g;
      const Real m = hp.beta2 * e.m + (1 - hp.beta2) * g;

      // ---- c's bound: two rounded products, one rounded sum ------------------
      const Real a1 = std::fabs(hp.beta1 * e.m), b1 = std::fabs((1 - hp.beta1) * g);
      const Real err_c = hp.beta1 * e.err_m + (rel_beta + u) * a1 + (rel_one_minus_beta + u) * b1 +
                         u * std::fabs(c) + ((e.m != 0) + (g != 0) + (c != 0)) * eta;
      Real s = sign(c);
      // A near tie: c within the slack of its bound (an exact 0 from
      // cancelling non-zero terms included: the library's c may be ±ulps).
      const bool near_tie = std::isfinite(c) && err_c != 0 && std::fabs(c) <= slack * err_c;
      bool widen = false;
      if (near_tie) {
        ++group.near_ties;
        if (library_theta != nullptr) {
          const Real moved = theta - (*library_theta)[j][i];  // α·s up to roundings far below α/2
          s = moved > hp.lr / 2 ? Real{1} : moved < -hp.lr / 2 ? Real{-1} : Real{0};
        } else {
          widen = true;
        }
      }
      const Real theta_new = theta - hp.lr * s;
      // ---- θ's bound: −α rounded, exact product with ±1, one rounded sum ----
      err_theta = err_theta + (s != 0 ? err_lr : 0) + u * std::fabs(theta_new) + tiny(theta_new, eta);
      if (widen) err_theta += 2 * hp.lr;
      // ---- m's bound: as c's, with β2 -----------------------------------------
      const Real a2 = std::fabs(hp.beta2 * e.m), b2 = std::fabs((1 - hp.beta2) * g);
      const Real err_m = hp.beta2 * e.err_m + (rel_beta + u) * a2 + (rel_one_minus_beta + u) * b2 +
                         u * std::fabs(m) + ((e.m != 0) + (g != 0) + (m != 0)) * eta;

      e.theta = theta_new;
      e.err_theta = err_theta;
      e.m = m;
      e.err_m = err_m;
    }
  }
  return true;
}

}  // namespace naive_lion
