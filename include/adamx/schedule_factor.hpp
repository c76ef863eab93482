// Learning-rate schedules that scale the initial lr by a factor, with the
// semantics of PyTorch 1.13's schedulers of the same names:
//
//   MultiStepLR    lr × gamma at every milestone epoch (a milestone listed k
//                  times multiplies by gamma^k)
//   ConstantLR     lr × factor for the first total_iters epochs, then lr
//   LinearLR       lr × a factor going linearly from start_factor to
//                  end_factor over total_iters epochs, then constant
//   PolynomialLR   lr × (1 − e/total_iters)^power, 0 from total_iters on
//   LambdaLR       lr × lambda(epoch), for any callable
//
// As the schedules of schedule.hpp, each steps by PyTorch's recursive update
// (LambdaLR: its from-scratch product) with the same double operations in the
// same order, so the sequences are PyTorch's to the bit
// (tests/test_schedule_more.cpp compares them with recorded ones), and
// closed_form(epoch) is PyTorch's closed form. Every schedule here offers
// state() and restore() (schedule_state.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/options.hpp"
#include "adamx/schedule.hpp"
#include "adamx/schedule_state.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// An epoch schedule whose state is its lr and epoch: state() and restore()
// for it. Derived names itself in kKind and lists its constructor arguments
// in settings(); check_restored_epoch() refuses epochs it cannot be at.
template <class Derived>
class StatefulEpochSchedule : public EpochSchedule<Derived> {
 public:
  ScheduleState state() const {
    return {Derived::kKind, self().settings(), {{"lr", this->lr_}}, {{"epoch", this->epoch_}}, {}};
  }
  /// Takes over a state() of a schedule constructed with the same arguments;
  /// anything else throws std::invalid_argument and changes nothing.
  void restore(const ScheduleState& s) {
    require_schedule_state(s, state());
    const double lr = s.values[0].second;
    const std::int64_t epoch = s.counters[0].second;
    require_state_lr(s, "lr", lr);
    require_state_count(s, "epoch", epoch);
    self().check_restored_epoch(s, epoch);
    this->lr_ = lr;
    this->epoch_ = epoch;
  }

 protected:
  using EpochSchedule<Derived>::EpochSchedule;
  void check_restored_epoch(const ScheduleState&, std::int64_t) const {}
  // Epoch 0 at `lr`: what construction and start_on() end with.
  double start_at(double lr) {
    this->epoch_ = 0;
    this->lr_ = lr;
    return lr;
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

// A schedule that computes every epoch's lr from scratch, by its
// closed_form(epoch), as PyTorch's LambdaLR, OneCycleLR and CyclicLR do. In a
// ChainedScheduler it ignores the lr the schedules before it set, as theirs.
// A closed_form that throws leaves the schedule where it was. Its state is
// its epoch alone: restore() recomputes the lr, which therefore always is
// the one stepping would reach (even where PyTorch's is not a valid lr, as
// OneCycleLR's linear anneal at its last step).
template <class Derived>
class FromScratchSchedule : public EpochSchedule<Derived> {
 public:
  double start_on(double) {
    this->lr_ = self().closed_form(0);
    this->epoch_ = 0;
    return this->lr_;
  }
  double step() {
    this->lr_ = self().closed_form(this->epoch_ + 1);
    ++this->epoch_;
    return this->lr_;
  }
  ScheduleState state() const { return {Derived::kKind, self().settings(), {}, {{"epoch", this->epoch_}}, {}}; }
  /// Takes over a state() of a schedule constructed with the same arguments
  /// (and callable); anything else throws std::invalid_argument and changes nothing.
  void restore(const ScheduleState& s) {
    require_schedule_state(s, state());
    const std::int64_t epoch = s.counters[0].second;
    require_state_count(s, "epoch", epoch);
    self().check_restored_epoch(s, epoch);
    this->lr_ = self().closed_form(epoch);
    this->epoch_ = epoch;
  }

 protected:
  using EpochSchedule<Derived>::EpochSchedule;
  void check_restored_epoch(const ScheduleState&, std::int64_t) const {}

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

inline double as_setting(std::int64_t count) { return static_cast<double>(count); }

// The lr a from-scratch schedule computed for `epoch`, refused unless finite
// and >= 0 (a callable or a growing factor can make it anything).
inline double require_computed_lr(const char* schedule, std::int64_t epoch, double lr) {
  if (!(std::isfinite(lr) && lr >= 0.0))
    throw std::invalid_argument(std::string("adamx::") + schedule + ": the lr at epoch " + std::to_string(epoch) +
                                " would be " + format_value(lr) + " (must be finite and >= 0)");
  return lr;
}

// A factor in [0, 1], or in (0, 1] where PyTorch would later divide by it.
inline void require_factor(const char* schedule, const char* field, double value, bool zero_allowed) {
  if (!(value <= 1.0 && (zero_allowed ? value >= 0.0 : value > 0.0)))
    throw_invalid_schedule(schedule, field, format_value(value),
                           zero_allowed ? "must be in [0, 1]" : "must be in (0, 1]");
}

}  // namespace detail

/// torch.optim.lr_scheduler.MultiStepLR: lr × gamma^k at every epoch listed
/// k times among the milestones (in any order; 0 applies at construction).
class MultiStepLR : public detail::StatefulEpochSchedule<MultiStepLR> {
 public:
  static constexpr const char* kKind = "MultiStepLR";
  MultiStepLR(double initial_lr, std::vector<std::int64_t> milestones, double gamma = 0.1)
      : StatefulEpochSchedule(kKind, "initial_lr", initial_lr), milestones_(std::move(milestones)), gamma_(gamma) {
    detail::require_gamma(kKind, gamma);
    for (std::size_t i = 0; i < milestones_.size(); ++i)
      if (milestones_[i] < 0)
        detail::throw_invalid_schedule(kKind, "milestones", std::to_string(milestones_[i]),
                                       "every milestone must be >= 0");
    std::sort(milestones_.begin(), milestones_.end());
    lr_ = start_on(initial_lr_);
  }
  double start_on(double shared_lr) { return start_at(scaled_at_milestone(shared_lr, 0)); }
  double step() {
    ++epoch_;
    lr_ = scaled_at_milestone(lr_, epoch_);
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), epoch) - milestones_.begin();
    return initial_lr_ * std::pow(gamma_, static_cast<double>(passed));
  }
  /// The milestones, sorted.
  const std::vector<std::int64_t>& milestones() const { return milestones_; }

 private:
  friend class detail::StatefulEpochSchedule<MultiStepLR>;
  double scaled_at_milestone(double lr, std::int64_t epoch) const {
    const auto count = std::count(milestones_.begin(), milestones_.end(), epoch);
    return count == 0 ? lr : lr * std::pow(gamma_, static_cast<double>(count));
  }
  std::vector<std::pair<std::string, double>> settings() const {
    std::vector<std::pair<std::string, double>> s{{"initial_lr", initial_lr_}, {"gamma", gamma_}};
    for (std::size_t i = 0; i < milestones_.size(); ++i)
      s.emplace_back("milestones[" + std::to_string(i) + "]", detail::as_setting(milestones_[i]));
    return s;
  }
  std::vector<std::int64_t> milestones_;  // sorted, repeats kept
  double gamma_;
};

/// torch.optim.lr_scheduler.ConstantLR: lr × factor for epochs
/// 0 … total_iters − 1, then back to lr (by multiplying with 1 / factor, as
/// PyTorch does). factor must be > 0 (PyTorch accepts 0, then divides by it).
class ConstantLR : public detail::StatefulEpochSchedule<ConstantLR> {
 public:
  static constexpr const char* kKind = "ConstantLR";
  ConstantLR(double initial_lr, double factor = 1.0 / 3.0, std::int64_t total_iters = 5)
      : StatefulEpochSchedule(kKind, "initial_lr", initial_lr), factor_(factor), total_iters_(total_iters) {
    detail::require_factor(kKind, "factor", factor, false);
    detail::require_positive_count(kKind, "total_iters", total_iters);
    lr_ = start_on(initial_lr_);
  }
  double start_on(double shared_lr) { return start_at(shared_lr * factor_); }
  double step() {
    ++epoch_;
    if (epoch_ == total_iters_) lr_ = lr_ * (1.0 / factor_);
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    return initial_lr_ * (factor_ + (epoch >= total_iters_ ? 1.0 : 0.0) * (1.0 - factor_));
  }

 private:
  friend class detail::StatefulEpochSchedule<ConstantLR>;
  std::vector<std::pair<std::string, double>> settings() const {
    return {{"initial_lr", initial_lr_}, {"factor", factor_}, {"total_iters", detail::as_setting(total_iters_)}};
  }
  double factor_;
  std::int64_t total_iters_;
};

/// torch.optim.lr_scheduler.LinearLR: lr × a factor rising (or falling)
/// linearly from start_factor at epoch 0 to end_factor at total_iters, then
/// constant. start_factor must be > 0 (PyTorch accepts 0, then divides by it).
class LinearLR : public detail::StatefulEpochSchedule<LinearLR> {
 public:
  static constexpr const char* kKind = "LinearLR";
  LinearLR(double initial_lr, double start_factor = 1.0 / 3.0, double end_factor = 1.0,
           std::int64_t total_iters = 5)
      : StatefulEpochSchedule(kKind, "initial_lr", initial_lr),
        start_factor_(start_factor),
        end_factor_(end_factor),
        total_iters_(total_iters) {
    detail::require_factor(kKind, "start_factor", start_factor, false);
    detail::require_factor(kKind, "end_factor", end_factor, true);
    detail::require_positive_count(kKind, "total_iters", total_iters);
    lr_ = start_on(initial_lr_);
  }
  double start_on(double shared_lr) { return start_at(shared_lr * start_factor_); }
  double step() {
    ++epoch_;
    if (epoch_ > total_iters_) return lr_;
    const double change = end_factor_ - start_factor_;
    lr_ = lr_ * (1.0 + change / (static_cast<double>(total_iters_) * start_factor_ +
                                 static_cast<double>(epoch_ - 1) * change));
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    return initial_lr_ * (start_factor_ + (end_factor_ - start_factor_) *
                                              static_cast<double>(std::min(total_iters_, epoch)) /
                                              static_cast<double>(total_iters_));
  }

 private:
  friend class detail::StatefulEpochSchedule<LinearLR>;
  std::vector<std::pair<std::string, double>> settings() const {
    return {{"initial_lr", initial_lr_},
            {"start_factor", start_factor_},
            {"end_factor", end_factor_},
            {"total_iters", detail::as_setting(total_iters_)}};
  }
  double start_factor_;
  double end_factor_;
  std::int64_t total_iters_;
};

/// torch.optim.lr_scheduler.PolynomialLR: lr × (1 − e / total_iters)^power,
/// reached by PyTorch's recursive ratio; 0 from epoch total_iters on.
class PolynomialLR : public detail::StatefulEpochSchedule<PolynomialLR> {
 public:
  static constexpr const char* kKind = "PolynomialLR";
  PolynomialLR(double initial_lr, std::int64_t total_iters = 5, double power = 1.0)
      : StatefulEpochSchedule(kKind, "initial_lr", initial_lr), total_iters_(total_iters), power_(power) {
    detail::require_positive_count(kKind, "total_iters", total_iters);
    if (!(std::isfinite(power) && power >= 0.0))
      detail::throw_invalid_schedule(kKind, "power", detail::format_value(power), "must be finite and >= 0");
  }
  double step() {
    ++epoch_;
    if (epoch_ > total_iters_) return lr_;
    const double t = static_cast<double>(total_iters_);
    const double decay = std::pow((1.0 - static_cast<double>(epoch_) / t) /
                                      (1.0 - static_cast<double>(epoch_ - 1) / t),
                                  power_);
    lr_ = lr_ * decay;
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    return initial_lr_ * std::pow(1.0 - static_cast<double>(std::min(total_iters_, epoch)) /
                                            static_cast<double>(total_iters_),
                                  power_);
  }

 private:
  friend class detail::StatefulEpochSchedule<PolynomialLR>;
  std::vector<std::pair<std::string, double>> settings() const {
    return {{"initial_lr", initial_lr_}, {"total_iters", detail::as_setting(total_iters_)}, {"power", power_}};
  }
  std::int64_t total_iters_;
  double power_;
};

/// torch.optim.lr_scheduler.LambdaLR: lr(e) = initial_lr × lambda(e), for
/// any callable from the epoch to a factor. A lambda whose product is not a
/// finite lr >= 0 throws std::invalid_argument (naming the epoch) and the
/// schedule stays where it was. state() cannot hold the callable: restore
/// into a LambdaLR constructed with the same one.
class LambdaLR : public detail::FromScratchSchedule<LambdaLR> {
 public:
  static constexpr const char* kKind = "LambdaLR";
  using Lambda = std::function<double(std::int64_t)>;
  LambdaLR(double initial_lr, Lambda lambda)
      : FromScratchSchedule(kKind, "initial_lr", initial_lr), lambda_(std::move(lambda)) {
    if (!lambda_) detail::throw_invalid_schedule(kKind, "lambda", "an empty std::function", "must be callable");
    lr_ = closed_form(0);
  }
  /// initial_lr × lambda(epoch): what step() computes (PyTorch has no separate closed form).
  double closed_form(std::int64_t epoch) const {
    return detail::require_computed_lr(kKind, epoch, initial_lr_ * lambda_(epoch));
  }

 private:
  friend class detail::FromScratchSchedule<LambdaLR>;
  std::vector<std::pair<std::string, double>> settings() const { return {{"initial_lr", initial_lr_}}; }
  Lambda lambda_;
};

ADAMX_NAMESPACE_END  // namespace adamx
