// Hyperparameters of the Adam family (Adam, AdamW, AdamX and the baselines
// RAdam, AdaBound, AdaMod) and the one place that knows every valid range.
//
// The optimizers share every option; they differ in their defaults and in
// how m and v become a step (a "flavour"), so each gets its own option type
// with the right defaults and a mix-up (AdamX options handed to Adam) is a
// compile error, not a silent change of algorithm. Options a flavour does not
// use (final_lr for Adam, say) are still validated and stored, so that one
// option type and one checkpoint layout serve them all.
#pragma once

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// How weight decay λ enters the step.
enum class WeightDecayMode {
  l2,         ///< g ← g + λθ before the moments (torch.optim.Adam's weight_decay)
  decoupled,  ///< θ ← θ(1 − αλ) before the step (AdamW, Loshchilov & Hutter 2019)
};

/// What a step does when a group's gradient (after maximize and L2 decay) is
/// not finite. In every case γ and the norm history h keep their values.
enum class NonFinitePolicy {
  propagate,  ///< one fused pass; NaN/Inf reach m, v and θ (PyTorch's behaviour)
  skip,       ///< a checking pass first; the group's step is skipped, t does not advance
  error,      ///< like skip, and step() throws adamx::NonFiniteGradientError
};

inline const char* to_string(WeightDecayMode mode) {
  switch (mode) {
    case WeightDecayMode::l2: return "l2";
    case WeightDecayMode::decoupled: return "decoupled";
  }
  return "invalid";
}

inline const char* to_string(NonFinitePolicy policy) {
  switch (policy) {
    case NonFinitePolicy::propagate: return "propagate";
    case NonFinitePolicy::skip: return "skip";
    case NonFinitePolicy::error: return "error";
  }
  return "invalid";
}

/// How a flavour turns the moments into a step (its update rule, include/adamx/rules/,
/// has the equations).
enum class Algorithm {
  adam,      ///< Adam, AdamW, AdamX: α·m̂/(sqrt(v̂) + ε)
  radam,     ///< RAdam: Adam's step times the rectification r_t, or α·m̂ while ρ_t ≤ 5
  adabound,  ///< AdaBound: the per-element step size clipped to bounds that close on final_lr
  adamod,    ///< AdaMod: the per-element step size capped by its own EMA
};

namespace rules {
// The update rules (include/adamx/rules/), one file each.
struct Adam;
struct RAdam;
struct AdaBound;
struct AdaMod;
}  // namespace rules

namespace flavour {
// Each flavour names an optimizer and supplies the defaults that differ.
// `gamma_fixed` flavours are AdamX with β3 = 1: γ never moves (docs/design.md D4).
struct Adam {
  static constexpr const char* name = "Adam";
  using Rule = rules::Adam;
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = true;
  static constexpr Algorithm algorithm = Algorithm::adam;
};
struct AdamW {
  static constexpr const char* name = "AdamW";
  using Rule = rules::Adam;
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 1e-2;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::decoupled;
  static constexpr bool gamma_fixed = true;
  static constexpr Algorithm algorithm = Algorithm::adam;
};
struct AdamX {
  static constexpr const char* name = "AdamX";
  using Rule = rules::Adam;
  static constexpr double beta3 = 0.99;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = false;
  static constexpr Algorithm algorithm = Algorithm::adam;
};
// The baselines the article compares AdamX with (docs/design.md, "Baselines").
// Their γ is fixed at 1: they are the published algorithms, not AdamX variants.
struct Baseline {
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = true;
};
struct RAdam : Baseline {
  static constexpr const char* name = "RAdam";
  using Rule = rules::RAdam;
  static constexpr Algorithm algorithm = Algorithm::radam;
};
struct AdaBound : Baseline {
  static constexpr const char* name = "AdaBound";
  using Rule = rules::AdaBound;
  static constexpr Algorithm algorithm = Algorithm::adabound;
};
struct AdaMod : Baseline {
  static constexpr const char* name = "AdaMod";
  using Rule = rules::AdaMod;
  static constexpr Algorithm algorithm = Algorithm::adamod;
};
}  // namespace flavour

/// Whether a flavour keeps AdaMod's per-element EMA of the step size
/// (TensorState::step_avg), a third word of state per parameter.
template <class Flavour>
constexpr bool keeps_step_average = Flavour::algorithm == Algorithm::adamod;

/// Per-group options. Field names and defaults follow torch.optim.Adam/AdamW;
/// beta3 and beta_norm are AdamX's (see docs/design.md).
template <class Flavour>
struct BasicOptions {
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
  // AdaBound (Luo et al. 2019). The paper calls bound_speed γ; it is renamed
  // here so that it cannot be confused with AdamX's γ.
  double final_lr = 0.1;       ///< α*, the SGD step size both bounds close on
  double bound_speed = 1e-3;   ///< γ_b: the bounds are α*(1 ∓ 1/(γ_b t + …))
  // AdaMod (Ding et al. 2019), whose paper calls it β3 (AdamX's β3 is γ's rate).
  double beta_step = 0.999;    ///< EMA rate of the per-element step size

  /// Sets beta1 and beta2 together, like PyTorch's `betas=(b1, b2)`.
  BasicOptions& set_betas(double b1, double b2) {
    beta1 = b1;
    beta2 = b2;
    return *this;
  }

  friend bool operator==(const BasicOptions& a, const BasicOptions& b) {
    // Bitwise-meaningful comparison of the doubles: options are copied, never
    // recomputed, so exact equality is the right test.
    return a.lr == b.lr && a.beta1 == b.beta1 && a.beta2 == b.beta2 && a.beta3 == b.beta3 &&
           a.beta_norm == b.beta_norm && a.eps == b.eps && a.weight_decay == b.weight_decay &&
           a.decay_mode == b.decay_mode && a.amsgrad == b.amsgrad && a.maximize == b.maximize &&
           a.nonfinite == b.nonfinite && a.final_lr == b.final_lr &&
           a.bound_speed == b.bound_speed && a.beta_step == b.beta_step;
  }
  friend bool operator!=(const BasicOptions& a, const BasicOptions& b) { return !(a == b); }
};

using AdamOptions = BasicOptions<flavour::Adam>;
using AdamWOptions = BasicOptions<flavour::AdamW>;
using AdamXOptions = BasicOptions<flavour::AdamX>;
using RAdamOptions = BasicOptions<flavour::RAdam>;
using AdaBoundOptions = BasicOptions<flavour::AdaBound>;
using AdaModOptions = BasicOptions<flavour::AdaMod>;

namespace detail {

// Writes a double the way a user typed it: shortest round-trip form.
inline std::string format_value(double value) {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  // The shortest representation that reads back exactly (strtod, not stod:
  // stod throws on subnormal values).
  std::string text;
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream trial;
    trial.precision(digits);
    trial << value;
    text = trial.str();
    if (std::strtod(text.c_str(), nullptr) == value) break;
  }
  return text;
}

[[noreturn]] inline void throw_invalid_option(const char* optimizer, const std::string& group,
                                              const char* field, const std::string& value,
                                              const char* rule) {
  std::ostringstream message;
  message << "adamx::" << optimizer << ": invalid " << field << " = " << value;
  if (!group.empty()) message << " for group '" << group << "'";
  message << " (" << rule << ")";
  throw std::invalid_argument(message.str());
}

}  // namespace detail

/// Throws std::invalid_argument naming the first invalid field, its value and
/// the rule it breaks (docs/design.md, "Errors and the strong guarantee"). `group` is used in the message only.
template <class Flavour>
void validate(const BasicOptions<Flavour>& o, const std::string& group = {}) {
  const auto fail = [&](const char* field, double value, const char* rule) {
    detail::throw_invalid_option(Flavour::name, group, field, detail::format_value(value), rule);
  };
  const auto in_unit = [](double x) { return std::isfinite(x) && x >= 0.0 && x < 1.0; };
  if (!(std::isfinite(o.lr) && o.lr >= 0.0)) fail("lr", o.lr, "must be finite and >= 0");
  if (!in_unit(o.beta1)) fail("beta1", o.beta1, "must be in [0, 1)");
  if (!in_unit(o.beta2)) fail("beta2", o.beta2, "must be in [0, 1)");
  if (!(std::isfinite(o.beta3) && o.beta3 >= 0.0 && o.beta3 <= 1.0))
    fail("beta3", o.beta3, "must be in [0, 1]; 1 makes AdamX Adam");
  if (Flavour::gamma_fixed && o.beta3 != 1.0)
    fail("beta3", o.beta3,
         "must be 1 for every optimizer but AdamX, whose γ alone moves; use adamx::AdamX for "
         "beta3 < 1");
  if (!in_unit(o.beta_norm)) fail("beta_norm", o.beta_norm, "must be in [0, 1)");
  if (!(std::isfinite(o.eps) && o.eps >= 0.0)) fail("eps", o.eps, "must be finite and >= 0");
  if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0))
    fail("weight_decay", o.weight_decay, "must be finite and >= 0");
  if (!(std::isfinite(o.final_lr) && o.final_lr >= 0.0))
    fail("final_lr", o.final_lr, "must be finite and >= 0");
  if (!(std::isfinite(o.bound_speed) && o.bound_speed > 0.0))
    fail("bound_speed", o.bound_speed, "must be finite and > 0");
  if (!in_unit(o.beta_step)) fail("beta_step", o.beta_step, "must be in [0, 1)");
  if (o.decay_mode != WeightDecayMode::l2 && o.decay_mode != WeightDecayMode::decoupled)
    detail::throw_invalid_option(Flavour::name, group, "decay_mode",
                                 std::to_string(static_cast<int>(o.decay_mode)),
                                 "must be WeightDecayMode::l2 or ::decoupled");
  if (o.nonfinite != NonFinitePolicy::propagate && o.nonfinite != NonFinitePolicy::skip &&
      o.nonfinite != NonFinitePolicy::error)
    detail::throw_invalid_option(Flavour::name, group, "nonfinite",
                                 std::to_string(static_cast<int>(o.nonfinite)),
                                 "must be NonFinitePolicy::propagate, ::skip or ::error");
}

ADAMX_NAMESPACE_END  // namespace adamx
