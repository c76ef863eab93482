// The update rule of Schedule-Free AdamW: Adam's normalised gradient, taken
// at an interpolation y of two sequences, steps a base sequence z; x, the
// average of the z's weighted by the learning rates seen so far, is the point
// to evaluate. No learning-rate schedule is needed (warm-up is an option).
//
//   A. Defazio, X. Yang, H. Mehta, K. Mishchenko, A. Khaled, A. Cutkosky,
//   "The Road Less Scheduled", NeurIPS 2024 (arXiv:2405.15682), as the
//   authors' AdamWScheduleFree computes it (github.com/facebookresearch/
//   schedule_free, schedulefree/adamw_schedulefree.py; not their
//   paper-version class), which is what users run. t = 1, 2, …:
//
//     lr_t     = lr·min(1, t/warmup_steps)        (lr when warmup_steps = 0)
//     lr_max   = max(lr_max, lr_t)                 (lr_max starts at −1)
//     w_t      = t^r·lr_max^weight_lr_power,  W_t = W_{t−1} + w_t,
//     c_t      = w_t/W_t                           (0 while W_t = 0)
//     v ← β2·v + (1 − β2)·g²                       (g taken at y)
//     u = g/(sqrt(v/(1 − β2^t)) + ε) + λ·y         (decay at y)
//     y ← y + c_t·(z − y) + lr_t·(β1·(1 − c_t) − 1)·u
//     z ← z − lr_t·u                               (z starts as θ)
//
// which keeps y = (1 − β1)·z + β1·x with x ← (1 − c_t)·x + c_t·z without
// storing x. The parameters hold y while training. x is
// y + (1 − 1/β1)·(z − y); the driver's eval() writes it and train() puts y
// back, bit for bit, from a copy (the authors' inverse interpolation rounds).
//
// An earlier version of the authors' class multiplied lr_t by
// sqrt(1 − β2^t) and divided by sqrt(v) + ε instead (the same for ε = 0);
// this follows the current one. The step divides once: u's first term is
// [sqrt(1 − β2^t)·g]/(sqrt(v) + ε·sqrt(1 − β2^t)), the constants computed
// once per step in double; y's interpolation is torch.lerp's (from the near
// end), so rounding differs from the authors' order by an ulp or so.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/chunk.hpp"
#include "adamx/option_fields.hpp"
#include "adamx/options.hpp"
#include "adamx/rule_gradient.hpp"

ADAMX_NAMESPACE_BEGIN

/// Schedule-Free AdamW's options, with the defaults of the authors'
/// AdamWScheduleFree.
struct ScheduleFreeAdamWOwnOptions {
  double lr = 0.0025;            ///< the learning rate (no schedule needed)
  double beta1 = 0.9;            ///< interpolation between z and x that gives y
  double beta2 = 0.999;          ///< EMA rate of the second moment v
  double eps = 1e-8;             ///< added to the bias-corrected sqrt(v)
  double weight_decay = 0.0;     ///< λ, applied at y: u ← u + λ·y
  double warmup_steps = 0.0;     ///< linear warm-up of lr over this many steps (a whole number)
  double r = 0.0;                ///< the averaging weight's power of t
  double weight_lr_power = 2.0;  ///< the averaging weight's power of lr_max
  bool maximize = false;         ///< ascend instead of descend (g ← −g)
  NonFinitePolicy nonfinite = NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = ScheduleFreeAdamWOwnOptions;
    return std::make_tuple(option_field("lr", &O::lr, option_range::non_negative),
                           option_field("beta1", &O::beta1,
                                        OptionCheck<double>{&option_range::open_unit_interval,
                                                            "must be in (0, 1): x = y + (1 - 1/beta1)(z - y)"}),
                           option_field("beta2", &O::beta2, option_range::rate),
                           option_field("eps", &O::eps, option_range::non_negative),
                           option_field("weight_decay", &O::weight_decay, option_range::non_negative),
                           option_field("warmup_steps", &O::warmup_steps, option_range::whole_non_negative),
                           option_field("r", &O::r, option_range::finite),
                           option_field("weight_lr_power", &O::weight_lr_power, option_range::finite),
                           option_flag("maximize", &O::maximize), option_enum("nonfinite", &O::nonfinite));
  }
};

namespace rules {

struct ScheduleFreeAdamW {
  /// The per-element state slots, in the order the kernel binds them.
  enum Slot : int {
    z = 0,  ///< the base sequence the normalised gradient steps
    v = 1,  ///< second moment
  };
  static constexpr int kSlots = 2;
  static constexpr int kBoundSlots = 2;
  static constexpr const char* slot_names[kSlots] = {"z", "v"};
  template <class A>
  struct Slots {
    A z;  ///< the base sequence the normalised gradient steps
    A v;  ///< second moment
    static constexpr A Slots::*members[kSlots] = {&Slots::z, &Slots::v};
  };

  /// The averaging's running values, carried from step to step beside t.
  struct GroupScalars {
    double lr_max = -1.0;     ///< the largest lr_t so far (−1 before the first step)
    double weight_sum = 0.0;  ///< W_t, the sum of the averaging weights so far

    static auto scalar_fields() {
      return std::make_tuple(
          option_field("lr_max", &GroupScalars::lr_max,
                       OptionCheck<double>{&lr_max_valid, "must be -1 (before the first step) or finite and >= 0"}),
          option_field("weight_sum", &GroupScalars::weight_sum, option_range::non_negative));
    }
    static bool lr_max_valid(double x) { return x == -1.0 || (std::isfinite(x) && x >= 0.0); }
  };

  /// Step t's averaging, in double, from the scalars after step t − 1.
  struct Averaging {
    double lr;          // lr_t, after warm-up
    double lr_max;      // max(lr_max, lr_t)
    double weight_sum;  // W_t
    double weight;      // c_t = w_t/W_t, 0 while W_t = 0
  };
  template <class Options>
  static Averaging averaging(const Options& o, std::int64_t t, const GroupScalars& scalars) {
    const double td = static_cast<double>(t);
    Averaging a;
    a.lr = o.warmup_steps > 0.0 && td < o.warmup_steps ? o.lr * (td / o.warmup_steps) : o.lr;
    a.lr_max = std::max(a.lr, scalars.lr_max);
    const double w = std::pow(td, o.r) * std::pow(a.lr_max, o.weight_lr_power);
    a.weight_sum = scalars.weight_sum + w;
    a.weight = a.weight_sum != 0.0 ? w / a.weight_sum : 0.0;
    return a;
  }

  /// lr_max and W after step t, taken whatever the gradient's norm s (the
  /// averaging follows every step taken, as the authors' does).
  template <class Options>
  static void advance_group_scalars(GroupScalars& scalars, double /*s*/, std::int64_t t, const Options& o) {
    const Averaging a = averaging(o, t, scalars);
    scalars.lr_max = a.lr_max;
    scalars.weight_sum = a.weight_sum;
  }
  template <class Flavour>
  static std::string group_scalars_problem(const GroupScalars& /*scalars*/) {
    return {};
  }

  template <class Scalar>
  struct Coefficients {
    Scalar beta2;
    Scalar one_minus_beta2;
    Scalar sqrt_bias2;   // sqrt(1 − β2^t)
    Scalar eps;          // ε·sqrt(1 − β2^t)
    Scalar decay;        // λ
    Scalar weight;       // c_t
    Scalar one_minus_weight;  // 1 − c_t
    Scalar y_step;       // lr_t·(β1·(1 − c_t) − 1)
    Scalar neg_lr;       // −lr_t
    bool near_end_z;     // c_t ≥ 1/2: interpolate from z's end, as torch.lerp does
    bool decays;
    bool maximize;
    bool first_step;     // t = 1: z starts as θ

    template <class Options>
    static Coefficients make(const Options& o, std::int64_t t, const GroupScalars& scalars) {
      const Averaging a = averaging(o, t, scalars);
      const double sqrt_bias2 = std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t)));
      Coefficients c;
      c.beta2 = static_cast<Scalar>(o.beta2);
      c.one_minus_beta2 = static_cast<Scalar>(1.0 - o.beta2);
      c.sqrt_bias2 = static_cast<Scalar>(sqrt_bias2);
      c.eps = static_cast<Scalar>(o.eps * sqrt_bias2);
      c.decay = static_cast<Scalar>(o.weight_decay);
      c.weight = static_cast<Scalar>(a.weight);
      c.one_minus_weight = static_cast<Scalar>(1.0 - a.weight);
      c.y_step = static_cast<Scalar>(a.lr * (o.beta1 * (1.0 - a.weight) - 1.0));
      c.neg_lr = static_cast<Scalar>(-a.lr);
      c.near_end_z = a.weight >= 0.5;
      c.decays = o.weight_decay != 0.0;
      c.maximize = o.maximize;
      c.first_step = t == 1;
      return c;
    }
    bool gradient_reads_param() const { return false; }
    bool uses_slot(int /*k*/) const { return true; }
  };

  /// The gradient v and u see: sign flipped for maximize (rule_gradient.hpp).
  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta& /*theta*/) {
    return detail::maximize_only_gradient(c.maximize, grad);
  }

  /// y (θ) after the step.
  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    g = gradient(c, grad, [] {});
    const L zz = c.first_step ? theta : state.load(z);
    const L vv = state.load(v) * c.beta2 + (c.one_minus_beta2 * g) * g;
    state.store(v, vv);
    L u = (c.sqrt_bias2 * g) / (detail::lane_sqrt(vv) + c.eps);
    if (c.decays) u = u + c.decay * theta;
    const L towards_z = zz - theta;
    const L interpolated = c.near_end_z ? zz - c.one_minus_weight * towards_z : theta + c.weight * towards_z;
    state.store(z, zz + c.neg_lr * u);
    return interpolated + c.y_step * u;
  }

  /// Where eval() moves the parameters: x = y + (1 − 1/β1)·(z − y), from z's
  /// slot (torch.lerp's near-end form: |1 − 1/β1| < 1/2 for β1 > 2/3).
  static constexpr int kEvaluationSlot = z;
  template <class Options>
  static double evaluation_weight(const Options& o) {
    return 1.0 - 1.0 / o.beta1;
  }
};

}  // namespace rules

namespace flavour {
struct ScheduleFreeAdamW {
  static constexpr const char* name = "ScheduleFreeAdamW";
  using Rule = rules::ScheduleFreeAdamW;
  using OptionParts = OptionPartList<ScheduleFreeAdamWOwnOptions>;
};
}  // namespace flavour

using ScheduleFreeAdamWOptions = BasicOptions<flavour::ScheduleFreeAdamW>;

ADAMX_NAMESPACE_END  // namespace adamx
