// The per-element update rule of the Adam family, shared by Adam, AdamW and
// AdamX. AdamX differs from Adam only in the coefficient of g² in the second
// moment, (1 − β2)·γ, where γ is a per-group scalar fixed for the whole step
// (docs/design.md D1: γ_{t−1} scales g²). With γ = 1 the coefficient is exactly
// (1 − β2), so Adam is this rule with γ ≡ 1 — the same instructions, bit for
// bit (docs/design.md D4).
//
//   Adam:  D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
//   AdamW: I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
//   AMSGrad: S. J. Reddi, S. Kale, S. Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
//
// The moments are computed as torch.optim.Adam computes them (mul, then add).
// The step uses the algebraically identical form of Section 2 of Kingma & Ba
//   α/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + ε)
//     = [α·sqrt(1−β2^t)/(1−β1^t)] · m / (sqrt(v) + ε·sqrt(1−β2^t))
// with both bracketed constants computed once per step in double: one
// division per element instead of two. The pass is memory-bound only if the
// divider keeps up, and it does not with two (measured: 1.6 ns against 1.15
// ns for the copy roofline per float element, SSE2). Rounding differs from
// PyTorch's order by an ulp or so, not more.
#pragma once

#include <cmath>
#include <cstdint>

#include "adamx/options.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

/// How one step turns m and the denominator into θ's change. A per-step
/// choice: RAdam switches from `momentum` to `adam` once ρ_t > 5.
enum class ElementRule {
  adam,       ///< θ += (−α'·m) / (sqrt(v) + ε')                     (Adam, AdamX, RAdam rectified)
  momentum,   ///< θ += −α'·m                                        (RAdam while ρ_t ≤ 5)
  bounded,    ///< θ −= clip(α'/(sqrt(v) + ε), lower, upper)·m      (AdaBound)
  modulated,  ///< η = α'/(sqrt(v) + ε); s ← β s + (1−β) η; θ −= min(η, s)·m   (AdaMod)
};

/// RAdam's rectification at step t (t ≥ 1), in double: whether the variance
/// of the adaptive step is tractable yet (ρ_t > 5) and the factor r_t.
struct Rectification {
  bool rectified;
  double factor;  // r_t when rectified, else 0
};

inline Rectification radam_rectification(double beta2, std::int64_t t) {
  const double td = static_cast<double>(t);
  const double power = std::pow(beta2, td);
  const double rho_inf = 2.0 / (1.0 - beta2) - 1.0;
  const double rho_t = rho_inf - 2.0 * td * power / (1.0 - power);
  if (!(rho_t > 5.0)) return {false, 0.0};
  return {true, std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                          ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))};
}

/// Everything the element pass needs, computed once per group and step in
/// double (bias corrections, γ-scaled constants) and rounded once to Scalar.
template <class Scalar>
struct AdamCoefficients {
  Scalar beta1;
  Scalar one_minus_beta1;
  Scalar beta2;
  Scalar v_coefficient;    // (1 − β2)·γ_{t−1}
  Scalar neg_step_size;    // −α·sqrt(1 − β2^t) / (1 − β1^t)
  Scalar eps;              // ε·sqrt(1 − β2^t)
  Scalar l2;               // λ when decay is L2, else 0 (unused)
  Scalar decay_factor;     // 1 − αλ when decay is decoupled, else 1 (unused)
  // AdaBound and AdaMod (the bounded and modulated rules):
  Scalar step_size;        // α·sqrt(1 − β2^t) / (1 − β1^t), the numerator of η
  Scalar lower;            // AdaBound: final_lr·(1 − 1/(γ_b t + 1))
  Scalar upper;            // AdaBound: final_lr·(1 + 1/(γ_b t))
  Scalar beta_step;        // AdaMod: EMA rate of η
  Scalar one_minus_beta_step;
  ElementRule rule;
  bool maximize;
  bool use_l2;
  bool use_decoupled;
  bool amsgrad;

  template <class Flavour>
  static AdamCoefficients make(const BasicOptions<Flavour>& o, std::int64_t t, double gamma) {
    // t is the step being taken (≥ 1). pow in double: exact enough far past
    // 2^24 steps, where a float counter would stall.
    const double td = static_cast<double>(t);
    const double bias1 = 1.0 - std::pow(o.beta1, td);
    const double bias2 = 1.0 - std::pow(o.beta2, td);
    AdamCoefficients c;
    c.beta1 = static_cast<Scalar>(o.beta1);
    c.one_minus_beta1 = static_cast<Scalar>(1.0 - o.beta1);
    c.beta2 = static_cast<Scalar>(o.beta2);
    c.v_coefficient = static_cast<Scalar>((1.0 - o.beta2) * gamma);
    const double sqrt_bias2 = std::sqrt(bias2);
    c.neg_step_size = static_cast<Scalar>(-(o.lr * sqrt_bias2 / bias1));
    c.eps = static_cast<Scalar>(o.eps * sqrt_bias2);
    c.use_l2 = o.weight_decay != 0.0 && o.decay_mode == WeightDecayMode::l2;
    c.use_decoupled = o.weight_decay != 0.0 && o.decay_mode == WeightDecayMode::decoupled;
    c.l2 = static_cast<Scalar>(o.weight_decay);
    c.decay_factor = static_cast<Scalar>(1.0 - o.lr * o.weight_decay);
    c.maximize = o.maximize;
    c.amsgrad = o.amsgrad;
    c.rule = ElementRule::adam;
    c.step_size = static_cast<Scalar>(o.lr * sqrt_bias2 / bias1);
    c.lower = c.upper = c.beta_step = c.one_minus_beta_step = Scalar(0);
    if constexpr (Flavour::algorithm == Algorithm::radam) {
      const Rectification r = radam_rectification(o.beta2, t);
      if (r.rectified) {
        c.neg_step_size = static_cast<Scalar>(-(o.lr * r.factor * sqrt_bias2 / bias1));
      } else {
        c.rule = ElementRule::momentum;
        c.neg_step_size = static_cast<Scalar>(-(o.lr / bias1));
      }
    } else if constexpr (Flavour::algorithm == Algorithm::adabound) {
      // ε is added to sqrt(v) before bias correction, as in the reference code.
      c.rule = ElementRule::bounded;
      c.eps = static_cast<Scalar>(o.eps);
      c.lower = static_cast<Scalar>(o.final_lr * (1.0 - 1.0 / (o.bound_speed * td + 1.0)));
      c.upper = static_cast<Scalar>(o.final_lr * (1.0 + 1.0 / (o.bound_speed * td)));
    } else if constexpr (Flavour::algorithm == Algorithm::adamod) {
      c.rule = ElementRule::modulated;
      c.eps = static_cast<Scalar>(o.eps);
      c.beta_step = static_cast<Scalar>(o.beta_step);
      c.one_minus_beta_step = static_cast<Scalar>(1.0 - o.beta_step);
    }
    return c;
  }
};

/// The gradient the moments see: sign flipped for maximize, plus λθ for L2
/// decay. The checking pass of the skip/error policies and the fused pass both
/// call this, so the `s` they compute is the same to the bit.
template <class Scalar>
inline Scalar transformed_gradient(const AdamCoefficients<Scalar>& c, Scalar grad, Scalar param) {
  Scalar g = c.maximize ? -grad : grad;
  if (c.use_l2) g = g + c.l2 * param;
  return g;
}

/// min(a, b) that returns NaN when either is NaN, as torch.min does.
template <class Scalar>
inline Scalar nan_min(Scalar a, Scalar b) {
  return (b < a || b != b) ? b : a;
}

/// x clipped to [lower, upper]; NaN stays NaN, as torch.clamp keeps it.
template <class Scalar>
inline Scalar nan_clip(Scalar x, Scalar lower, Scalar upper) {
  return x < lower ? lower : (x > upper ? upper : x);
}

/// θ after the step from the (decayed) θ `p`, m and the second moment in use
/// (v or v_max), by the step's rule. `step_avg` is AdaMod's per-element state
/// (null otherwise).
template <class Scalar>
inline Scalar stepped(const AdamCoefficients<Scalar>& c, Scalar p, Scalar m, Scalar second,
                      Scalar* step_avg) {
  switch (c.rule) {
    case ElementRule::adam: break;
    case ElementRule::momentum: return p + c.neg_step_size * m;
    case ElementRule::bounded: {
      const Scalar eta = c.step_size / (std::sqrt(second) + c.eps);
      return p - nan_clip(eta, c.lower, c.upper) * m;
    }
    case ElementRule::modulated: {
      const Scalar eta = c.step_size / (std::sqrt(second) + c.eps);
      *step_avg = *step_avg * c.beta_step + c.one_minus_beta_step * eta;
      return p - nan_min(eta, *step_avg) * m;
    }
  }
  const Scalar denominator = std::sqrt(second) + c.eps;
  return p + (c.neg_step_size * m) / denominator;
}

/// One element of one step. Param is the parameters' and gradients' type;
/// Scalar, the state's, is the type the arithmetic runs in (the same type, or
/// float for bfloat16/half parameters, converted on load and rounded once on
/// store). Returns the transformed gradient, whose square the caller
/// accumulates into s.
template <class Param, class Scalar>
inline Scalar adam_update(const AdamCoefficients<Scalar>& c, Param& param, Param grad, Scalar& m,
                          Scalar& v, Scalar* v_max, Scalar* step_avg) {
  const Scalar theta = static_cast<Scalar>(param);
  const Scalar g = transformed_gradient(c, static_cast<Scalar>(grad), theta);
  Scalar p = theta;
  if (c.use_decoupled) p = p * c.decay_factor;
  m = m * c.beta1 + c.one_minus_beta1 * g;
  v = v * c.beta2 + (c.v_coefficient * g) * g;
  Scalar second = v;
  if (c.amsgrad) {
    // max that propagates NaN from either side, as torch.maximum does
    // (std::max would drop a NaN v).
    const Scalar previous = *v_max;
    *v_max = (previous < v || v != v) ? v : previous;
    second = *v_max;
  }
  param = static_cast<Param>(stepped(c, p, m, second, step_avg));
  return g;
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
