// The update rule of AdaMod: Adam's per-element step size η = α/(sqrt(v̂) + ε)
// capped by its own exponential moving average, one more word of state per
// parameter.
//
//   J. Ding, X. Ren, R. Luo, X. Sun, "An Adaptive and Momental Bound Method
//   for Stochastic Learning", arXiv:1910.12249, 2019.
//
// The paper calls the average's rate β3; it is beta_step here (AdamX's β3 is
// γ's rate). As in the authors' code, ε is added to sqrt(v) before the bias
// correction. The moments are Adam's (rules/adam.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/rules/adam.hpp"

ADAMX_NAMESPACE_BEGIN

/// AdaMod's own option (Ding et al. 2019), after the Adam family's; its
/// paper calls it β3 (AdamX's β3 is γ's rate).
struct AdaModOwnOptions {
  double beta_step = 0.999;    ///< EMA rate of the per-element step size

  static auto option_fields() {
    return std::make_tuple(option_field("beta_step", &AdaModOwnOptions::beta_step, option_range::rate));
  }
};

namespace rules {

// Adam's slots, gradient and moments are inherited; Coefficients and update
// are this rule's own.
struct AdaMod : Adam {
  enum Slot : int {
    m = Adam::m,
    v = Adam::v,
    v_max = Adam::v_max,
    step_avg = 3,  ///< EMA of the per-element step size η
  };
  static constexpr int kSlots = 4;
  static constexpr const char* slot_names[kSlots] = {"m", "v", "v_max", "step_avg"};
  template <class A>
  struct Slots {  // Adam's three, then η's average (every slot declared here: see state.hpp)
    A m;
    A v;
    A v_max;
    A step_avg;  ///< EMA of the per-element step size η
    static constexpr A Slots::*members[kSlots] = {&Slots::m, &Slots::v, &Slots::v_max, &Slots::step_avg};
  };
  static constexpr int kBoundSlots = Adam::kBoundSlots;  // step_avg after v_max, which may be unbound

  template <class Scalar>
  struct Coefficients : Adam::StepSizeCoefficients<Scalar> {
    Scalar beta_step;  // the EMA rate of η
    Scalar one_minus_beta_step;

    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const GroupScalars& scalars) {
      auto c = Adam::StepSizeCoefficients<Scalar>::template extended<Coefficients>(o, t, scalars.gamma);
      c.beta_step = static_cast<Scalar>(o.beta_step);
      c.one_minus_beta_step = static_cast<Scalar>(1.0 - o.beta_step);
      return c;
    }
    bool uses_slot(int k) const { return k == step_avg || Adam::Coefficients<Scalar>::uses_slot(k); }
  };

  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    L m_new, second;
    const L p = decay_and_moments(c, theta, grad, g, m_new, second, state);
    const L eta = c.step_size / (detail::lane_sqrt(second) + c.eps);
    const L average = state.load(step_avg) * c.beta_step + c.one_minus_beta_step * eta;
    state.store(step_avg, average);
    // min(η, average) that returns NaN when either is NaN, as torch.min does.
    const L capped = detail::lane_select((average < eta) | (average != average), average, eta);
    return p - capped * m_new;
  }
};

}  // namespace rules

namespace flavour {
struct AdaMod : Baseline {
  static constexpr const char* name = "AdaMod";
  using Rule = rules::AdaMod;
  using OptionParts = OptionPartList<AdamFamilyOptions<AdaMod>, AdaModOwnOptions>;
};
}  // namespace flavour

using AdaModOptions = BasicOptions<flavour::AdaMod>;

ADAMX_NAMESPACE_END  // namespace adamx
