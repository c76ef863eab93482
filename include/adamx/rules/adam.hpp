// The update rule of Adam, AdamW and AdamX (with AMSGrad as an option).
//
//   Adam:    D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
//   AdamW:   I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
//   AMSGrad: S. J. Reddi, S. Kale, S. Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
//
// AdamX differs from Adam only in the coefficient of g² in the second moment,
// (1 − β2)·γ, where γ is a per-group scalar fixed for the whole step
// (docs/design.md D1: γ_{t−1} scales g²). With γ = 1 the coefficient is
// exactly (1 − β2), so Adam is this rule with γ ≡ 1: the same instructions,
// bit for bit (docs/design.md D4).
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
//
// How a rule is read by the rest of the library (docs/design.md, "Update
// rules"): `Coefficients<Scalar>::make` turns the options, the step number t
// and the group's γ into the step's constants, in double, rounded once to
// Scalar; `gradient` gives the g the moments see; `update` is the element
// update, written once over a lane type L (a Scalar, or a Chunk of them:
// chunk.hpp), reading and writing the element's state slots through `state`.
// The memory loop (kernel.hpp) runs it over the vectorised chunks and the
// scalar tail alike, so both compute the same bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/chunk.hpp"
#include "adamx/correction.hpp"
#include "adamx/options.hpp"

ADAMX_NAMESPACE_BEGIN

/// The options of every rule built on Adam's moments (Adam, AdamW, AdamX
/// and the baselines RAdam, AdaBound, AdaMod), with the defaults that do
/// not depend on the flavour. Field names and defaults follow
/// torch.optim.Adam/AdamW; beta3 and beta_norm are AdamX's (see
/// docs/design.md).
template <class Flavour>
struct AdamFamilyOptions {
  double lr = 1e-3;          ///< α, step size
  double beta1 = 0.9;        ///< EMA rate of the first moment m
  double beta2 = 0.999;      ///< EMA rate of the second moment v
  double beta3 = Flavour::beta3;  ///< EMA rate of γ; 1 freezes γ at 1 (Adam)
  double beta_norm = 0.99;   ///< β_n, EMA rate of the group's squared gradient norm h
  double eps = 1e-8;         ///< added to sqrt(v̂), outside the root, as PyTorch does
  double weight_decay = Flavour::weight_decay;  ///< λ
  WeightDecayMode decay_mode = Flavour::decay_mode;
  bool amsgrad = false;      ///< use max(v_max, v) in the denominator (Reddi et al. 2018)
  bool maximize = false;     ///< ascend instead of descend (g ← −g)
  NonFinitePolicy nonfinite = NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = AdamFamilyOptions;
    // γ moves only where the flavour lets it (AdamX); elsewhere β3 must be 1.
    constexpr OptionCheck<double> gamma_fixed{
        Flavour::gamma_fixed ? &option_range::exactly_one : nullptr,
        "must be 1 for every optimizer but AdamX, whose γ alone moves; use adamx::AdamX for beta3 < 1"};
    return std::make_tuple(
        option_field("lr", &O::lr, option_range::non_negative),
        option_field("beta1", &O::beta1, option_range::rate),
        option_field("beta2", &O::beta2, option_range::rate),
        option_field("beta3", &O::beta3,
                     OptionCheck<double>{&option_range::closed_unit_interval, "must be in [0, 1]; 1 makes AdamX Adam"},
                     gamma_fixed),
        option_field("beta_norm", &O::beta_norm, option_range::rate),
        option_field("eps", &O::eps, option_range::non_negative),
        option_field("weight_decay", &O::weight_decay, option_range::non_negative),
        option_enum("decay_mode", &O::decay_mode),
        option_flag("amsgrad", &O::amsgrad),
        option_flag("maximize", &O::maximize),
        option_enum("nonfinite", &O::nonfinite));
  }
};

namespace rules {

struct Adam {
  /// The per-element state slots, in the order the kernel binds them.
  enum Slot : int {
    m = 0,      ///< first moment
    v = 1,      ///< second moment (AdamX: of γ-scaled g²)
    v_max = 2,  ///< running max of v; bound only when amsgrad is on
  };
  static constexpr int kSlots = 3;
  /// The slots' names, in slot order: as Slots names its members, and as
  /// errors and checkpoints spell them.
  static constexpr const char* slot_names[kSlots] = {"m", "v", "v_max"};
  /// The slots as plain data, one `A` each (TensorState, state.hpp, is
  /// Slots<Eigen::Array>; TensorStateView is Slots<Eigen::Map>), and
  /// `members`, the same in slot order.
  template <class A>
  struct Slots {
    A m;      ///< first moment
    A v;      ///< second moment (AdamX: of γ-scaled g²)
    A v_max;  ///< running max of v; empty unless amsgrad
    static constexpr A Slots::*members[kSlots] = {&Slots::m, &Slots::v, &Slots::v_max};
  };
  /// Slots bound at every step (m and v); v_max is bound only with amsgrad.
  static constexpr int kBoundSlots = 2;

  /// The per-group scalars carried from step to step beside t (group_scalars.hpp):
  /// AdamX's γ, which scales g² in v, and the history h it is driven by
  /// (correction.hpp). Adam, AdamW and the baselines carry them too, γ
  /// fixed at 1.
  struct GroupScalars {
    double gamma = 1.0;  ///< AdamX's γ after step t (always 1 but for AdamX)
    double h = 0.0;      ///< EMA of the squared gradient norm s (not bias-corrected)

    static auto scalar_fields() {
      return std::make_tuple(option_field("gamma", &GroupScalars::gamma, option_range::non_negative),
                             option_field("h", &GroupScalars::h, option_range::non_negative));
    }
  };
  /// γ and h after step t (≥ 1) with the group's squared gradient norm s
  /// (docs/design.md D2, D3); a non-finite s leaves both as they were (D5).
  template <class Options>
  static void advance_group_scalars(GroupScalars& scalars, double s, std::int64_t t, const Options& o) {
    advance_correction(scalars.gamma, scalars.h, s, t, o.beta3, o.beta_norm);
  }
  /// What restore() refuses beyond the fields' checks: γ ≠ 1 where the
  /// flavour fixes it (every one but AdamX).
  template <class Flavour>
  static std::string group_scalars_problem(const GroupScalars& scalars) {
    if (Flavour::gamma_fixed && scalars.gamma != 1.0)
      return "invalid gamma = " + detail::format_value(scalars.gamma) + " (" + Flavour::name +
             "'s gamma is always 1)";
    return {};
  }

  /// 1 − β1^t and sqrt(1 − β2^t) for step t (≥ 1), in double. pow in
  /// double: exact enough far past 2^24 steps, where a float counter would
  /// stall.
  struct BiasCorrections {
    double bias1;
    double sqrt_bias2;
  };
  template <class Options>
  static BiasCorrections bias_corrections(const Options& o, std::int64_t t) {
    const double td = static_cast<double>(t);
    return {1.0 - std::pow(o.beta1, td), std::sqrt(1.0 - std::pow(o.beta2, td))};
  }

  template <class Scalar>
  struct Coefficients {
    Scalar beta1;
    Scalar one_minus_beta1;
    Scalar beta2;
    Scalar v_coefficient;  // (1 − β2)·γ_{t−1}
    Scalar neg_step_size;  // −α·sqrt(1 − β2^t) / (1 − β1^t)
    Scalar eps;            // ε·sqrt(1 − β2^t)
    Scalar l2;             // λ when decay is L2, else unused
    Scalar decay_factor;   // 1 − αλ when decay is decoupled, else unused
    bool maximize;
    bool use_l2;
    bool use_decoupled;
    bool amsgrad;

    /// For step t (≥ 1) with the group's scalars after step t − 1 (γ_{t−1}).
    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const GroupScalars& scalars) {
      return make(o, scalars.gamma, bias_corrections(o, t));
    }
    /// The same from the step's bias corrections `b` (bias_corrections(o, t)),
    /// for a rule that needs them too (RAdam) and computes them once.
    template <class Options>
    static Coefficients make(const Options& o, double gamma, const BiasCorrections& b) {
      const double bias1 = b.bias1;
      const double sqrt_bias2 = b.sqrt_bias2;
      Coefficients c;
      c.beta1 = static_cast<Scalar>(o.beta1);
      c.one_minus_beta1 = static_cast<Scalar>(1.0 - o.beta1);
      c.beta2 = static_cast<Scalar>(o.beta2);
      c.v_coefficient = static_cast<Scalar>((1.0 - o.beta2) * gamma);
      c.neg_step_size = static_cast<Scalar>(-(o.lr * sqrt_bias2 / bias1));
      c.eps = static_cast<Scalar>(o.eps * sqrt_bias2);
      c.use_l2 = o.weight_decay != 0.0 && o.decay_mode == WeightDecayMode::l2;
      c.use_decoupled = o.weight_decay != 0.0 && o.decay_mode == WeightDecayMode::decoupled;
      c.l2 = static_cast<Scalar>(o.weight_decay);
      c.decay_factor = static_cast<Scalar>(1.0 - o.lr * o.weight_decay);
      c.maximize = o.maximize;
      c.amsgrad = o.amsgrad;
      return c;
    }

    /// The coefficients of a rule built on Adam's (`Derived` extends this
    /// struct), with Adam's part filled in.
    template <class Derived, class Options>
    static Derived extended(const Options& o, std::int64_t t, double gamma) {
      return extended<Derived>(o, gamma, bias_corrections(o, t));
    }
    template <class Derived, class Options>
    static Derived extended(const Options& o, double gamma, const BiasCorrections& b) {
      Derived c;
      static_cast<Coefficients&>(c) = make(o, gamma, b);
      return c;
    }

    /// Whether the gradient the moments see depends on θ (L2 decay), so
    /// that the checking pass must read θ too.
    bool gradient_reads_param() const { return use_l2; }
    /// Whether slot k is in use this step.
    bool uses_slot(int k) const { return k != v_max || amsgrad; }
  };

  /// The coefficients of the rules that clip or cap Adam's per-element step
  /// size η = step_size/(sqrt(v) + ε) (AdaBound, AdaMod): Adam's, plus the
  /// numerator α·sqrt(1 − β2^t)/(1 − β1^t), with ε unscaled, added to
  /// sqrt(v) before the bias correction as the authors' code does.
  template <class Scalar>
  struct StepSizeCoefficients : Coefficients<Scalar> {
    Scalar step_size;  // α·sqrt(1 − β2^t) / (1 − β1^t), the numerator of η

    /// The coefficients of a rule built on these (`Derived` extends this
    /// struct), with Adam's part and the step size filled in.
    template <class Derived, class Options>
    static Derived extended(const Options& o, std::int64_t t, double gamma) {
      auto c = Coefficients<Scalar>::template extended<Derived>(o, t, gamma);
      c.step_size = -c.neg_step_size;  // exactly: rounding is symmetric about 0
      c.eps = static_cast<Scalar>(o.eps);
      return c;
    }
  };

  /// The gradient the moments see: sign flipped for maximize, plus λθ for L2
  /// decay. `theta()` loads θ, called only for L2 decay (the checking pass of
  /// the skip/error policies reads θ only then). The update and the checking
  /// pass both call this, so the s they compute is the same to the bit.
  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta& theta) {
    if (c.maximize) grad = -grad;
    if (c.use_l2) grad = grad + c.l2 * theta();
    return grad;
  }

  /// m and v (and v_max) after the gradient g, stored through `state`;
  /// returns the second moment the step divides by (v, or v_max for
  /// AMSGrad). The rules built on Adam's moments (RAdam, AdaBound, AdaMod)
  /// call this too.
  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L moments(const Coefficients<Scalar>& c, const L& g, L& m_out, State& state) {
    const L mm = state.load(m) * c.beta1 + c.one_minus_beta1 * g;
    state.store(m, mm);
    const L vv = state.load(v) * c.beta2 + (c.v_coefficient * g) * g;
    state.store(v, vv);
    m_out = mm;
    L second = vv;
    if (c.amsgrad) {
      // max that propagates NaN from either side, as torch.maximum does
      // (std::max would drop a NaN v).
      const L previous = state.load(v_max);
      second = detail::lane_select((previous < vv) | (vv != vv), vv, previous);
      state.store(v_max, second);
    }
    return second;
  }

  /// What every update built on Adam's moments starts with: the gradient
  /// the moments see (into `g`), the moments (the new m into `m_out`, the
  /// second moment the step divides by into `second`), and θ after
  /// decoupled decay, returned.
  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L decay_and_moments(const Coefficients<Scalar>& c, const L& theta, const L& grad,
                                                 L& g, L& m_out, L& second, State& state) {
    g = gradient(c, grad, [&] { return theta; });
    L p = theta;
    if (c.use_decoupled) p = p * c.decay_factor;
    second = moments(c, g, m_out, state);
    return p;
  }

  /// θ after the step with gradient `grad`, from θ = `theta`; `g` receives
  /// the transformed gradient, whose square the kernel adds into s.
  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    L m_new, second;
    const L p = decay_and_moments(c, theta, grad, g, m_new, second, state);
    const L denominator = detail::lane_sqrt(second) + c.eps;
    return p + (c.neg_step_size * m_new) / denominator;
  }
};

}  // namespace rules

namespace flavour {
// Each flavour names an optimizer, its update rule, the parts of its options
// (options.hpp, BasicOptions) and the defaults that differ.
// `gamma_fixed` flavours are AdamX with β3 = 1: γ never moves (docs/design.md D4).
struct Adam {
  static constexpr const char* name = "Adam";
  using Rule = rules::Adam;
  using OptionParts = OptionPartList<AdamFamilyOptions<Adam>>;
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = true;
};
struct AdamW {
  static constexpr const char* name = "AdamW";
  using Rule = rules::Adam;
  using OptionParts = OptionPartList<AdamFamilyOptions<AdamW>>;
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 1e-2;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::decoupled;
  static constexpr bool gamma_fixed = true;
};
struct AdamX {
  static constexpr const char* name = "AdamX";
  using Rule = rules::Adam;
  using OptionParts = OptionPartList<AdamFamilyOptions<AdamX>>;
  static constexpr double beta3 = 0.99;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = false;
};
// The defaults of the baselines the article compares AdamX with
// (docs/design.md, "Baselines": rules/radam.hpp, adabound.hpp, adamod.hpp).
// Their γ is fixed at 1: they are the published algorithms, not AdamX
// variants. Each names its own option parts, so that each has its own
// option type.
struct Baseline {
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = true;
};
}  // namespace flavour

using AdamOptions = BasicOptions<flavour::Adam>;
using AdamWOptions = BasicOptions<flavour::AdamW>;
using AdamXOptions = BasicOptions<flavour::AdamX>;

ADAMX_NAMESPACE_END  // namespace adamx
