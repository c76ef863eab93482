// Schedules made of schedules, with the semantics of PyTorch 1.13's
//
//   SequentialLR<S...>       one schedule after another: at each milestone
//                            epoch the next one starts from its epoch 0
//   ChainedScheduler<S...>   every schedule updating one shared lr in turn,
//                            each epoch, as PyTorch's chained schedulers
//                            update the optimizer's lr
//
// The parts are held by value (a std::tuple of the schedule types), so a
// composed schedule is a value like any other: copied, stepped and compared
// without allocation or virtual calls, and its parts are typed
// (schedule<I>()). A SequentialLR part needs lr(), step(), epoch() and
// restart(): every epoch schedule of schedule.hpp (not LinearWarmup, itself
// a SequentialLR of two), schedule_factor.hpp and schedule_cycle.hpp has them. A ChainedScheduler part also needs
// start_on(lr) and step_on(lr), the same schedule applied to the shared lr.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/schedule.hpp"
#include "adamx/schedule_factor.hpp"
#include "adamx/schedule_state.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// Calls f(part) on the index-th element of a tuple.
template <class Tuple, class F, std::size_t... I>
void visit_part(Tuple& parts, std::size_t index, F&& f, std::index_sequence<I...>) {
  ((index == I ? void(f(std::get<I>(parts))) : void()), ...);
}
template <class Tuple>
using part_indices = std::make_index_sequence<std::tuple_size<std::remove_const_t<Tuple>>::value>;
template <class Tuple, class F>
void visit_part(Tuple& parts, std::size_t index, F&& f) {
  visit_part(parts, index, std::forward<F>(f), part_indices<Tuple>());
}

// Calls f(index, part) on every element of a tuple, in order.
template <class Tuple, class F, std::size_t... I>
void for_each_part(Tuple& parts, F&& f, std::index_sequence<I...>) {
  (f(I, std::get<I>(parts)), ...);
}
template <class Tuple, class F>
void for_each_part(Tuple& parts, F&& f) {
  for_each_part(parts, std::forward<F>(f), part_indices<Tuple>());
}

template <class Tuple>
void require_fresh_parts(const char* schedule, const Tuple& parts) {
  for_each_part(parts, [&](std::size_t i, const auto& part) {
    if (part.epoch() != 0)
      throw_invalid_schedule(schedule, ("schedules[" + std::to_string(i) + "]").c_str(),
                             "a schedule at epoch " + std::to_string(part.epoch()),
                             "must be freshly constructed, at epoch 0");
  });
}

// A composed schedule's state: its epoch, and its parts' states as children.
template <class Tuple>
ScheduleState composed_state(const char* kind, std::vector<std::pair<std::string, double>> settings,
                             std::int64_t epoch, const Tuple& parts) {
  ScheduleState s{kind, std::move(settings), {}, {{"epoch", epoch}}, {}};
  for_each_part(parts, [&](std::size_t, const auto& part) { s.children.push_back(part.state()); });
  return s;
}

// Checks `s` against `expected` (the composed schedule's own state()) and
// restores every part's state into a copy of `parts`, so that a refused part
// leaves the originals untouched; `check(i, part)` then checks how the
// restored parts fit together. The caller takes over the copy and s's epoch.
template <class Tuple, class Check>
Tuple restored_parts(const Tuple& parts, const ScheduleState& s, const ScheduleState& expected, Check check) {
  require_schedule_state(s, expected);
  require_state_count(s, "epoch", s.counters[0].second);
  Tuple copy = parts;
  for_each_part(copy, [&](std::size_t i, auto& part) {
    part.restore(s.children[i]);
    check(i, part);
  });
  return copy;
}

}  // namespace detail

/// torch.optim.lr_scheduler.SequentialLR: schedule 0 runs from epoch 0;
/// at milestone k − 1 schedule k takes over from its own epoch 0 (restart(),
/// PyTorch's scheduler.step(0), which uses the closed form). Every part
/// keeps its own initial lr (in PyTorch they share the optimizer's). Give
/// the parts freshly constructed.
template <class... Schedules>
class SequentialLR : public detail::ScheduleBase<SequentialLR<Schedules...>> {
  static_assert(sizeof...(Schedules) >= 1, "SequentialLR needs at least one schedule");

 public:
  static constexpr const char* kKind = "SequentialLR";
  /// milestones: strictly increasing epochs >= 1, one fewer than the schedules.
  SequentialLR(std::vector<std::int64_t> milestones, Schedules... schedules)
      : parts_(std::move(schedules)...), milestones_(std::move(milestones)) {
    if (milestones_.size() + 1 != sizeof...(Schedules))
      detail::throw_invalid_schedule(kKind, "milestones", std::to_string(milestones_.size()) + " milestones",
                                     ("must be one fewer than the " + std::to_string(sizeof...(Schedules)) +
                                      " schedules")
                                         .c_str());
    for (std::size_t i = 0; i < milestones_.size(); ++i)
      if (milestones_[i] < 1 || (i > 0 && milestones_[i] <= milestones_[i - 1]))
        detail::throw_invalid_schedule(kKind, "milestones", std::to_string(milestones_[i]),
                                       "must be >= 1 and strictly increasing");
    detail::require_fresh_parts(kKind, parts_);
  }
  double lr() const {
    double lr = 0.0;
    detail::visit_part(parts_, active_, [&](const auto& part) { lr = part.lr(); });
    return lr;
  }
  double initial_lr() const { return std::get<0>(parts_).initial_lr(); }
  std::int64_t epoch() const { return epoch_; }
  /// The schedule running at the current epoch, from 0.
  std::size_t active() const { return active_; }
  template <std::size_t I>
  const auto& schedule() const {
    return std::get<I>(parts_);
  }
  /// Advances one epoch (a throwing part changes nothing) and returns the new lr.
  double step() {
    const std::int64_t epoch = epoch_ + 1;
    const std::size_t active = active_at(epoch);
    const bool handover = active > 0 && milestones_[active - 1] == epoch;
    detail::visit_part(parts_, active, [&](auto& part) {
      if (handover)
        part.restart();
      else
        part.step();
    });
    epoch_ = epoch;
    active_ = active;
    return lr();
  }

  ScheduleState state() const {
    std::vector<std::pair<std::string, double>> settings;
    for (std::size_t i = 0; i < milestones_.size(); ++i)
      settings.emplace_back("milestones[" + std::to_string(i) + "]", detail::as_setting(milestones_[i]));
    return detail::composed_state(kKind, std::move(settings), epoch_, parts_);
  }
  /// All or nothing: the parts' states must fit the parts, and the running
  /// part's epoch the epochs since its milestone.
  void restore(const ScheduleState& s) {
    const std::int64_t epoch = s.counters.empty() ? 0 : s.counters[0].second;
    const std::size_t active = active_at(epoch);
    const std::int64_t since = epoch - (active > 0 ? milestones_[active - 1] : 0);
    auto parts = detail::restored_parts(parts_, s, state(), [&](std::size_t i, const auto& part) {
      if (i == active && part.epoch() != since)
        throw std::invalid_argument("adamx::SequentialLR::restore: at epoch " + std::to_string(epoch) +
                                    " schedule " + std::to_string(i) + " should be at its epoch " +
                                    std::to_string(since) + ", the state has it at " +
                                    std::to_string(part.epoch()));
    });
    parts_ = std::move(parts);
    epoch_ = epoch;
    active_ = active;
  }

 private:
  std::size_t active_at(std::int64_t epoch) const {
    return static_cast<std::size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), epoch) -
                                    milestones_.begin());
  }
  std::tuple<Schedules...> parts_;
  std::vector<std::int64_t> milestones_;
  std::int64_t epoch_ = 0;
  std::size_t active_ = 0;
};

/// torch.optim.lr_scheduler.ChainedScheduler: one shared lr, which every
/// schedule, in order, updates as its own at construction and at every
/// step: ChainedScheduler(ConstantLR(lr, 0.5, 4), ExponentialLR(lr, 0.9))
/// is lr × 0.5 for 4 epochs, times 0.9 every epoch. Recursive schedules
/// multiply the shared lr; from-scratch ones (LambdaLR, OneCycleLR,
/// CyclicLR) replace it, as in PyTorch. All parts must have the same
/// initial lr (PyTorch's share the optimizer's) and be freshly constructed.
template <class... Schedules>
class ChainedScheduler : public detail::ScheduleBase<ChainedScheduler<Schedules...>> {
  static_assert(sizeof...(Schedules) >= 1, "ChainedScheduler needs at least one schedule");

 public:
  static constexpr const char* kKind = "ChainedScheduler";
  explicit ChainedScheduler(Schedules... schedules) : parts_(std::move(schedules)...) {
    const double initial = std::get<0>(parts_).initial_lr();
    detail::for_each_part(parts_, [&](std::size_t i, const auto& part) {
      if (!detail::same_bits(part.initial_lr(), initial))
        detail::throw_invalid_schedule(kKind, ("schedules[" + std::to_string(i) + "].initial_lr").c_str(),
                                       detail::format_value(part.initial_lr()),
                                       ("must be schedules[0]'s, " + detail::format_value(initial)).c_str());
    });
    detail::require_fresh_parts(kKind, parts_);
    double shared = initial;
    detail::for_each_part(parts_, [&](std::size_t, auto& part) { shared = part.start_on(shared); });
  }
  /// The shared lr: what the last schedule made of it.
  double lr() const { return std::get<sizeof...(Schedules) - 1>(parts_).lr(); }
  double initial_lr() const { return std::get<0>(parts_).initial_lr(); }
  std::int64_t epoch() const { return epoch_; }
  template <std::size_t I>
  const auto& schedule() const {
    return std::get<I>(parts_);
  }
  /// Advances every schedule one epoch on the shared lr, in order, and
  /// returns the new lr. The parts step on a copy: one that throws leaves
  /// the chain as it was.
  double step() {
    std::tuple<Schedules...> parts = parts_;
    double shared = lr();
    detail::for_each_part(parts, [&](std::size_t, auto& part) { shared = part.step_on(shared); });
    parts_ = std::move(parts);
    ++epoch_;
    return lr();
  }

  ScheduleState state() const { return detail::composed_state(kKind, {}, epoch_, parts_); }
  /// All or nothing: the parts' states must fit the parts, all at the chain's epoch.
  void restore(const ScheduleState& s) {
    const std::int64_t epoch = s.counters.empty() ? 0 : s.counters[0].second;
    auto parts = detail::restored_parts(parts_, s, state(), [&](std::size_t i, const auto& part) {
      if (part.epoch() != epoch)
        throw std::invalid_argument("adamx::ChainedScheduler::restore: schedule " + std::to_string(i) +
                                    " is at epoch " + std::to_string(part.epoch()) + ", the chain at " +
                                    std::to_string(epoch));
    });
    parts_ = std::move(parts);
    epoch_ = epoch;
  }

 private:
  std::tuple<Schedules...> parts_;
  std::int64_t epoch_ = 0;
};

ADAMX_NAMESPACE_END  // namespace adamx
