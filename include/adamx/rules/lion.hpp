// The update rule of Lion ("evolved sign momentum"): a step of the same size
// α for every element, in the direction of the sign of an interpolation of
// the momentum and the gradient; one word of state per parameter.
//
//   X. Chen, C. Liang, D. Huang, E. Real, K. Wang, Y. Liu, H. Pham, X. Dong,
//   T. Luong, C.-J. Hsieh, Y. Lu, Q. V. Le, "Symbolic Discovery of
//   Optimization Algorithms", NeurIPS 2023 (arXiv:2302.06675), Algorithm 2:
//
//     c = β1·m + (1 − β1)·g
//     θ ← θ·(1 − αλ) − α·sign(c)
//     m ← β2·m + (1 − β2)·g
//
// Weight decay is decoupled, as in the paper. sign(0) = 0, as torch.sign and
// jnp.sign give: at an exact tie θ only decays. A NaN c gives a NaN sign, so a
// non-finite gradient reaches θ under the propagate policy as it does for
// every other rule (a comparison-only sign would turn it into 0 and hide it).
// There is no bias correction and no per-group scalar beyond t: the rule
// declares no GroupScalars, and no γ or h is kept for it.
#pragma once

#include <cstdint>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/chunk.hpp"
#include "adamx/group_scalars.hpp"
#include "adamx/options.hpp"
#include "adamx/rule_gradient.hpp"

ADAMX_NAMESPACE_BEGIN

/// Lion's options, with the paper's defaults (its learning rate is 3–10×
/// smaller than AdamW's, its λ as much larger, for the same effective decay).
struct LionOwnOptions {
  double lr = 1e-4;           ///< α, the size of every element's step
  double beta1 = 0.9;         ///< weight of m in the interpolation whose sign is the step
  double beta2 = 0.99;        ///< EMA rate of the momentum m
  double weight_decay = 0.0;  ///< λ, decoupled: θ ← θ(1 − αλ)
  bool maximize = false;      ///< ascend instead of descend (g ← −g)
  NonFinitePolicy nonfinite = NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = LionOwnOptions;
    return std::make_tuple(option_field("lr", &O::lr, option_range::non_negative),
                           option_field("beta1", &O::beta1, option_range::rate),
                           option_field("beta2", &O::beta2, option_range::rate),
                           option_field("weight_decay", &O::weight_decay, option_range::non_negative),
                           option_flag("maximize", &O::maximize), option_enum("nonfinite", &O::nonfinite));
  }
};

namespace rules {

struct Lion {
  /// The one per-element state slot.
  enum Slot : int {
    m = 0,  ///< momentum
  };
  static constexpr int kSlots = 1;
  static constexpr int kBoundSlots = 1;
  static constexpr const char* slot_names[kSlots] = {"m"};
  template <class A>
  struct Slots {
    A m;  ///< momentum
    static constexpr A Slots::*members[kSlots] = {&Slots::m};
  };

  template <class Scalar>
  struct Coefficients {
    Scalar beta1;
    Scalar one_minus_beta1;
    Scalar beta2;
    Scalar one_minus_beta2;
    Scalar neg_lr;        // −α
    Scalar decay_factor;  // 1 − αλ (exactly 1 when λ = 0, so θ·1 = θ)
    bool maximize;

    /// For step t (unused: Lion has no bias correction).
    template <class Options>
    static Coefficients make(const Options& o, std::int64_t /*t*/, const NoGroupScalars& /*scalars*/) {
      Coefficients c;
      c.beta1 = static_cast<Scalar>(o.beta1);
      c.one_minus_beta1 = static_cast<Scalar>(1.0 - o.beta1);
      c.beta2 = static_cast<Scalar>(o.beta2);
      c.one_minus_beta2 = static_cast<Scalar>(1.0 - o.beta2);
      c.neg_lr = static_cast<Scalar>(-o.lr);
      c.decay_factor = static_cast<Scalar>(1.0 - o.lr * o.weight_decay);
      c.maximize = o.maximize;
      return c;
    }
    /// The gradient the momentum sees never depends on θ.
    bool gradient_reads_param() const { return false; }
    bool uses_slot(int k) const { return k == m; }
  };

  /// The gradient the momentum sees: sign flipped for maximize (rule_gradient.hpp).
  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta& /*theta*/) {
    return detail::maximize_only_gradient(c.maximize, grad);
  }

  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    g = gradient(c, grad, [] {});
    const L previous = state.load(m);
    const L interpolated = previous * c.beta1 + c.one_minus_beta1 * g;
    state.store(m, previous * c.beta2 + c.one_minus_beta2 * g);
    // sign(c): ±1, +0 at a tie (θ + (−α)·(+0) adds −0, which leaves every θ,
    // −0 included, as it was), and c itself where c is NaN.
    const L zero(Scalar(0));
    const L sign = detail::lane_select(
        interpolated > zero, L(Scalar(1)),
        detail::lane_select(interpolated < zero, L(Scalar(-1)),
                            detail::lane_select(interpolated != interpolated, interpolated, zero)));
    return theta * c.decay_factor + c.neg_lr * sign;
  }
};

}  // namespace rules

namespace flavour {
struct Lion {
  static constexpr const char* name = "Lion";
  using Rule = rules::Lion;
  using OptionParts = OptionPartList<LionOwnOptions>;
};
}  // namespace flavour

using LionOptions = BasicOptions<flavour::Lion>;

ADAMX_NAMESPACE_END  // namespace adamx
