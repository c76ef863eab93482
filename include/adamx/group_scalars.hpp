// The per-group scalars an update rule carries from step to step beside the
// step count t (AdamX's γ and h), as the rule declares them (docs/design.md,
// "Update rules"): a struct `GroupScalars` of doubles, each member with its
// initial value, and a static `scalar_fields()` listing them as option
// fields do (option_fields.hpp: name, member, the checks restore() makes).
// The driver, the plain-data state, checkpoints, the MPI driver and the
// libtorch adapter handle the scalars through that list; a rule that carries
// none declares nothing.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "adamx/abi.hpp"
#include "adamx/option_fields.hpp"
#include "adamx/options.hpp"

ADAMX_NAMESPACE_BEGIN

/// The group scalars of a rule that declares none.
struct NoGroupScalars {
  static std::tuple<> scalar_fields() { return {}; }
};

namespace detail {
template <class Rule, class = void>
struct rule_group_scalars {
  using type = NoGroupScalars;
};
template <class Rule>
struct rule_group_scalars<Rule, std::void_t<typename Rule::GroupScalars>> {
  using type = typename Rule::GroupScalars;
};

// The scalars of the groups whose options are `Options`: those of the rule
// of the flavour that names them.
template <class Options>
struct options_group_scalars {
  using type = NoGroupScalars;
};
template <class Flavour>
struct options_group_scalars<BasicOptions<Flavour>> {
  using type = typename rule_group_scalars<typename Flavour::Rule>::type;
};
}  // namespace detail

/// The group scalars update rule `Rule` declares (NoGroupScalars if none).
template <class Rule>
using GroupScalarsOf = typename detail::rule_group_scalars<Rule>::type;

/// The group scalars of the optimizer whose options are `Options`.
template <class Options>
using GroupScalarsFor = typename detail::options_group_scalars<Options>::type;

/// Calls `visit(field)` for every scalar `Scalars` declares, in order.
template <class Scalars, class Visit>
void for_each_group_scalar(Visit&& visit) {
  std::apply([&](const auto&... field) { (visit(field), ...); }, Scalars::scalar_fields());
}

/// The scalar named `name` of `s`, or `absent` if its rule declares none so
/// named (a report's γ is 1 for a rule without γ).
template <class Scalars>
double group_scalar_or(const Scalars& s, const char* name, double absent) {
  double value = absent;
  for_each_group_scalar<Scalars>([&](const auto& field) {
    if (std::strcmp(field.name, name) == 0) value = s.*field.member;
  });
  return value;
}

/// Sets the scalar named `name` of `s` to `value`; false, changing nothing,
/// if its rule declares none so named.
template <class Scalars>
bool set_group_scalar(Scalars& s, const char* name, double value) {
  bool found = false;
  for_each_group_scalar<Scalars>([&](const auto& field) {
    if (std::strcmp(field.name, name) == 0) {
      s.*field.member = value;
      found = true;
    }
  });
  return found;
}

/// Whether every scalar of `a` has the bits of the same scalar of `b`.
template <class Scalars>
bool group_scalars_same_bits(const Scalars& a, const Scalars& b) {
  bool same = true;
  for_each_group_scalar<Scalars>([&](const auto& field) {
    same = same && std::memcmp(&(a.*field.member), &(b.*field.member), sizeof(double)) == 0;
  });
  return same;
}

/// The scalars after step t (≥ 1) of a group with options `o` and squared
/// gradient norm s: the rule's advance_group_scalars (a rule that declares
/// scalars declares how they advance). The driver calls it for every step
/// taken, s finite or not; the rule decides what a non-finite s means
/// (AdamX's γ and h keep their values).
template <class Rule, class Scalars, class Options>
void advance_group_scalars(Scalars& scalars, double s, std::int64_t t, const Options& o) {
  if constexpr (!std::is_same<Scalars, NoGroupScalars>::value) Rule::advance_group_scalars(scalars, s, t, o);
}

/// Whatever restore() refuses in the scalars of a group of `Flavour` beyond
/// each scalar's own checks (Adam's γ, which only AdamX moves), as the rule
/// words it; empty if nothing, or if the rule declares no such check.
template <class Flavour, class Scalars>
std::string group_scalars_problem(const Scalars& scalars) {
  if constexpr (std::is_same<Scalars, NoGroupScalars>::value) {
    return {};
  } else {
    return Flavour::Rule::template group_scalars_problem<Flavour>(scalars);
  }
}

ADAMX_NAMESPACE_END  // namespace adamx
