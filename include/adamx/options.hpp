// Hyperparameters of the Adam family (Adam, AdamW, AdamX and the baselines
// RAdam, AdaBound, AdaMod), each optimizer's declared once as a field list
// (option_fields.hpp) that validation, comparison, checkpoints, the typed
// setters and the libtorch adapter are all made from.
//
// Every optimizer has the Adam family's options; AdaBound adds final_lr and
// bound_speed, AdaMod beta_step. The flavours differ in their defaults and in
// how m and v become a step, so each gets its own option type with the right
// defaults and fields, and a mix-up (AdamX options handed to Adam, final_lr
// set on Adam) is a compile error, not a silent change of algorithm.
#pragma once

#include <string>
#include <tuple>

#include "adamx/abi.hpp"
#include "adamx/option_fields.hpp"

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

template <>
struct OptionEnum<WeightDecayMode> {
  static constexpr const char* names[] = {"l2", "decoupled"};
  static constexpr const char* rule = "must be WeightDecayMode::l2 or ::decoupled";
};
template <>
struct OptionEnum<NonFinitePolicy> {
  static constexpr const char* names[] = {"propagate", "skip", "error"};
  static constexpr const char* rule = "must be NonFinitePolicy::propagate, ::skip or ::error";
};

/// The options of every rule built on Adam's moments (all of the library's),
/// with the defaults that do not depend on the flavour. Field names and
/// defaults follow torch.optim.Adam/AdamW; beta3 and beta_norm are AdamX's
/// (see docs/design.md).
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

/// No options beyond the Adam family's.
struct NoOwnOptions {
  static std::tuple<> option_fields() { return {}; }
};

/// AdaBound's own options (Luo et al. 2019). The paper calls bound_speed γ;
/// it is renamed here so that it cannot be confused with AdamX's γ.
struct AdaBoundOwnOptions {
  double final_lr = 0.1;       ///< α*, the SGD step size both bounds close on
  double bound_speed = 1e-3;   ///< γ_b: the bounds are α*(1 ∓ 1/(γ_b t + …))

  static auto option_fields() {
    using O = AdaBoundOwnOptions;
    return std::make_tuple(option_field("final_lr", &O::final_lr, option_range::non_negative),
                           option_field("bound_speed", &O::bound_speed, option_range::positive));
  }
};

/// AdaMod's own option (Ding et al. 2019), whose paper calls it β3 (AdamX's
/// β3 is γ's rate).
struct AdaModOwnOptions {
  double beta_step = 0.999;    ///< EMA rate of the per-element step size

  static auto option_fields() {
    return std::make_tuple(option_field("beta_step", &AdaModOwnOptions::beta_step, option_range::rate));
  }
};

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
  using OwnOptions = NoOwnOptions;
};
struct AdamW {
  static constexpr const char* name = "AdamW";
  using Rule = rules::Adam;
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 1e-2;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::decoupled;
  static constexpr bool gamma_fixed = true;
  static constexpr Algorithm algorithm = Algorithm::adam;
  using OwnOptions = NoOwnOptions;
};
struct AdamX {
  static constexpr const char* name = "AdamX";
  using Rule = rules::Adam;
  static constexpr double beta3 = 0.99;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = false;
  static constexpr Algorithm algorithm = Algorithm::adam;
  using OwnOptions = NoOwnOptions;
};
// The baselines the article compares AdamX with (docs/design.md, "Baselines").
// Their γ is fixed at 1: they are the published algorithms, not AdamX variants.
struct Baseline {
  static constexpr double beta3 = 1.0;
  static constexpr double weight_decay = 0.0;
  static constexpr WeightDecayMode decay_mode = WeightDecayMode::l2;
  static constexpr bool gamma_fixed = true;
  using OwnOptions = NoOwnOptions;
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
  using OwnOptions = AdaBoundOwnOptions;
};
struct AdaMod : Baseline {
  static constexpr const char* name = "AdaMod";
  using Rule = rules::AdaMod;
  static constexpr Algorithm algorithm = Algorithm::adamod;
  using OwnOptions = AdaModOwnOptions;
};
}  // namespace flavour

/// Whether a flavour keeps AdaMod's per-element EMA of the step size
/// (TensorState::step_avg), a third word of state per parameter.
template <class Flavour>
constexpr bool keeps_step_average = Flavour::algorithm == Algorithm::adamod;

/// Per-group options of the optimizer `Flavour` names: the Adam family's,
/// then the flavour's own (AdaBound's, AdaMod's), its fields listed by
/// option_fields() in that order.
template <class Flavour>
struct BasicOptions : AdamFamilyOptions<Flavour>, Flavour::OwnOptions {
  static auto option_fields() {
    return std::tuple_cat(AdamFamilyOptions<Flavour>::option_fields(), Flavour::OwnOptions::option_fields());
  }

  /// Sets beta1 and beta2 together, like PyTorch's `betas=(b1, b2)`.
  BasicOptions& set_betas(double b1, double b2) {
    this->beta1 = b1;
    this->beta2 = b2;
    return *this;
  }

  friend bool operator==(const BasicOptions& a, const BasicOptions& b) { return option_fields_equal(a, b); }
  friend bool operator!=(const BasicOptions& a, const BasicOptions& b) { return !(a == b); }
};

using AdamOptions = BasicOptions<flavour::Adam>;
using AdamWOptions = BasicOptions<flavour::AdamW>;
using AdamXOptions = BasicOptions<flavour::AdamX>;
using RAdamOptions = BasicOptions<flavour::RAdam>;
using AdaBoundOptions = BasicOptions<flavour::AdaBound>;
using AdaModOptions = BasicOptions<flavour::AdaMod>;

/// Throws std::invalid_argument naming the first invalid field, its value and
/// the rule it breaks (docs/design.md, "Errors and the strong guarantee"). `group` is used in the message only.
template <class Flavour>
void validate(const BasicOptions<Flavour>& o, const std::string& group = {}) {
  validate_option_fields(o, Flavour::name, group);
}

ADAMX_NAMESPACE_END  // namespace adamx
