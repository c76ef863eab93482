// An independent scalar reference for Schedule-Free AdamW, written straight
// from the equations of Defazio et al. (NeurIPS 2024) as the authors'
// AdamWScheduleFree computes them (docs/design.md, "Schedule-Free AdamW"),
// t = 1, 2, …:
//     lr_t = lr·min(1, t/warmup_steps);  lr_max = max(lr_max, lr_t)  (from −1)
//     w_t = t^r·lr_max^weight_lr_power;  W_t = W_{t−1} + w_t;  c_t = w_t/W_t (0 if W_t = 0)
//     v ← β2·v + (1 − β2)·g²
//     u = g/(sqrt(v/(1 − β2^t)) + ε) + λ·y
//     y ← (1 − c_t)·y + c_t·z + lr_t·(β1·(1 − c_t) − 1)·u
//     z ← z − lr_t·u                                        (z = θ before step 1)
// long double, one loop per element, nothing shared with the library (no
// adamx header is included).
//
// As in naive_adamx.hpp, every quantity carries a first-order bound on the
// rounding error the library's Scalar arithmetic (per-step constants in
// double, rounded once to Scalar) can have accumulated against this
// trajectory: each rounded operation adds u·|result| + η, errors already
// present propagate with the operation's first derivatives. The library
// interpolates y from the nearer end (torch.lerp's form, which the bound
// follows: from z's end when c_t ≥ 1/2) and folds sqrt(1 − β2^t) into ε.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "rounding.hpp"

namespace naive_schedule_free {

using reference::one_minus_power_relative_error;
using reference::Precision;
using reference::Real;
using reference::tiny;

struct Hyper {
  Real lr = 0.0025L;
  Real beta1 = 0.9L, beta2 = 0.999L, eps = 1e-8L;
  Real weight_decay = 0;
  Real warmup_steps = 0, r = 0, weight_lr_power = 2;
  bool maximize = false;
  bool skip_nonfinite = false;  // otherwise non-finite gradients propagate
};

struct Element {
  Real y = 0, z = 0, v = 0;
  Real err_y = 0, err_z = 0, err_v = 0;
};

struct Group {
  std::vector<std::vector<Element>> tensors;
  std::int64_t t = 0;
  Real lr_max = -1, weight_sum = 0;
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
  const Real lr = hp.warmup_steps > 0 && td < hp.warmup_steps ? hp.lr * td / hp.warmup_steps : hp.lr;
  group.lr_max = std::max(group.lr_max, lr);
  const Real w = std::pow(td, hp.r) * std::pow(group.lr_max, hp.weight_lr_power);
  group.weight_sum += w;
  const Real c = group.weight_sum != 0 ? w / group.weight_sum : 0;
  const Real power = std::pow(hp.beta2, td);
  const Real sqrt_bias2 = std::sqrt(1 - power);
  const Real a = lr * (hp.beta1 * (1 - c) - 1);

  // The library's per-step constants: a few double operations each, rounded
  // once to Scalar. c_t's W_t is a sum of t terms in double (t·u_d).
  const Real rel_beta = u, rel_one_minus_beta = ud + u;
  const Real rel_sqrt_bias2 = one_minus_power_relative_error(hp.beta2, t, ud) / 2 + ud;
  const Real rel_c = (td + 4) * ud;
  const Real rel_weight = rel_c + u;                                  // c_t rounded
  const Real rel_one_minus_weight = (c < 1 ? c / (1 - c) : 0) * rel_c + ud + u;
  const Real rel_a = (hp.beta1 * std::fabs(1 - c) / std::fabs(hp.beta1 * (1 - c) - 1)) * (rel_c + 2 * ud) + 3 * ud + u;
  const Real rel_lr = 2 * ud + u;
  const Real rel_eps = rel_sqrt_bias2 + ud + u;

  for (std::size_t j = 0; j < group.tensors.size(); ++j) {
    for (std::size_t i = 0; i < group.tensors[j].size(); ++i) {
      Element& e = group.tensors[j][i];
      const Real g = hp.maximize ? -grads[j][i] : grads[j][i];
      if (t == 1) {
        e.z = e.y;
        e.err_z = e.err_y;
      }

      // ---- the equations ---------------------------------------------------
      const Real v = hp.beta2 * e.v + (1 - hp.beta2) * g * g;
      const Real den = std::sqrt(v / (1 - power)) + hp.eps;
      const Real step_u = g / den + hp.weight_decay * e.y;
      const Real y = (1 - c) * e.y + c * e.z + a * step_u;
      const Real z = e.z - lr * step_u;

      // ---- the bounds --------------------------------------------------------
      const Real square = (1 - hp.beta2) * g * g;
      const Real err_v = hp.beta2 * e.err_v + (rel_beta + u) * hp.beta2 * e.v + (rel_one_minus_beta + 2 * u) * square +
                         u * v + tiny(e.v, eta) + 2 * tiny(square, eta) + tiny(v, eta);
      const Real root = std::sqrt(v);
      Real err_root = std::sqrt(err_v);
      if (root > 0) err_root = std::fmin(err_root, err_v / (2 * root));
      err_root += u * root + eta;
      // The library's quotient [sqrt(1 − β2^t)·g]/(sqrt(v) + ε·sqrt(1 − β2^t)).
      const Real folded_den = root + hp.eps * sqrt_bias2;
      const Real err_folded_den = err_root + rel_eps * hp.eps * sqrt_bias2 + u * folded_den + eta;
      const Real numerator = sqrt_bias2 * g;
      const Real err_numerator = (rel_sqrt_bias2 + u) * std::fabs(numerator) + tiny(numerator, eta);
      const Real quotient = numerator / folded_den;
      const Real err_quotient = err_numerator / folded_den + std::fabs(quotient) * err_folded_den / folded_den +
                                u * std::fabs(quotient) + eta;
      Real err_u = err_quotient;
      if (hp.weight_decay != 0) {
        const Real decay = hp.weight_decay * e.y;
        err_u += hp.weight_decay * e.err_y + 2 * u * std::fabs(decay) + u * std::fabs(step_u) + tiny(decay, eta) +
                 tiny(step_u, eta);
      }
      // y: the interpolation from the nearer end (its value depends on y and
      // z with weights 1 − c and c, whichever end it starts from), then the
      // step a·u. The rounding of z − y is scaled by the weight it is
      // multiplied by.
      const Real towards_z = e.z - e.y;
      const Real interpolated = (1 - c) * e.y + c * e.z;
      const Real scale = c >= 0.5L ? 1 - c : c;
      const Real rel_scale = c >= 0.5L ? rel_one_minus_weight : rel_weight;
      const Real err_interpolated = (1 - c) * e.err_y + c * e.err_z +
                                    scale * (u * std::fabs(towards_z) + tiny(towards_z, eta)) +
                                    (rel_scale + u) * scale * std::fabs(towards_z) + u * std::fabs(interpolated) +
                                    2 * eta;
      const Real err_y = err_interpolated + std::fabs(a) * err_u + (rel_a + u) * std::fabs(a * step_u) +
                         u * std::fabs(y) + 2 * eta;
      const Real err_z = e.err_z + lr * err_u + (rel_lr + u) * lr * std::fabs(step_u) + u * std::fabs(z) + 2 * eta;

      e.y = y;
      e.z = z;
      e.v = v;
      e.err_y = err_y;
      e.err_z = err_z;
      e.err_v = err_v;
    }
  }
  return true;
}

}  // namespace naive_schedule_free
