// The update rule of RAdam: Adam's step times the rectification r_t once the
// variance of the adaptive step is tractable (ρ_t > 5), SGD with momentum on
// the bias-corrected m̂ before that.
//
//   L. Liu, H. Jiang, P. He, W. Chen, X. Liu, J. Gao, J. Han, "On the
//   Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.
//
// The moments (and AMSGrad's v_max) are Adam's (rules/adam.hpp); only the
// step's constants and its last line differ. Whether the step is rectified
// is decided once per step, in double.
#pragma once

#include <cmath>
#include <cstdint>

#include "adamx/abi.hpp"
#include "adamx/rules/adam.hpp"

ADAMX_NAMESPACE_BEGIN
namespace rules {

// Adam's slots, gradient and moments are inherited; Coefficients and update
// are this rule's own.
struct RAdam : Adam {
  /// The rectification at step t (t ≥ 1), in double: whether ρ_t > 5, and
  /// the factor r_t then (0 otherwise).
  struct Rectification {
    bool rectified;
    double factor;
  };
  static Rectification rectification(double beta2, std::int64_t t) {
    const double td = static_cast<double>(t);
    const double power = std::pow(beta2, td);
    const double rho_inf = 2.0 / (1.0 - beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * td * power / (1.0 - power);
    if (!(rho_t > 5.0)) return {false, 0.0};
    return {true, std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                            ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))};
  }

  template <class Scalar>
  struct Coefficients : Adam::Coefficients<Scalar> {
    bool rectified;  // false: θ += −α/(1 − β1^t)·m, Adam's denominator unused

    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const GroupScalars& scalars) {
      const BiasCorrections b = bias_corrections(o, t);
      auto c = Adam::Coefficients<Scalar>::template extended<Coefficients>(o, scalars.gamma, b);
      const Rectification r = rectification(o.beta2, t);
      c.rectified = r.rectified;
      if (r.rectified) {
        c.neg_step_size = static_cast<Scalar>(-(o.lr * r.factor * b.sqrt_bias2 / b.bias1));
      } else {
        c.neg_step_size = static_cast<Scalar>(-(o.lr / b.bias1));
      }
      return c;
    }

    /// The same coefficients with `rectified` known at compile time
    /// (Phase<true> or Phase<false>) handed to f: the kernel runs its element
    /// loop once per phase (kernel.hpp, HasVisit), so that the choice
    /// is made once per block, not per chunk.
    template <class F>
    decltype(auto) visit(F f) const {
      if (rectified) return f(Phase<Scalar, true>{*this});
      return f(Phase<Scalar, false>{*this});
    }
  };

  /// Coefficients whose `rectified` is the constant Rectified.
  template <class Scalar, bool Rectified>
  struct Phase : Coefficients<Scalar> {
    static constexpr bool kRectified = Rectified;
  };

  /// Whether the step is rectified: known at compile time for a Phase.
  template <class Scalar>
  static ADAMX_ALWAYS_INLINE bool is_rectified(const Coefficients<Scalar>& c) {
    return c.rectified;
  }
  template <class Scalar, bool Rectified>
  static constexpr bool is_rectified(const Phase<Scalar, Rectified>&) {
    return Rectified;
  }

  template <class C, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const C& c, const L& theta, const L& grad, L& g, State& state) {
    L m, second;
    const L p = decay_and_moments(c, theta, grad, g, m, second, state);
    if (!is_rectified(c)) return p + c.neg_step_size * m;
    const L denominator = detail::lane_sqrt(second) + c.eps;
    return p + (c.neg_step_size * m) / denominator;
  }
};

}  // namespace rules

namespace flavour {
struct RAdam : Baseline {
  static constexpr const char* name = "RAdam";
  using Rule = rules::RAdam;
  using OptionParts = OptionPartList<AdamFamilyOptions<RAdam>>;
};
}  // namespace flavour

using RAdamOptions = BasicOptions<flavour::RAdam>;

ADAMX_NAMESPACE_END  // namespace adamx
