// Helpers shared by test_optimizer.cpp and test_badinput.cpp: deterministic
// fills, bitwise comparisons, snapshots of an optimizer's state plus the
// caller's parameters, and checks on exception messages. Nothing here knows
// the update rule; expectations about the arithmetic live in the tests.
#pragma once

#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace adamx_test {

// ---- typed tests -------------------------------------------------------------

/// The flavour tag of an optimizer type (flavour::Adam, ...).
template <class Opt>
struct FlavourOf;
template <class S, class F>
struct FlavourOf<adamx::Optimizer<S, F>> {
  using type = F;
};
template <class Opt>
using FlavourOf_t = typename FlavourOf<Opt>::type;
/// Whether `Flavour` steps with the update rule `Rule` (adamx::rules::AdaMod, ...).
template <class Flavour, class Rule>
constexpr bool kStepsWith = std::is_same<typename Flavour::Rule, Rule>::value;
/// Whether optimizer `Opt` keeps AdaMod's per-element EMA of the step size
/// (the state slot step_avg): AdaMod alone does.
template <class Opt>
constexpr bool kKeepsStepAverage = kStepsWith<FlavourOf_t<Opt>, adamx::rules::AdaMod>;
namespace detail {
template <class Flavour, class = void>
struct gamma_fixed : std::true_type {};  // no γ at all: as if γ ≡ 1
template <class Flavour>
struct gamma_fixed<Flavour, std::void_t<decltype(Flavour::gamma_fixed)>>
    : std::integral_constant<bool, Flavour::gamma_fixed> {};
}  // namespace detail
/// True for every optimizer but AdamX: γ is fixed at 1 (β3 must be 1), or,
/// for a rule with no γ (Lion), absent, which steps as γ ≡ 1 would.
template <class Opt>
constexpr bool kGammaFixed = detail::gamma_fixed<FlavourOf_t<Opt>>::value;

/// Every optimizer type, for typed tests.
using AllOptimizers = ::testing::Types<adamx::Adam<float>, adamx::Adam<double>, adamx::AdamW<float>,
                                       adamx::AdamW<double>, adamx::AdamX<float>, adamx::AdamX<double>,
                                       adamx::RAdam<float>, adamx::RAdam<double>,
                                       adamx::AdaBound<float>, adamx::AdaBound<double>,
                                       adamx::AdaMod<float>, adamx::AdaMod<double>,
                                       adamx::Lion<float>, adamx::Lion<double>,
                                       adamx::Adan<float>, adamx::Adan<double>,
                                       adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>>;

/// The index of slot `name` among the slots `Slotted` declares (an update
/// rule, or a TensorState or TensorStateView, which list their rule's), or
/// -1 where it has none of that name.
template <class Slotted>
int slot_index(const char* name) {
  for (int k = 0; k < Slotted::kSlots; ++k)
    if (std::strcmp(Slotted::slot_names[k], name) == 0) return k;
  return -1;
}

/// Whether optimizer `Opt`'s rule keeps the per-element state slot `name`
/// ("v_max": the Adam family's and the baselines'; Lion keeps m alone).
template <class Opt>
bool rule_has_slot(const char* name) {
  return slot_index<typename FlavourOf_t<Opt>::Rule>(name) >= 0;
}

/// Slot `name` ("v", "v_max", ...) of a tensor's state `ts` (TensorState,
/// or a TensorStateView), or null where its rule has no such slot: how a
/// suite typed over every optimizer reaches a slot only some rules have
/// (a TensorState has members for its own rule's slots alone).
template <class TensorState>
auto slot_named(TensorState& ts, const char* name) -> decltype(&ts.slot(0)) {
  const int k = slot_index<std::remove_const_t<TensorState>>(name);
  return k >= 0 ? &ts.slot(k) : nullptr;
}

/// The size of slot `name` of `ts`: 0 where its rule has no such slot, as
/// where the options leave it unused.
template <class TensorState>
Eigen::Index slot_size(const TensorState& ts, const char* name) {
  const auto* slot = slot_named(ts, name);
  return slot ? slot->size() : 0;
}

/// Whether `Options` declares the option `name` ("amsgrad", "eps", ...).
template <class Options>
bool declares_option(const std::string& name) {
  bool found = false;
  adamx::for_each_option_field<Options>([&](const auto& field) { found = found || name == field.name; });
  return found;
}

namespace detail {
template <class Scalars, class = void>
struct has_h : std::false_type {};
template <class Scalars>
struct has_h<Scalars, std::void_t<decltype(&Scalars::h)>> : std::true_type {};
}  // namespace detail
/// Whether optimizer `Opt` carries the Adam family's group scalar h (and so
/// has a usable Optimizer::h()).
template <class Opt>
constexpr bool kHasH = detail::has_h<typename Opt::State::Scalars>::value;

/// Readable typed-test names: Suite/AdamX_float, ...
struct OptimizerName {
  template <class T>
  static std::string GetName(int) {
    return std::string(T::name()) +
           (std::is_same<typename T::scalar_type, float>::value ? "_float" : "_double");
  }
};

// ---- options by name ---------------------------------------------------------

/// Sets the option named `name` of `o` to `value` (converted to the field's
/// type; an enumeration from its code), found through the options' field
/// list. False, changing nothing, if `o` has no such option (AdaBound's
/// final_lr on Adam, say).
template <class Options>
bool set_option(Options& o, const std::string& name, double value) {
  bool found = false;
  adamx::for_each_option_field<Options>([&](const auto& field) {
    using T = typename std::decay_t<decltype(field)>::value_type;
    if (found || name != field.name) return;
    found = true;
    if constexpr (std::is_enum<T>::value)
      o.*field.member = static_cast<T>(static_cast<int>(value));
    else
      o.*field.member = static_cast<T>(value);
  });
  return found;
}

/// The double option named `name` of `o`, or `fallback` if `o` has none.
template <class Options>
double option_or(const Options& o, const std::string& name, double fallback) {
  double value = fallback;
  adamx::for_each_option_field<Options>([&](const auto& field) {
    using T = typename std::decay_t<decltype(field)>::value_type;
    if constexpr (std::is_same<T, double>::value)
      if (name == field.name) value = o.*field.member;
  });
  return value;
}

/// Calls `call(target)` if that compiles (a setter only some optimizers
/// have: write `call` with a trailing decltype return type); returns whether
/// it did.
template <class Target, class Call>
bool call_if_declared(Target& target, const Call& call) {
  if constexpr (std::is_invocable<const Call&, Target&>::value) {
    call(target);
    return true;
  } else {
    return false;
  }
}

// ---- deterministic data ----------------------------------------------------

/// Fills n elements with reproducible values in [-scale, scale], none zero
/// (a zero gradient would hide sign and eps effects). A 64-bit LCG, so the
/// numbers are the same on every platform.
template <class Scalar>
void fill(Scalar* data, Eigen::Index n, std::uint64_t seed, double scale = 1.0) {
  std::uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (Eigen::Index i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const double u = static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    double value = (2.0 * u - 1.0) * scale;
    if (value == 0.0) value = scale * 0.5;
    data[i] = static_cast<Scalar>(value);
  }
}

/// fill() for any Eigen object with direct access (Matrix, Array, Map).
template <class Derived>
void fill(Eigen::DenseBase<Derived>& x, std::uint64_t seed, double scale = 1.0) {
  fill(x.derived().data(), x.size(), seed, scale);
}

// ---- bitwise comparison ----------------------------------------------------

template <class Scalar>
bool same_bits(const Scalar* a, const Scalar* b, Eigen::Index n) {
  return n == 0 || std::memcmp(a, b, static_cast<std::size_t>(n) * sizeof(Scalar)) == 0;
}

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

/// The raw bytes of a tensor in memory order.
template <class Scalar>
std::vector<unsigned char> bytes_of(const adamx::ConstTensorRef<Scalar>& x) {
  const auto* begin = reinterpret_cast<const unsigned char*>(x.data());
  return std::vector<unsigned char>(begin, begin + x.size() * static_cast<Eigen::Index>(sizeof(Scalar)));
}

/// Bitwise equality of two Eigen objects' memory (same size required).
template <class A, class B>
::testing::AssertionResult BitwiseEqual(const Eigen::DenseBase<A>& a, const Eigen::DenseBase<B>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes differ: " << a.size() << " vs " << b.size();
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    const auto x = a.derived().data()[i];
    const auto y = b.derived().data()[i];
    if (std::memcmp(&x, &y, sizeof x) != 0)
      return ::testing::AssertionFailure()
             << "first difference at memory index " << i << ": " << x << " vs " << y;
  }
  return ::testing::AssertionSuccess();
}

// ---- snapshots -------------------------------------------------------------

/// The optimizer's full state (a copy of state(), compared with GroupState's
/// bitwise operator==) and the bytes of the caller's parameter tensors.
template <class Optimizer>
struct Snapshot {
  using Scalar = typename Optimizer::scalar_type;
  std::vector<typename Optimizer::State> state;
  std::vector<std::vector<unsigned char>> params;
  std::size_t num_groups = 0;

  Snapshot(const Optimizer& opt, std::initializer_list<adamx::ConstTensorRef<Scalar>> tensors)
      : state(opt.state()), num_groups(opt.num_groups()) {
    for (const auto& t : tensors) params.push_back(bytes_of(t));
  }

  /// Success iff `opt` and `tensors` are bitwise what they were; otherwise
  /// names the first difference.
  ::testing::AssertionResult Unchanged(const Optimizer& opt,
                                       std::initializer_list<adamx::ConstTensorRef<Scalar>> tensors) const {
    if (opt.num_groups() != num_groups)
      return ::testing::AssertionFailure()
             << "num_groups changed from " << num_groups << " to " << opt.num_groups();
    const auto& now = opt.state();
    for (std::size_t g = 0; g < state.size(); ++g) {
      if (now[g] == state[g]) continue;
      auto failure = ::testing::AssertionFailure();
      failure << "state of group " << g << " ('" << state[g].name << "') changed:";
      if (now[g].t != state[g].t) failure << " t " << state[g].t << " -> " << now[g].t << ";";
      adamx::for_each_group_scalar<typename Optimizer::State::Scalars>([&](const auto& field) {
        if (!same_bits(now[g].*field.member, state[g].*field.member)) failure << " " << field.name << ";";
      });
      if (!(now[g].options == state[g].options)) failure << " options;";
      for (std::size_t j = 0; j < state[g].tensors.size() && j < now[g].tensors.size(); ++j)
        if (!(now[g].tensors[j] == state[g].tensors[j]))
          failure << " tensor '" << state[g].tensors[j].name << "';";
      return failure;
    }
    if (tensors.size() != params.size())
      return ::testing::AssertionFailure() << "snapshot holds " << params.size()
                                           << " parameter tensors, " << tensors.size() << " given";
    std::size_t k = 0;
    for (const auto& t : tensors) {
      if (bytes_of(t) != params[k])
        return ::testing::AssertionFailure() << "parameter tensor " << k << " changed";
      ++k;
    }
    return ::testing::AssertionSuccess();
  }
};

// ---- exception messages ----------------------------------------------------

/// Runs `action`, which must throw `E`; returns what() ("" and a test failure
/// otherwise). Any other exception type is a failure too.
template <class E, class Action>
std::string thrown_message(Action&& action) {
  try {
    action();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong exception type; what(): " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

/// The message split into words of [A-Za-z0-9_.+-] (quotes, '=', brackets,
/// commas and spaces separate words).
inline std::vector<std::string> words(const std::string& message) {
  std::vector<std::string> out;
  std::string current;
  for (char c : message) {
    const bool word_char = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                           c == '+' || c == '-';
    if (word_char) {
      current += c;
    } else if (!current.empty()) {
      out.push_back(current);
      current.clear();
    }
  }
  if (!current.empty()) out.push_back(current);
  return out;
}

inline bool parses_as_number(const std::string& word, double& value) {
  if (word.empty()) return false;
  char* end = nullptr;
  value = std::strtod(word.c_str(), &end);
  return end == word.c_str() + word.size();
}

/// Success iff the message names `field` as a word and the first number after
/// it reads back exactly as `value` (NaN matches any NaN spelling). This pins
/// "field = value" without pinning how the value is formatted.
inline ::testing::AssertionResult NamesFieldAndValue(const std::string& message,
                                                     const std::string& field, double value) {
  const auto w = words(message);
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (w[i] != field) continue;
    for (std::size_t k = i + 1; k < w.size(); ++k) {
      double parsed = 0.0;
      if (!parses_as_number(w[k], parsed)) continue;
      if ((std::isnan(value) && std::isnan(parsed)) || parsed == value)
        return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "the first number after '" << field << "' is '"
                                           << w[k] << "', not " << value << " in: " << message;
    }
    return ::testing::AssertionFailure() << "no number after '" << field << "' in: " << message;
  }
  return ::testing::AssertionFailure() << "'" << field << "' is not a word of: " << message;
}

inline ::testing::AssertionResult Contains(const std::string& message, const std::string& part) {
  if (message.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' is not in: " << message;
}

/// Success iff the message shows the shape rows x cols, in any of the usual
/// spellings ("4x2", "4 x 2", "(4, 2)", "[4, 2]", "4×2").
inline ::testing::AssertionResult MentionsShape(const std::string& message, Eigen::Index rows,
                                                Eigen::Index cols) {
  const std::string r = std::to_string(rows), c = std::to_string(cols);
  for (const std::string& form : {r + "x" + c, r + " x " + c, "(" + r + ", " + c + ")",
                                  "[" + r + ", " + c + "]", r + "\u00d7" + c}) {
    if (message.find(form) != std::string::npos) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "shape " << r << "x" << c << " is not in: " << message;
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace adamx_test
