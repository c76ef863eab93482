// The resumable state of a learning-rate schedule as plain data, so that a
// training-run checkpoint can store any schedule and restore it into a
// freshly constructed one.
//
// Every schedule offers
//
//   ScheduleState state() const;             // what it would need to go on
//   void restore(const ScheduleState& s);    // all-or-nothing
//
// A state holds the schedule's kind, the settings it was constructed with,
// the values and counters that stepping changes, and the states of the
// schedules it composes. restore() is meant for a schedule constructed with
// the same arguments as the one saved (a callable, as LambdaLR's, cannot be
// stored; the caller passes it again): it checks the kind, every setting
// bitwise and the names of every value and counter, and refuses any
// difference with std::invalid_argument naming it, leaving the schedule as
// it was.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/options.hpp"

ADAMX_NAMESPACE_BEGIN

/// A schedule's state (see the file comment). Integers among the settings
/// (step sizes, epoch counts) are stored as doubles: they are far below 2^53,
/// where a double holds every integer exactly.
struct ScheduleState {
  std::string kind;                                            ///< e.g. "StepLR"
  std::vector<std::pair<std::string, double>> settings;        ///< constructor arguments
  std::vector<std::pair<std::string, double>> values;          ///< e.g. lr, best
  std::vector<std::pair<std::string, std::int64_t>> counters;  ///< e.g. epoch
  std::vector<ScheduleState> children;                         ///< composed schedules, in order
};

namespace detail {

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Appends to `out` every way `got` differs in kind, settings or field names
// from `expected` (the receiving schedule's own state()), prefixing nested
// schedules' differences with their position.
inline void schedule_state_differences(const ScheduleState& got, const ScheduleState& expected,
                                       const std::string& where, std::vector<std::string>& out) {
  if (got.kind != expected.kind) {
    out.push_back(where + "the state is a " + got.kind + "'s, this schedule is a " + expected.kind);
    return;
  }
  const auto names = [](const auto& fields) {
    std::string text;
    for (const auto& f : fields) text += (text.empty() ? "" : ", ") + f.first;
    return "{" + text + "}";
  };
  if (got.settings.size() != expected.settings.size()) {
    out.push_back(where + "settings " + names(got.settings) + " instead of " + names(expected.settings));
  } else {
    for (std::size_t i = 0; i < got.settings.size(); ++i) {
      const auto& g = got.settings[i];
      const auto& e = expected.settings[i];
      if (g.first != e.first)
        out.push_back(where + "setting " + g.first + " where " + e.first + " was expected");
      else if (!same_bits(g.second, e.second))
        out.push_back(where + "setting " + g.first + " = " + format_value(g.second) +
                      " in the state, " + format_value(e.second) + " in this schedule");
    }
  }
  if (got.values.size() != expected.values.size() ||
      !std::equal(got.values.begin(), got.values.end(), expected.values.begin(),
                  [](const auto& a, const auto& b) { return a.first == b.first; }))
    out.push_back(where + "values " + names(got.values) + " instead of " + names(expected.values));
  if (got.counters.size() != expected.counters.size() ||
      !std::equal(got.counters.begin(), got.counters.end(), expected.counters.begin(),
                  [](const auto& a, const auto& b) { return a.first == b.first; }))
    out.push_back(where + "counters " + names(got.counters) + " instead of " +
                  names(expected.counters));
  if (got.children.size() != expected.children.size()) {
    out.push_back(where + std::to_string(got.children.size()) + " composed schedules instead of " +
                  std::to_string(expected.children.size()));
    return;
  }
  for (std::size_t i = 0; i < got.children.size(); ++i)
    schedule_state_differences(got.children[i], expected.children[i],
                               where + expected.kind + "[" + std::to_string(i) + "]: ", out);
}

// Throws std::invalid_argument ("adamx::<kind>::restore: ...", every
// difference listed) unless `got` has the layout and settings of `expected`.
inline void require_schedule_state(const ScheduleState& got, const ScheduleState& expected) {
  std::vector<std::string> differences;
  schedule_state_differences(got, expected, "", differences);
  if (differences.empty()) return;
  std::string message = "adamx::" + expected.kind + "::restore: the state does not fit this schedule: ";
  for (std::size_t i = 0; i < differences.size(); ++i)
    message += (i ? "; " : "") + differences[i];
  throw std::invalid_argument(message);
}

// Checks for the values a restored schedule takes over.
inline void require_state_lr(const ScheduleState& s, const char* field, double value) {
  if (!(std::isfinite(value) && value >= 0.0))
    throw std::invalid_argument("adamx::" + s.kind + "::restore: invalid " + field + " = " +
                                format_value(value) + " (must be finite and >= 0)");
}
inline void require_state_count(const ScheduleState& s, const char* field, std::int64_t value) {
  if (value < 0)
    throw std::invalid_argument("adamx::" + s.kind + "::restore: invalid " + field + " = " +
                                std::to_string(value) + " (must be >= 0)");
}

}  // namespace detail
ADAMX_NAMESPACE_END  // namespace adamx
