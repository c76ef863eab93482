// An independent scalar reference for Adam / AdamW / AdamX and the baselines
// RAdam, AdaBound and AdaMod, written straight from the equations in
// docs/design.md ("Baselines" for the baselines, with AdaBound's and AdaMod's
// bias correction and ε placed as in their authors' reference code): long
// double, one loop per element, and nothing shared with the library (this
// header includes no adamx header).
//
// Alongside every quantity it carries a first-order bound on the rounding
// error that the library's arithmetic (in float or double, with its
// double-precision per-group scalars) can have accumulated in that quantity
// relative to this exact-as-possible trajectory. Tests then assert
//     |library − reference| ≤ kSlack · bound
// so the tolerance is derived, element by element and step by step, from the
// operations the equations require rather than picked by hand. The model:
//   * every rounding of a Scalar operation adds at most u·|result| + η,
//     where u is the Scalar's unit roundoff and η its smallest subnormal
//     (which covers results that underflow, e.g. m decaying under zero
//     gradients);
//   * errors already present propagate through each operation with that
//     operation's first derivatives (|∂f/∂x|·e_x);
//   * per-step constants (bias corrections, (1−β2)γ, −α/(1−β1^t)) are computed
//     in double and rounded once to Scalar: u_d·(1 + condition) + u each.
// The EMAs contract (factor β < 1 per step), so the bounds on m, v, h and γ
// settle at a few ulps times 1/(1−β); θ's bound grows additively with t.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace naive {

using Real = long double;

/// Which step the moments feed (the rest of the update is common).
enum class Rule { adam, radam, adabound, adamod };

struct Hyper {
  Rule rule = Rule::adam;
  Real final_lr = 0.1L, bound_speed = 1e-3L;  // AdaBound
  Real beta_step = 0.999L;                     // AdaMod
  Real lr = 1e-3L;
  Real beta1 = 0.9L, beta2 = 0.999L, beta3 = 0.99L, beta_norm = 0.99L, eps = 1e-8L;
  Real weight_decay = 0;
  bool decoupled = false;  // θ ← θ(1 − αλ) instead of g ← g + λθ
  bool amsgrad = false;
  bool maximize = false;
  bool skip_nonfinite = false;  // otherwise non-finite gradients propagate
};

struct Element {
  Real theta = 0, m = 0, v = 0, v_max = 0;
  Real step_avg = 0;  // AdaMod's EMA of the per-element step size η
  // Bounds on |library − reference| for each quantity.
  Real err_theta = 0, err_m = 0, err_v = 0, err_v_max = 0, err_step_avg = 0;
};

struct Group {
  std::vector<std::vector<Element>> tensors;
  std::int64_t t = 0;
  Real gamma = 1, h = 0;
  Real err_gamma = 0, err_h = 0;
  Real last_s = 0;
};

/// The library's working precision: unit roundoff and smallest subnormal of
/// its Scalar, and of double (its per-group scalars).
struct Precision {
  Real u;
  Real eta;
  Real u_double = std::numeric_limits<double>::epsilon() / 2;
  // When θ is stored in a narrower type than the arithmetic (bfloat16 or half
  // parameters, float arithmetic): that type's unit roundoff and half its
  // smallest subnormal, for the one rounding of θ on store. Zero otherwise.
  Real u_store = 0;
  Real eta_store = 0;
  template <class Scalar>
  static Precision of() {
    return {std::numeric_limits<Scalar>::epsilon() / 2, std::numeric_limits<Scalar>::denorm_min()};
  }
};

/// Relative error bound of 1 − β^t computed in double (pow correctly rounded
/// to within an ulp, then one subtraction): cancellation grows it by β^t/(1−β^t).
inline Real one_minus_power_error(Real beta, std::int64_t t, Real u_double) {
  const Real power = std::pow(beta, static_cast<Real>(t));
  return u_double * (1 + 2 * power / (1 - power));
}

/// One step. `grads[j][i]` is the gradient the library also received
/// (already rounded to its Scalar). Returns false when the step was skipped.
inline bool step(Group& group, const Hyper& hp, const std::vector<std::vector<Real>>& grads,
                 const Precision& p) {
  const Real u = p.u, eta = p.eta, ud = p.u_double;

  // The gradient the moments see: sign flip, then L2 decay.
  auto transformed = [&](Real g, Real theta) {
    if (hp.maximize) g = -g;
    if (!hp.decoupled && hp.weight_decay != 0) g = g + hp.weight_decay * theta;
    return g;
  };

  if (hp.skip_nonfinite) {
    Real s = 0;
    for (std::size_t j = 0; j < group.tensors.size(); ++j)
      for (std::size_t i = 0; i < group.tensors[j].size(); ++i) {
        const Real g = transformed(grads[j][i], group.tensors[j][i].theta);
        s += g * g;
      }
    if (!std::isfinite(s)) return false;
  }

  const std::int64_t t = ++group.t;
  const Real bias1 = 1 - std::pow(hp.beta1, static_cast<Real>(t));
  const Real bias2 = 1 - std::pow(hp.beta2, static_cast<Real>(t));
  const Real step_size = hp.lr / bias1;
  const Real sqrt_bias2 = std::sqrt(bias2);

  // The library evaluates the same step in the equivalent form
  //   [α·√(1−β2^t)/(1−β1^t)] · m / (√v + [ε·√(1−β2^t)])
  // with each bracket computed in double and rounded once to its Scalar.
  // Relative errors of those two constants:
  const Real rel_sqrt_bias2 = one_minus_power_error(hp.beta2, t, ud) / 2 + ud;
  const Real rel_step = one_minus_power_error(hp.beta1, t, ud) + rel_sqrt_bias2 + 2 * ud + u;
  const Real rel_eps = rel_sqrt_bias2 + ud + u;
  const Real rel_coefficient = 2 * ud + u;  // (1 − β) or (1 − β2)γ: two double ops, one rounding

  // RAdam (Liu et al.): ρ∞ = 2/(1−β2) − 1, ρ_t = ρ∞ − 2tβ2^t/(1−β2^t); the
  // rectified step multiplies Adam's by r_t, computed by the library in
  // double. Its relative error: ρ_t's absolute error e_ρ (ρ∞ to 3 ulps, the
  // subtracted term to 3 ulps plus 1−β2^t's error, one subtraction) carried
  // through the logarithmic derivative of r_t, plus the ulps of its products,
  // quotient and square root.
  bool rectified = true;
  Real rectification = 1, rel_rectification = 0;
  if (hp.rule == Rule::radam) {
    const Real rho_inf = 2 / (1 - hp.beta2) - 1;
    const Real power = std::pow(hp.beta2, static_cast<Real>(t));
    const Real subtracted = 2 * static_cast<Real>(t) * power / bias2;
    const Real rho_t = rho_inf - subtracted;
    rectified = rho_t > 5;
    if (rectified) {
      rectification = std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf /
                                ((rho_inf - 4) * (rho_inf - 2) * rho_t));
      const Real e_rho = 3 * ud * rho_inf +
                         subtracted * (3 * ud + one_minus_power_error(hp.beta2, t, ud)) + ud * rho_t;
      rel_rectification = e_rho / 2 * (1 / (rho_t - 4) + 1 / (rho_t - 2) + 1 / rho_t) + 16 * ud;
    }
  }
  // RAdam before rectification: θ ← θ − [α/(1−β1^t)]·m, one double quotient.
  const Real rel_momentum_step = one_minus_power_error(hp.beta1, t, ud) + ud + u;
  // AdaBound's bounds, in double then rounded: 1 − 1/(γ_b t + 1) cancels by
  // a factor 1/(γ_b t).
  const Real bound_t = hp.bound_speed * static_cast<Real>(t);
  const Real lower = hp.final_lr * (1 - 1 / (bound_t + 1));
  const Real upper = hp.final_lr * (1 + 1 / bound_t);
  const Real err_lower = lower * (ud * (4 + 2 / bound_t) + u);
  const Real err_upper = upper * (4 * ud + u);

  Real s = 0, err_s = 0;
  std::size_t n = 0;
  for (std::size_t j = 0; j < group.tensors.size(); ++j) {
    for (std::size_t i = 0; i < group.tensors[j].size(); ++i, ++n) {
      Element& e = group.tensors[j][i];

      // ---- the equations -------------------------------------------------
      Real theta = e.theta;
      Real err_theta = e.err_theta;
      if (hp.decoupled && hp.weight_decay != 0) {
        const Real factor = 1 - hp.lr * hp.weight_decay;
        theta = theta * factor;
        err_theta = std::fabs(factor) * err_theta + (2 * u + ud) * std::fabs(theta) + eta;
      }
      const Real g = transformed(grads[j][i], e.theta);
      const Real m_prev = e.m, v_prev = e.v;
      const Real m = hp.beta1 * m_prev + (1 - hp.beta1) * g;
      const Real v = hp.beta2 * v_prev + (1 - hp.beta2) * group.gamma * g * g;
      const Real v_max = std::fmax(e.v_max, v);
      const Real second = hp.amsgrad ? v_max : v;
      const Real root = std::sqrt(second);
      const Real denominator = root / sqrt_bias2 + hp.eps;
      // AdaBound and AdaMod, as their reference code computes it:
      // η = α·√(1−β2^t)/(1−β1^t) / (√v + ε), then θ ← θ − bound(η)·m.
      const Real eta_step = step_size * sqrt_bias2 / (root + hp.eps);
      const Real step_avg = hp.beta_step * e.step_avg + (1 - hp.beta_step) * eta_step;
      Real delta = 0;
      switch (hp.rule) {
        case Rule::adam: delta = step_size * m / denominator; break;
        case Rule::radam:
          delta = rectified ? rectification * step_size * m / denominator : step_size * m;
          break;
        case Rule::adabound: delta = std::fmin(std::fmax(eta_step, lower), upper) * m; break;
        case Rule::adamod: delta = std::fmin(eta_step, step_avg) * m; break;
      }
      const Real theta_new = theta - delta;

      // ---- the rounding-error bounds ---------------------------------------
      // g: L2 decay adds λθ (λ rounded, one product, one sum); its θ carries err_theta.
      Real err_g = 0;
      if (!hp.decoupled && hp.weight_decay != 0)
        err_g = hp.weight_decay * e.err_theta +
                2 * u * hp.weight_decay * std::fabs(e.theta) + u * std::fabs(g) + 2 * eta;
      const Real abs_g = std::fabs(g);
      // m = β1·m + (1−β1)·g: two rounded coefficients, two products, one sum.
      const Real err_m = hp.beta1 * e.err_m + (1 - hp.beta1) * err_g +
                         (u + rel_coefficient) * (hp.beta1 * std::fabs(m_prev) + (1 - hp.beta1) * abs_g) +
                         u * std::fabs(m) + 3 * eta;
      // v = β2·v + ((1−β2)γ·g)·g: γ's own error enters through the coefficient.
      const Real g_term = (1 - hp.beta2) * group.gamma * abs_g * abs_g;
      const Real err_v = hp.beta2 * e.err_v + (1 - hp.beta2) * group.gamma * 2 * abs_g * err_g +
                         (1 - hp.beta2) * abs_g * abs_g * group.err_gamma +
                         2 * u * hp.beta2 * v_prev + (2 * u + rel_coefficient) * g_term +
                         u * v + 4 * eta;
      const Real err_v_max = std::fmax(e.err_v_max, err_v);
      const Real err_second = hp.amsgrad ? err_v_max : err_v;
      // sqrt: |√a − √b| ≤ min(√|a−b|, |a−b|/√a); then its own rounding.
      Real err_root = std::sqrt(err_second);
      if (second > 0) err_root = std::fmin(err_root, err_second / root);
      err_root += u * root + eta;
      // The library's denominator is √v + ε·√(1−β2^t) = √(1−β2^t) · denominator.
      const Real scaled_denominator = sqrt_bias2 * denominator;
      const Real err_scaled_denominator = err_root + hp.eps * sqrt_bias2 * rel_eps +
                                          u * scaled_denominator + eta;
      // delta = (step·m)/denominator: relative errors add, plus m's and the
      // denominator's absolute errors through the derivatives.
      const Real abs_delta = std::fabs(delta);
      Real err_delta = abs_delta * (rel_step + 2 * u) + step_size * err_m / denominator +
                       abs_delta * err_scaled_denominator / scaled_denominator + 2 * eta;
      // η's error (AdaBound, AdaMod): the rounded constant α·√(1−β2^t)/(1−β1^t),
      // ε rounded to Scalar, the sum and the quotient.
      const Real raw_denominator = root + hp.eps;
      const Real err_raw_denominator = err_root + u * hp.eps + u * raw_denominator + eta;
      const Real err_eta_step =
          eta_step * (rel_step + u) + eta_step * err_raw_denominator / raw_denominator + eta;
      Real err_step_avg = 0;
      if (hp.rule == Rule::radam) {
        // Rectified: Adam's step with its constant times r_t (one more
        // rounding); m's error passes through the whole factor.
        if (rectified)
          err_delta = abs_delta * (rel_step + rel_rectification + 3 * u) +
                      rectification * step_size * err_m / denominator +
                      abs_delta * err_scaled_denominator / scaled_denominator + 2 * eta;
        else
          err_delta = abs_delta * (rel_momentum_step + u) + step_size * err_m + 2 * eta;
      } else if (hp.rule == Rule::adabound) {
        // clip(x, l, h) moves by at most the largest error of its arguments;
        // an argument matters only if it can be the one selected, i.e. if η
        // is not separated from a bound by more than both their errors.
        const Real clipped = std::fmin(std::fmax(eta_step, lower), upper);
        const bool may_be_lower = eta_step <= lower + err_eta_step + err_lower;
        const bool may_be_upper = eta_step >= upper - err_eta_step - err_upper;
        const bool may_be_eta = eta_step >= lower - err_eta_step - err_lower &&
                                eta_step <= upper + err_eta_step + err_upper;
        Real err_clipped = may_be_eta ? err_eta_step : 0;
        if (may_be_lower) err_clipped = std::fmax(err_clipped, err_lower);
        if (may_be_upper) err_clipped = std::fmax(err_clipped, err_upper);
        err_delta = clipped * err_m + std::fabs(m) * err_clipped + u * abs_delta + eta;
      } else if (hp.rule == Rule::adamod) {
        // s = β·s + (1−β)·η with β and 1−β rounded to Scalar; min() moves by
        // at most the larger error of its arguments.
        err_step_avg = hp.beta_step * e.err_step_avg + (1 - hp.beta_step) * err_eta_step +
                       (2 * u + 2 * ud) * (hp.beta_step * e.step_avg + (1 - hp.beta_step) * eta_step) +
                       u * step_avg + 3 * eta;
        const Real capped = std::fmin(eta_step, step_avg);
        const Real margin = err_eta_step + err_step_avg;
        Real err_capped = 0;
        if (eta_step <= step_avg + margin) err_capped = err_eta_step;  // η may be selected
        if (step_avg <= eta_step + margin) err_capped = std::fmax(err_capped, err_step_avg);
        err_delta = capped * err_m + std::fabs(m) * err_capped + u * abs_delta + eta;
      }
      const Real err_theta_new = err_theta + err_delta + u * std::fabs(theta_new) + eta +
                                 p.u_store * std::fabs(theta_new) + p.eta_store;

      e.theta = theta_new;
      e.m = m;
      e.v = v;
      e.v_max = v_max;
      if (hp.rule == Rule::adamod) {
        e.step_avg = step_avg;
        e.err_step_avg = err_step_avg;
      }
      e.err_theta = err_theta_new;
      e.err_m = err_m;
      e.err_v = err_v;
      e.err_v_max = err_v_max;

      s += g * g;
      // g² in double is exact for float g and rounds once for double g.
      err_s += 2 * abs_g * err_g + ud * abs_g * abs_g;
    }
  }
  // The library sums s in double over at most n terms: each partial sum
  // rounds at most n times along any path.
  err_s += static_cast<Real>(n + 2) * ud * s;
  group.last_s = s;

  // ---- AdamX's per-group correction (double in the library) --------------
  if (!std::isfinite(s)) return true;  // γ and h keep their values
  const Real h = hp.beta_norm * group.h + (1 - hp.beta_norm) * s;
  const Real bias_norm = 1 - std::pow(hp.beta_norm, static_cast<Real>(t));
  const Real h_hat = h / bias_norm;
  const Real r = h_hat > 0 ? s / h_hat : 1;
  const Real gamma = hp.beta3 * group.gamma + (1 - hp.beta3) * r;

  const Real err_h = hp.beta_norm * group.err_h + (1 - hp.beta_norm) * err_s + 4 * ud * h;
  Real err_r = 0;
  if (h_hat > 0) {
    const Real rel_h_hat = (err_h / h) + one_minus_power_error(hp.beta_norm, t, ud) + ud;
    err_r = r * ((s > 0 ? err_s / s : 0) + rel_h_hat + ud);
  }
  group.err_gamma = hp.beta3 * group.err_gamma + (1 - hp.beta3) * err_r + 4 * ud * gamma;
  group.err_h = err_h;
  group.h = h;
  group.gamma = gamma;
  return true;
}

}  // namespace naive
