// The update rule of AdaBound: Adam's per-element step size α/(sqrt(v̂) + ε)
// clipped to bounds that close on the SGD step size final_lr as t grows.
//
//   L. Luo, Y. Xiong, Y. Liu, X. Sun, "Adaptive Gradient Methods with
//   Dynamic Bound of Learning Rate", ICLR 2019.
//
// The paper's γ (the bounds' speed) is called bound_speed here, so that it
// cannot be confused with AdamX's γ. As in the authors' code, ε is added to
// sqrt(v) before the bias correction. The moments are Adam's (rules/adam.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/rules/adam.hpp"

ADAMX_NAMESPACE_BEGIN

/// AdaBound's own options (Luo et al. 2019), after the Adam family's. The
/// paper calls bound_speed γ; it is renamed here so that it cannot be
/// confused with AdamX's γ.
struct AdaBoundOwnOptions {
  double final_lr = 0.1;       ///< α*, the SGD step size both bounds close on
  double bound_speed = 1e-3;   ///< γ_b: the bounds are α*(1 ∓ 1/(γ_b t + …))

  static auto option_fields() {
    using O = AdaBoundOwnOptions;
    return std::make_tuple(option_field("final_lr", &O::final_lr, option_range::non_negative),
                           option_field("bound_speed", &O::bound_speed, option_range::positive));
  }
};

namespace rules {

// Adam's slots, gradient and moments are inherited; Coefficients and update
// are this rule's own.
struct AdaBound : Adam {
  template <class Scalar>
  struct Coefficients : Adam::StepSizeCoefficients<Scalar> {
    Scalar lower;      // final_lr·(1 − 1/(γ_b t + 1))
    Scalar upper;      // final_lr·(1 + 1/(γ_b t))

    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const GroupScalars& scalars) {
      auto c = Adam::StepSizeCoefficients<Scalar>::template extended<Coefficients>(o, t, scalars.gamma);
      const double td = static_cast<double>(t);
      c.lower = static_cast<Scalar>(o.final_lr * (1.0 - 1.0 / (o.bound_speed * td + 1.0)));
      c.upper = static_cast<Scalar>(o.final_lr * (1.0 + 1.0 / (o.bound_speed * td)));
      return c;
    }
  };

  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    L m, second;
    const L p = decay_and_moments(c, theta, grad, g, m, second, state);
    const L eta = c.step_size / (detail::lane_sqrt(second) + c.eps);
    // η clipped to [lower, upper]; a NaN fails both tests and stays NaN, as
    // torch.clamp keeps it.
    const L clipped = detail::lane_select(eta < c.lower, L(c.lower),
                                          detail::lane_select(eta > c.upper, L(c.upper), eta));
    return p - clipped * m;
  }
};

}  // namespace rules

namespace flavour {
struct AdaBound : Baseline {
  static constexpr const char* name = "AdaBound";
  using Rule = rules::AdaBound;
  using OptionParts = OptionPartList<AdamFamilyOptions<AdaBound>, AdaBoundOwnOptions>;
};
}  // namespace flavour

using AdaBoundOptions = BasicOptions<flavour::AdaBound>;

ADAMX_NAMESPACE_END  // namespace adamx
