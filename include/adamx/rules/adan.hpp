// The update rule of Adan (adaptive Nesterov momentum): Adam-like steps on
// the moments of the gradient and of its difference from step to step, with
// the second moment taken of the Nesterov-extrapolated gradient.
//
//   X. Xie, P. Zhou, H. Li, Z. Lin, S. Yan, "Adan: Adaptive Nesterov Momentum
//   Algorithm for Faster Optimizing Deep Models", IEEE TPAMI 2024
//   (arXiv:2208.06677), Algorithm 1, as the authors' adan.py computes it
//   (github.com/sail-sg/Adan), which is what users run:
//
//     d = g − g_prev                   (g_prev = g at step 1, so d₁ = 0)
//     m ← β1·m + (1 − β1)·g
//     v ← β2·v + (1 − β2)·d
//     n ← β3·n + (1 − β3)·(g + β2·d)²
//     den = sqrt(n)/sqrt(1 − β3^t) + ε
//     u = α/(1 − β1^t)·m/den + α·β2/(1 − β2^t)·v/den
//     θ ← (θ − u)/(1 + αλ)             (proximal decay, the default)
//     θ ← θ·(1 − αλ) − u               (no_prox)
//
// The betas are the code's: (0.98, 0.92, 0.99) are the paper's
// (0.02, 0.08, 0.01), which weight the new term, as 1 − β (the paper's
// 1 − β2 in the step and in n is the code's β2). Where the paper and the
// code differ, this follows the code: the code divides m, v and n by their
// bias corrections 1 − β^t, which the paper's Algorithm 1 does not.
//
// As for Adam (rules/adam.hpp), the step divides once: with
// c₃ = sqrt(1 − β3^t),
//   u = [α·c₃/(1 − β1^t)·m + α·β2·c₃/(1 − β2^t)·v] / (sqrt(n) + ε·c₃),
// the bracketed constants computed once per step in double. Rounding
// differs from the authors' order by an ulp or so. The authors' optional
// global gradient clipping (max_grad_norm) is the library's clipped step
// (clip.hpp), not an option here. There is no per-group scalar beyond t.
#pragma once

#include <cmath>
#include <cstdint>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/chunk.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/options.hpp"
#include "adamx/rule_gradient.hpp"

ADAMX_NAMESPACE_BEGIN

/// Adan's options, with the defaults of the authors' adan.py. The betas
/// weight the old value (β·old + (1 − β)·new), as Adam's do.
struct AdanOwnOptions {
  double lr = 1e-3;           ///< α
  double beta1 = 0.98;        ///< EMA rate of the gradient's moment m (paper: 1 − β1 = 0.02)
  double beta2 = 0.92;        ///< EMA rate of the difference's moment v (paper: 1 − β2 = 0.08)
  double beta3 = 0.99;        ///< EMA rate of the second moment n (paper: 1 − β3 = 0.01)
  double eps = 1e-8;          ///< added to the bias-corrected sqrt(n)
  double weight_decay = 0.0;  ///< λ: θ ← (θ − u)/(1 + αλ), or θ(1 − αλ) − u with no_prox
  bool no_prox = false;       ///< decay by multiplication before the step instead of the proximal division
  bool maximize = false;      ///< ascend instead of descend (g ← −g)
  NonFinitePolicy nonfinite = NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = AdanOwnOptions;
    return std::make_tuple(option_field("lr", &O::lr, option_range::non_negative),
                           option_field("beta1", &O::beta1, option_range::rate),
                           option_field("beta2", &O::beta2, option_range::rate),
                           option_field("beta3", &O::beta3, option_range::rate),
                           option_field("eps", &O::eps, option_range::non_negative),
                           option_field("weight_decay", &O::weight_decay, option_range::non_negative),
                           option_flag("no_prox", &O::no_prox), option_flag("maximize", &O::maximize),
                           option_enum("nonfinite", &O::nonfinite));
  }
};

namespace rules {

struct Adan {
  /// The per-element state slots, in the order the kernel binds them.
  enum Slot : int {
    m = 0,          ///< moment of the gradient
    v = 1,          ///< moment of the gradient's difference d
    n = 2,          ///< second moment of g + β2·d
    prev_grad = 3,  ///< the gradient of the element's previous step
  };
  static constexpr int kSlots = 4;
  static constexpr int kBoundSlots = 4;
  static constexpr const char* slot_names[kSlots] = {"m", "v", "n", "prev_grad"};
  template <class A>
  struct Slots {
    A m;          ///< moment of the gradient
    A v;          ///< moment of the gradient's difference d
    A n;          ///< second moment of g + β2·d
    A prev_grad;  ///< the gradient of the element's previous step
    static constexpr A Slots::*members[kSlots] = {&Slots::m, &Slots::v, &Slots::n, &Slots::prev_grad};
  };

  template <class Scalar>
  struct Coefficients {
    Scalar beta1;
    Scalar one_minus_beta1;
    Scalar beta2;
    Scalar one_minus_beta2;
    Scalar beta3;
    Scalar one_minus_beta3;
    Scalar m_step;        // α·c₃/(1 − β1^t)
    Scalar v_step;        // α·β2·c₃/(1 − β2^t)
    Scalar eps;           // ε·c₃
    Scalar decay_factor;  // no_prox: 1 − αλ; else 1/(1 + αλ) (exactly 1 when λ = 0)
    bool decays;          // λ > 0 and α > 0
    bool no_prox;
    bool maximize;
    bool first_step;      // t = 1: the previous gradient is this one (d = 0)

    /// For step t (≥ 1) of the tensor.
    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const NoGroupScalars& /*scalars*/) {
      const double td = static_cast<double>(t);
      const double bias1 = 1.0 - std::pow(o.beta1, td);
      const double bias2 = 1.0 - std::pow(o.beta2, td);
      const double sqrt_bias3 = std::sqrt(1.0 - std::pow(o.beta3, td));
      Coefficients c;
      c.beta1 = static_cast<Scalar>(o.beta1);
      c.one_minus_beta1 = static_cast<Scalar>(1.0 - o.beta1);
      c.beta2 = static_cast<Scalar>(o.beta2);
      c.one_minus_beta2 = static_cast<Scalar>(1.0 - o.beta2);
      c.beta3 = static_cast<Scalar>(o.beta3);
      c.one_minus_beta3 = static_cast<Scalar>(1.0 - o.beta3);
      c.m_step = static_cast<Scalar>(o.lr * sqrt_bias3 / bias1);
      c.v_step = static_cast<Scalar>(o.lr * o.beta2 * sqrt_bias3 / bias2);
      c.eps = static_cast<Scalar>(o.eps * sqrt_bias3);
      c.decays = o.weight_decay != 0.0 && o.lr != 0.0;
      c.no_prox = o.no_prox;
      c.decay_factor = static_cast<Scalar>(o.no_prox ? 1.0 - o.lr * o.weight_decay : 1.0 / (1.0 + o.lr * o.weight_decay));
      c.maximize = o.maximize;
      c.first_step = t == 1;
      return c;
    }
    /// The gradient never depends on θ.
    bool gradient_reads_param() const { return false; }
    bool uses_slot(int /*k*/) const { return true; }
  };

  /// The gradient the moments see: sign flipped for maximize (rule_gradient.hpp).
  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta& /*theta*/) {
    return detail::maximize_only_gradient(c.maximize, grad);
  }

  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    g = gradient(c, grad, [] {});
    // At step 1 the authors set the previous gradient to this one, so d is
    // g − g: +0 for a finite g (NaN for an infinite one, as theirs).
    const L previous = c.first_step ? g : state.load(prev_grad);
    const L d = g - previous;
    state.store(prev_grad, g);
    const L mm = state.load(m) * c.beta1 + c.one_minus_beta1 * g;
    state.store(m, mm);
    const L vv = state.load(v) * c.beta2 + c.one_minus_beta2 * d;
    state.store(v, vv);
    const L extrapolated = g + c.beta2 * d;
    const L nn = state.load(n) * c.beta3 + (c.one_minus_beta3 * extrapolated) * extrapolated;
    state.store(n, nn);
    const L denominator = detail::lane_sqrt(nn) + c.eps;
    const L step = (c.m_step * mm + c.v_step * vv) / denominator;
    if (!c.decays) return theta - step;
    if (c.no_prox) return theta * c.decay_factor - step;
    return (theta - step) * c.decay_factor;
  }
};

}  // namespace rules

namespace flavour {
struct Adan {
  static constexpr const char* name = "Adan";
  using Rule = rules::Adan;
  using OptionParts = OptionPartList<AdanOwnOptions>;
};
}  // namespace flavour

using AdanOptions = BasicOptions<flavour::Adan>;

ADAMX_NAMESPACE_END  // namespace adamx
