// An independent scalar reference for Adan, written straight from the
// equations of Xie et al. (TPAMI 2024) as the authors' adan.py computes them
// (docs/design.md, "Adan"), t = 1, 2, …:
//     d = g − g_prev                    (g_prev = g at t = 1)
//     m ← β1·m + (1 − β1)·g
//     v ← β2·v + (1 − β2)·d
//     n ← β3·n + (1 − β3)·(g + β2·d)²
//     den = sqrt(n)/sqrt(1 − β3^t) + ε
//     u = α/(1 − β1^t)·m/den + α·β2/(1 − β2^t)·v/den
//     θ ← (θ − u)/(1 + αλ), or with no_prox θ ← θ(1 − αλ) − u
// long double, one loop per element, in the authors' order (two quotients,
// a division by 1 + αλ), nothing shared with the library (no adamx header is
// included).
//
// As in naive_adamx.hpp, every quantity carries a first-order bound on the
// rounding error the library's Scalar arithmetic (per-step constants in
// double, rounded once to Scalar) can have accumulated against this
// trajectory: each rounded operation adds u·|result| + η (u the unit
// roundoff, η the smallest subnormal), errors already present propagate
// with the operation's first derivatives. The library may evaluate the
// step in any algebraically equal order (it folds sqrt(1 − β3^t) into the
// constants and divides once): the bound covers the roundings of such an
// order, a few per quantity, not the order itself.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "rounding.hpp"

namespace naive_adan {

using reference::one_minus_power_relative_error;
using reference::Precision;
using reference::Real;
using reference::tiny;

struct Hyper {
  Real lr = 1e-3L;
  Real beta1 = 0.98L, beta2 = 0.92L, beta3 = 0.99L, eps = 1e-8L;
  Real weight_decay = 0;
  bool no_prox = false;
  bool maximize = false;
  bool skip_nonfinite = false;  // otherwise non-finite gradients propagate
};

struct Element {
  Real theta = 0, m = 0, v = 0, n = 0, prev_grad = 0;
  Real err_theta = 0, err_m = 0, err_v = 0, err_n = 0;  // prev_grad is stored exactly
};

struct Group {
  std::vector<std::vector<Element>> tensors;
  std::int64_t t = 0;
};

/// One step with the gradients `grads[j][i]` (exactly those the library
/// received). Returns false when the step was skipped (a non-finite
/// gradient with skip_nonfinite).
inline bool step(Group& group, const Hyper& hp, const std::vector<std::vector<Real>>& grads, const Precision& p) {
  const Real u = p.u, eta = p.eta, ud = p.u_double;
  if (hp.skip_nonfinite) {
    for (const auto& tensor : grads)
      for (Real g : tensor)
        if (!std::isfinite(g)) return false;
  }
  const std::int64_t t = ++group.t;
  const Real td = static_cast<Real>(t);
  const Real bias1 = 1 - std::pow(hp.beta1, td);
  const Real bias2 = 1 - std::pow(hp.beta2, td);
  const Real sqrt_bias3 = std::sqrt(1 - std::pow(hp.beta3, td));
  const Real rel_bias1 = one_minus_power_relative_error(hp.beta1, t, ud);
  const Real rel_bias2 = one_minus_power_relative_error(hp.beta2, t, ud);
  const Real rel_sqrt_bias3 = one_minus_power_relative_error(hp.beta3, t, ud) / 2 + ud;
  // The library's per-step constants, each a few double operations rounded
  // once to Scalar; with the eps scaled as it folds sqrt(1 − β3^t) in.
  const Real rel_beta = u;                      // β rounded to Scalar
  const Real rel_one_minus_beta = ud + u;       // 1 − β in double, then rounded
  const Real rel_m_step = rel_sqrt_bias3 + rel_bias1 + 3 * ud + u;           // α·c₃/(1 − β1^t)
  const Real rel_v_step = rel_sqrt_bias3 + rel_bias2 + 4 * ud + u;           // α·β2·c₃/(1 − β2^t)
  const Real rel_eps = rel_sqrt_bias3 + ud + u;                              // ε·c₃
  const Real decay_product = hp.lr * hp.weight_decay;
  const Real rel_decay = hp.no_prox ? 2 * ud * (1 + decay_product / std::fabs(1 - decay_product)) + u
                                    : 3 * ud + u;  // 1 − αλ, or 1/(1 + αλ)

  for (std::size_t j = 0; j < group.tensors.size(); ++j) {
    for (std::size_t i = 0; i < group.tensors[j].size(); ++i) {
      Element& e = group.tensors[j][i];
      const Real g = hp.maximize ? -grads[j][i] : grads[j][i];

      // ---- the equations ---------------------------------------------------
      const Real previous = t == 1 ? g : e.prev_grad;
      const Real d = g - previous;
      const Real m = hp.beta1 * e.m + (1 - hp.beta1) * g;
      const Real v = hp.beta2 * e.v + (1 - hp.beta2) * d;
      const Real extrapolated = g + hp.beta2 * d;
      const Real n = hp.beta3 * e.n + (1 - hp.beta3) * extrapolated * extrapolated;
      const Real root = std::sqrt(n);
      const Real den = root / sqrt_bias3 + hp.eps;
      const Real update = hp.lr / bias1 * m / den + hp.lr * hp.beta2 / bias2 * v / den;
      Real theta_new;
      if (hp.weight_decay == 0 || hp.lr == 0) {
        theta_new = e.theta - update;
      } else if (hp.no_prox) {
        theta_new = e.theta * (1 - decay_product) - update;
      } else {
        theta_new = (e.theta - update) / (1 + decay_product);
      }

      // ---- the bounds ------------------------------------------------------
      // d: g and g_prev are exact (the stored gradient is the one received).
      const Real err_d = u * std::fabs(d) + tiny(d, eta);
      const Real err_m = hp.beta1 * e.err_m + (rel_beta + u) * std::fabs(hp.beta1 * e.m) +
                         (rel_one_minus_beta + u) * std::fabs((1 - hp.beta1) * g) + u * std::fabs(m) +
                         tiny(e.m, eta) + tiny(g, eta) + tiny(m, eta);
      const Real err_v = hp.beta2 * e.err_v + (1 - hp.beta2) * err_d + (rel_beta + u) * std::fabs(hp.beta2 * e.v) +
                         (rel_one_minus_beta + u) * std::fabs((1 - hp.beta2) * d) + u * std::fabs(v) +
                         tiny(e.v, eta) + tiny(d, eta) + tiny(v, eta);
      const Real err_extrapolated = hp.beta2 * err_d + (rel_beta + u) * std::fabs(hp.beta2 * d) +
                                    u * std::fabs(extrapolated) + tiny(d, eta) + tiny(extrapolated, eta);
      const Real square = (1 - hp.beta3) * extrapolated * extrapolated;
      const Real err_n = hp.beta3 * e.err_n + 2 * (1 - hp.beta3) * std::fabs(extrapolated) * err_extrapolated +
                         (rel_beta + u) * hp.beta3 * e.n + (rel_one_minus_beta + 2 * u) * square + u * n +
                         tiny(e.n, eta) + 2 * tiny(square, eta) + tiny(n, eta);
      // sqrt(n) and the folded denominator sqrt(n) + ε·c₃ (den·c₃).
      Real err_root = std::sqrt(err_n);
      if (root > 0) err_root = std::fmin(err_root, err_n / (2 * root));
      err_root += u * root + eta;
      const Real folded_den = den * sqrt_bias3;
      const Real err_folded_den = err_root + rel_eps * hp.eps * sqrt_bias3 + u * folded_den + eta;
      // The numerator α·c₃/(1 − β1^t)·m + α·β2·c₃/(1 − β2^t)·v and the quotient.
      const Real m_term = std::fabs(hp.lr * sqrt_bias3 / bias1 * m);
      const Real v_term = std::fabs(hp.lr * hp.beta2 * sqrt_bias3 / bias2 * v);
      const Real numerator = update * folded_den;
      const Real err_numerator = (rel_m_step + u) * m_term + hp.lr * sqrt_bias3 / bias1 * err_m +
                                 (rel_v_step + u) * v_term + hp.lr * hp.beta2 * sqrt_bias3 / bias2 * err_v +
                                 u * std::fabs(numerator) + 3 * eta;
      const Real err_update = err_numerator / folded_den + std::fabs(update) * err_folded_den / folded_den +
                              u * std::fabs(update) + eta;
      // θ.
      Real err_theta;
      if (hp.weight_decay == 0 || hp.lr == 0) {
        err_theta = e.err_theta + err_update;
      } else if (hp.no_prox) {
        const Real decayed = e.theta * (1 - decay_product);
        err_theta = std::fabs(1 - decay_product) * e.err_theta + (rel_decay + u) * std::fabs(decayed) +
                    tiny(decayed, eta) + err_update;
      } else {
        const Real before = e.theta - update;
        err_theta = (e.err_theta + err_update + u * std::fabs(before) + tiny(before, eta)) / (1 + decay_product) +
                    rel_decay * std::fabs(theta_new);
      }
      err_theta += u * std::fabs(theta_new) + tiny(theta_new, eta);

      e.theta = theta_new;
      e.m = m;
      e.v = v;
      e.n = n;
      e.prev_grad = g;
      e.err_theta = err_theta;
      e.err_m = err_m;
      e.err_v = err_v;
      e.err_n = err_n;
    }
  }
  return true;
}

}  // namespace naive_adan
