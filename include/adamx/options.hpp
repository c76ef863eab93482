// What every optimizer's options are built from: the enumerations options
// hold, and BasicOptions, which makes an optimizer's option type from the
// parts its flavour lists. The parts and the flavours themselves (their
// names, defaults and fields) are declared with each update rule, in
// include/adamx/rules/ (docs/design.md, "Options"), each part once as a
// field list (option_fields.hpp) that validation, comparison, checkpoints,
// the typed setters and the libtorch adapter are all made from.
//
// Each optimizer gets its own option type with the right defaults and
// fields, and a mix-up (AdamX options handed to Adam, final_lr set on Adam)
// is a compile error, not a silent change of algorithm.
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

/// The parts an optimizer's options are made of, in the order their fields
/// are listed: each part a struct of option members with a static
/// option_fields() (option_fields.hpp). A flavour names its parts as
/// `using OptionParts = OptionPartList<...>;`, in its update rule's file
/// (include/adamx/rules/).
template <class... Parts>
struct OptionPartList {};

namespace detail {
template <class List>
struct OptionPartsOf;
// Every part as a base, and their fields concatenated in part order.
template <class... Parts>
struct OptionPartsOf<OptionPartList<Parts...>> : Parts... {
  static auto option_fields() { return std::tuple_cat(Parts::option_fields()...); }
};
}  // namespace detail

/// Per-group options of the optimizer `Flavour` names: the members of every
/// part `Flavour::OptionParts` lists, their fields listed by option_fields()
/// in part order. Each optimizer's option type is one instance (AdamOptions
/// = BasicOptions<flavour::Adam>, ...), so handing one optimizer's options
/// to another is a compile error.
template <class Flavour>
struct BasicOptions : detail::OptionPartsOf<typename Flavour::OptionParts> {
  using detail::OptionPartsOf<typename Flavour::OptionParts>::option_fields;

  /// Sets beta1 and beta2 together, like PyTorch's `betas=(b1, b2)` (for
  /// the optimizers that have both).
  BasicOptions& set_betas(double b1, double b2) {
    this->beta1 = b1;
    this->beta2 = b2;
    return *this;
  }

  friend bool operator==(const BasicOptions& a, const BasicOptions& b) { return option_fields_equal(a, b); }
  friend bool operator!=(const BasicOptions& a, const BasicOptions& b) { return !(a == b); }
};

/// Throws std::invalid_argument naming the first invalid field, its value and
/// the rule it breaks (docs/design.md, "Errors and the strong guarantee"). `group` is used in the message only.
template <class Flavour>
void validate(const BasicOptions<Flavour>& o, const std::string& group = {}) {
  validate_option_fields(o, Flavour::name, group);
}

ADAMX_NAMESPACE_END  // namespace adamx
