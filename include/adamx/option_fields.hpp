// Options declared once, as a list of fields, and everything generic made
// from that list: validation (the messages users and checkpoints see), the
// comparison of two option sets, and setting or finding a field by name.
//
// An options type lists its fields in a static `option_fields()` that returns
// a std::tuple of OptionField: the field's name (as errors, checkpoints and
// the libtorch adapter spell it), the member it is, and the checks its value
// must pass, each with the words of its rule. The field's default is the
// member's initialiser, next to it, so a default-constructed options object
// is every default at once (docs/design.md, "Options").
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "adamx/abi.hpp"

ADAMX_NAMESPACE_BEGIN

/// A check of an option's value: a predicate and the rule it states, the
/// words an error message quotes ("must be in [0, 1)"). `holds == nullptr`:
/// no check (every value of the type is valid, as for a bool).
template <class T>
struct OptionCheck {
  bool (*holds)(T value);
  const char* rule;
};

/// An enumeration's names in code order (its codes are 0, 1, ...), and the
/// rule an unknown code breaks. Specialised for each enumeration an options
/// type holds.
template <class Enum>
struct OptionEnum;

/// One field of an options type: its name, the member it is (of `Owner`, the
/// options type or one of its bases), and up to two checks made in order.
template <class Owner, class T>
struct OptionField {
  using value_type = T;
  const char* name;
  T Owner::*member;
  OptionCheck<T> check;
  OptionCheck<T> extra;
};

/// A field whose values pass `check` (and then `extra`, if given).
template <class Owner, class T>
constexpr OptionField<Owner, T> option_field(const char* name, T Owner::*member, OptionCheck<T> check,
                                             OptionCheck<T> extra = {nullptr, nullptr}) {
  return {name, member, check, extra};
}

/// A bool field: every value is valid.
template <class Owner>
constexpr OptionField<Owner, bool> option_flag(const char* name, bool Owner::*member) {
  return {name, member, {nullptr, nullptr}, {nullptr, nullptr}};
}

namespace detail {
// The type of a setter's value, spelled so that it is not deduced from the
// argument (set(g, &Options::lr, 1) passes an int for a double).
template <class T>
struct option_value {
  using type = T;
};
template <class T>
using option_value_t = typename option_value<T>::type;

template <class Enum>
bool is_known_code(Enum value) {
  const auto code = static_cast<long long>(value);
  return code >= 0 && code < static_cast<long long>(std::size(OptionEnum<Enum>::names));
}
}  // namespace detail

/// An enumeration field: its value must be one of the enumerators.
template <class Owner, class Enum>
constexpr OptionField<Owner, Enum> option_enum(const char* name, Enum Owner::*member) {
  return {name, member, {&detail::is_known_code<Enum>, OptionEnum<Enum>::rule}, {nullptr, nullptr}};
}

/// The ranges of the library's double options, each with its rule's words.
namespace option_range {
inline bool finite_at_least_zero(double x) { return std::isfinite(x) && x >= 0.0; }
inline bool finite_above_zero(double x) { return std::isfinite(x) && x > 0.0; }
inline bool unit_interval(double x) { return std::isfinite(x) && x >= 0.0 && x < 1.0; }
inline bool closed_unit_interval(double x) { return std::isfinite(x) && x >= 0.0 && x <= 1.0; }
inline bool exactly_one(double x) { return x == 1.0; }
// A count held in a double: whole, and small enough that every count below
// it is exact (2^53).
inline bool whole_at_least_zero(double x) {
  return std::isfinite(x) && x >= 0.0 && x <= 9007199254740992.0 && x == std::floor(x);
}
inline bool finite_any(double x) { return std::isfinite(x); }
inline bool open_unit_interval(double x) { return std::isfinite(x) && x > 0.0 && x < 1.0; }

inline constexpr OptionCheck<double> non_negative{&finite_at_least_zero, "must be finite and >= 0"};
inline constexpr OptionCheck<double> positive{&finite_above_zero, "must be finite and > 0"};
inline constexpr OptionCheck<double> rate{&unit_interval, "must be in [0, 1)"};
inline constexpr OptionCheck<double> whole_non_negative{&whole_at_least_zero,
                                                        "must be a whole number >= 0 (at most 2^53)"};
inline constexpr OptionCheck<double> finite{&finite_any, "must be finite"};
}  // namespace option_range

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

// A field's value as an error message shows it: a double as typed, an
// enumeration by its code (an invalid one has no name), a bool as a word.
inline std::string option_value_text(double value) { return format_value(value); }
inline std::string option_value_text(bool value) { return value ? "true" : "false"; }
template <class Enum, class = std::enable_if_t<std::is_enum<Enum>::value>>
std::string option_value_text(Enum value) {
  return std::to_string(static_cast<long long>(value));
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

/// Calls `visit(field)` for every field of `Options`, in declaration order.
template <class Options, class Visit>
void for_each_option_field(Visit&& visit) {
  std::apply([&](const auto&... field) { (visit(field), ...); }, Options::option_fields());
}

/// Whether `Options` declares a field named `name`.
template <class Options>
bool has_option_field(const char* name) {
  bool found = false;
  for_each_option_field<Options>([&](const auto& field) { found = found || std::strcmp(field.name, name) == 0; });
  return found;
}

/// Whether every field of `a` equals the same field of `b` (exact equality:
/// options are copied, never recomputed).
template <class Options>
bool option_fields_equal(const Options& a, const Options& b) {
  bool equal = true;
  for_each_option_field<Options>([&](const auto& field) { equal = equal && a.*field.member == b.*field.member; });
  return equal;
}

/// Throws std::invalid_argument naming the first field of `o` that breaks a
/// check, its value and the rule (docs/design.md, "Errors and the strong
/// guarantee"). The ranges of the numbers are checked first, then the
/// enumerations' codes, each in declaration order. `group` is for the
/// message only.
template <class Options>
void validate_option_fields(const Options& o, const char* optimizer, const std::string& group) {
  const auto check_field = [&](const auto& field) {
    const auto value = o.*field.member;
    for (const auto& check : {field.check, field.extra})
      if (check.holds != nullptr && !check.holds(value))
        detail::throw_invalid_option(optimizer, group, field.name, detail::option_value_text(value), check.rule);
  };
  for_each_option_field<Options>([&](const auto& field) {
    if constexpr (!std::is_enum<typename std::decay_t<decltype(field)>::value_type>::value) check_field(field);
  });
  for_each_option_field<Options>([&](const auto& field) {
    if constexpr (std::is_enum<typename std::decay_t<decltype(field)>::value_type>::value) check_field(field);
  });
}

ADAMX_NAMESPACE_END  // namespace adamx
