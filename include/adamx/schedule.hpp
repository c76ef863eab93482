// Learning-rate schedules that advance once per epoch (or per step: an
// "epoch" is whatever unit the training loop calls step() on), with the
// semantics of PyTorch 1.13's torch.optim.lr_scheduler:
//
//   FixedLR             a constant lr (PyTorch: no scheduler)
//   StepLR              lr × gamma every step_size epochs
//   ExponentialLR       lr × gamma every epoch
//   CosineAnnealingLR   half a cosine from the initial lr down to eta_min in
//                       T_max epochs, then back up (it keeps oscillating)
//   LinearWarmup<S>     lr rising linearly to S's initial lr over `epochs`
//                       epochs, then S (PyTorch: SequentialLR of LinearLR and S)
//
// Each computes its lr the way PyTorch's scheduler.step() does, by updating
// the previous lr ("recursive" form) in the same order of double operations,
// so the sequence is PyTorch's to the bit (tests/test_schedule.cpp compares
// it with sequences recorded from PyTorch). closed_form(epoch) gives PyTorch's
// closed form (used by scheduler.step(epoch)), which differs by rounding.
//
// A schedule only computes numbers; it drives an optimizer through its typed
// setters: `schedule.apply(opt)` sets every group's lr, `apply(opt, group)`
// one group's. Give each group with its own initial lr its own schedule
// (PyTorch's one scheduler per optimizer keeps one such sequence per group).
// Schedules are small values: copy one to checkpoint it. state() and
// restore() give and take its resumable state as plain data (a ScheduleState,
// schedule_state.hpp), which adamx::save_run stores with the rest of a run.
//
// ReduceLROnPlateau, which reacts to a metric instead of counting epochs,
// lives in reduce_on_plateau.hpp; more of PyTorch's schedulers in
// schedule_factor.hpp, schedule_cycle.hpp and schedule_compose.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/options.hpp"
#include "adamx/schedule_state.hpp"

ADAMX_NAMESPACE_BEGIN
namespace detail {

// The double nearest π, as Python's math.pi.
constexpr double kPi = 3.141592653589793;

[[noreturn]] inline void throw_invalid_schedule(const char* schedule, const char* field,
                                                const std::string& value, const char* rule) {
  throw std::invalid_argument(std::string("adamx::") + schedule + ": invalid " + field + " = " +
                              value + " (" + rule + ")");
}

inline void require_lr(const char* schedule, const char* field, double value) {
  if (!(std::isfinite(value) && value >= 0.0))
    throw_invalid_schedule(schedule, field, format_value(value), "must be finite and >= 0");
}

inline void require_positive_count(const char* schedule, const char* field, std::int64_t value) {
  if (value < 1) throw_invalid_schedule(schedule, field, std::to_string(value), "must be >= 1");
}

// What every schedule offers on top of lr(): driving an optimizer.
template <class Derived>
class ScheduleBase {
 public:
  /// Sets the lr of every group of `optimizer` to lr().
  template <class Optimizer>
  void apply(Optimizer& optimizer) const {
    optimizer.set_lr(self().lr());
  }
  /// Sets the lr of group `group` of `optimizer` to lr().
  template <class Optimizer>
  void apply(Optimizer& optimizer, std::size_t group) const {
    optimizer.set_lr(group, self().lr());
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

inline void require_gamma(const char* schedule, double gamma) {
  if (!(std::isfinite(gamma) && gamma >= 0.0))
    throw_invalid_schedule(schedule, "gamma", format_value(gamma), "must be finite and >= 0");
}

// The state every epoch schedule keeps (its initial lr, current lr and epoch)
// and what it offers besides step() and closed_form(epoch), which each
// schedule defines.
template <class Derived>
class EpochSchedule : public ScheduleBase<Derived> {
 public:
  /// The lr of the current epoch.
  double lr() const { return lr_; }
  double initial_lr() const { return initial_lr_; }
  /// Epochs stepped since construction (PyTorch's last_epoch).
  std::int64_t epoch() const { return epoch_; }
  /// Back to epoch 0 at the closed-form lr: what PyTorch's SequentialLR does
  /// (scheduler.step(0)) when it hands over to this schedule.
  void restart() {
    epoch_ = 0;
    lr_ = static_cast<const Derived&>(*this).closed_form(0);
  }
  /// For ChainedScheduler (schedule_compose.hpp), where every schedule
  /// updates one shared lr as PyTorch's chained schedulers update the
  /// optimizer's: back to epoch 0 with the lr this schedule's construction
  /// makes of `shared_lr` (these schedules leave it as it is), and one step()
  /// applied to `shared_lr` instead of this schedule's own lr.
  double start_on(double shared_lr) {
    epoch_ = 0;
    lr_ = shared_lr;
    return lr_;
  }
  double step_on(double shared_lr) {
    lr_ = shared_lr;
    return static_cast<Derived&>(*this).step();
  }

 protected:
  EpochSchedule(const char* schedule, const char* field, double initial_lr)
      : initial_lr_(initial_lr), lr_(initial_lr) {
    require_lr(schedule, field, initial_lr);
  }
  // The state of every epoch schedule: its kind and settings (the initial lr
  // first, under the constructor's name for it), lr and epoch.
  ScheduleState epoch_state(const char* kind, const char* initial_lr_name,
                            std::vector<std::pair<std::string, double>> more_settings) const {
    ScheduleState s;
    s.kind = kind;
    s.settings.emplace_back(initial_lr_name, initial_lr_);
    for (auto& setting : more_settings) s.settings.push_back(std::move(setting));
    s.values.emplace_back("lr", lr_);
    s.counters.emplace_back("epoch", epoch_);
    return s;
  }
  // Takes lr and epoch from `s` once its layout and settings are this
  // schedule's and its values could have come from stepping.
  void restore_epoch_state(const ScheduleState& s) {
    const ScheduleState own = static_cast<const Derived&>(*this).state();
    require_schedule_state(s, own);
    require_state_lr(s, "lr", s.values[0].second);
    require_state_count(s, "epoch", s.counters[0].second);
    lr_ = s.values[0].second;
    epoch_ = s.counters[0].second;
  }
  double initial_lr_;
  double lr_;
  std::int64_t epoch_ = 0;
};

}  // namespace detail

/// A constant learning rate.
class FixedLR : public detail::EpochSchedule<FixedLR> {
 public:
  explicit FixedLR(double lr) : EpochSchedule("FixedLR", "lr", lr) {}
  /// Advances one epoch and returns the new lr.
  double step() {
    ++epoch_;
    return lr_;
  }
  double closed_form(std::int64_t) const { return initial_lr_; }
  /// The resumable state: settings {lr}, values {lr}, counters {epoch}.
  ScheduleState state() const { return epoch_state("FixedLR", "lr", {}); }
  /// Takes `s` (from a FixedLR constructed with the same lr); all-or-nothing,
  /// std::invalid_argument naming any difference or invalid value.
  void restore(const ScheduleState& s) { restore_epoch_state(s); }
};

/// torch.optim.lr_scheduler.StepLR: lr × gamma at every epoch that is a
/// multiple of step_size.
class StepLR : public detail::EpochSchedule<StepLR> {
 public:
  StepLR(double initial_lr, std::int64_t step_size, double gamma = 0.1)
      : EpochSchedule("StepLR", "initial_lr", initial_lr), step_size_(step_size), gamma_(gamma) {
    detail::require_positive_count("StepLR", "step_size", step_size);
    detail::require_gamma("StepLR", gamma);
  }
  double step() {
    ++epoch_;
    if (epoch_ % step_size_ == 0) lr_ = lr_ * gamma_;
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    return initial_lr_ * std::pow(gamma_, static_cast<double>(epoch / step_size_));
  }
  /// Settings {initial_lr, step_size, gamma}, values {lr}, counters {epoch}.
  ScheduleState state() const {
    return epoch_state("StepLR", "initial_lr",
                       {{"step_size", static_cast<double>(step_size_)}, {"gamma", gamma_}});
  }
  /// Takes `s` (from a StepLR constructed with the same arguments); all-or-nothing.
  void restore(const ScheduleState& s) { restore_epoch_state(s); }

 private:
  std::int64_t step_size_;
  double gamma_;
};

/// torch.optim.lr_scheduler.ExponentialLR: lr × gamma every epoch.
class ExponentialLR : public detail::EpochSchedule<ExponentialLR> {
 public:
  ExponentialLR(double initial_lr, double gamma)
      : EpochSchedule("ExponentialLR", "initial_lr", initial_lr), gamma_(gamma) {
    detail::require_gamma("ExponentialLR", gamma);
  }
  double step() {
    ++epoch_;
    lr_ = lr_ * gamma_;
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    return initial_lr_ * std::pow(gamma_, static_cast<double>(epoch));
  }
  /// Settings {initial_lr, gamma}, values {lr}, counters {epoch}.
  ScheduleState state() const { return epoch_state("ExponentialLR", "initial_lr", {{"gamma", gamma_}}); }
  /// Takes `s` (from an ExponentialLR constructed with the same arguments); all-or-nothing.
  void restore(const ScheduleState& s) { restore_epoch_state(s); }

 private:
  double gamma_;
};

/// torch.optim.lr_scheduler.CosineAnnealingLR (SGDR without restarts,
/// Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
/// Restarts", ICLR 2017): lr(e) = eta_min + (lr₀ − eta_min)(1 + cos(π e / T_max))/2,
/// reached through PyTorch's recursive update. Past T_max the cosine goes on,
/// back up to lr₀ at 2·T_max, as PyTorch's does.
class CosineAnnealingLR : public detail::EpochSchedule<CosineAnnealingLR> {
 public:
  CosineAnnealingLR(double initial_lr, std::int64_t t_max, double eta_min = 0.0)
      : EpochSchedule("CosineAnnealingLR", "initial_lr", initial_lr), t_max_(t_max), eta_min_(eta_min) {
    detail::require_positive_count("CosineAnnealingLR", "T_max", t_max);
    detail::require_lr("CosineAnnealingLR", "eta_min", eta_min);
  }
  double step() {
    ++epoch_;
    const double e = static_cast<double>(epoch_);
    const double t = static_cast<double>(t_max_);
    if ((epoch_ - 1 - t_max_) % (2 * t_max_) == 0) {
      // The trough, where the ratio below would divide by 1 + cos(π) = 0.
      lr_ = lr_ + (initial_lr_ - eta_min_) * (1.0 - std::cos(detail::kPi / t)) / 2.0;
    } else {
      lr_ = (1.0 + std::cos(detail::kPi * e / t)) / (1.0 + std::cos(detail::kPi * (e - 1.0) / t)) *
                (lr_ - eta_min_) +
            eta_min_;
    }
    return lr_;
  }
  double closed_form(std::int64_t epoch) const {
    return eta_min_ + (initial_lr_ - eta_min_) *
                          (1.0 + std::cos(detail::kPi * static_cast<double>(epoch) /
                                          static_cast<double>(t_max_))) /
                          2.0;
  }
  /// Settings {initial_lr, T_max, eta_min}, values {lr}, counters {epoch}.
  ScheduleState state() const {
    return epoch_state("CosineAnnealingLR", "initial_lr",
                       {{"T_max", static_cast<double>(t_max_)}, {"eta_min", eta_min_}});
  }
  /// Takes `s` (from a CosineAnnealingLR constructed with the same arguments); all-or-nothing.
  void restore(const ScheduleState& s) { restore_epoch_state(s); }

 private:
  std::int64_t t_max_;
  double eta_min_;
};

/// A linear warm-up in front of any schedule above: for `epochs` epochs the
/// lr rises from start_factor × S's initial lr towards it, then S runs from
/// its own epoch 0. The same numbers as PyTorch's
/// `SequentialLR(opt, [LinearLR(opt, start_factor, 1.0, epochs), S], milestones=[epochs])`.
/// (LinearLR alone, i.e. warm-up then constant, is LinearWarmup<FixedLR>.)
template <class Schedule>
class LinearWarmup : public detail::ScheduleBase<LinearWarmup<Schedule>> {
 public:
  LinearWarmup(Schedule after, std::int64_t epochs, double start_factor = 1.0 / 3.0)
      : after_(std::move(after)), epochs_(epochs), start_factor_(start_factor) {
    detail::require_positive_count("LinearWarmup", "epochs", epochs);
    if (!(start_factor > 0.0 && start_factor <= 1.0))
      detail::throw_invalid_schedule("LinearWarmup", "start_factor",
                                     detail::format_value(start_factor), "must be in (0, 1]");
    after_.restart();
    lr_ = after_.initial_lr() * start_factor_;
  }
  double lr() const { return epoch_ < epochs_ ? lr_ : after_.lr(); }
  double initial_lr() const { return after_.initial_lr(); }
  std::int64_t epoch() const { return epoch_; }
  /// The schedule that follows the warm-up (its epoch counts from the end of the warm-up).
  const Schedule& after() const { return after_; }
  double step() {
    ++epoch_;
    if (epoch_ < epochs_) {
      // LinearLR's recursive factor, with end_factor 1.
      const double rise = 1.0 - start_factor_;
      lr_ = lr_ * (1.0 + rise / (static_cast<double>(epochs_) * start_factor_ +
                                 static_cast<double>(epoch_ - 1) * rise));
    } else if (epoch_ == epochs_) {
      after_.restart();
    } else {
      after_.step();
    }
    return lr();
  }
  /// Settings {epochs, start_factor}, values {lr} (the warm-up's own),
  /// counters {epoch}, and the following schedule's state as the one child.
  ScheduleState state() const {
    ScheduleState s;
    s.kind = "LinearWarmup";
    s.settings = {{"epochs", static_cast<double>(epochs_)}, {"start_factor", start_factor_}};
    s.values = {{"lr", lr_}};
    s.counters = {{"epoch", epoch_}};
    s.children.push_back(after_.state());
    return s;
  }
  /// Takes `s` (from a LinearWarmup constructed with the same arguments, the
  /// following schedule's included); all-or-nothing: the following schedule
  /// is restored (itself all-or-nothing) only after this one's values passed.
  void restore(const ScheduleState& s) {
    detail::require_schedule_state(s, state());
    detail::require_state_lr(s, "lr", s.values[0].second);
    detail::require_state_count(s, "epoch", s.counters[0].second);
    after_.restore(s.children[0]);
    lr_ = s.values[0].second;
    epoch_ = s.counters[0].second;
  }

 private:
  Schedule after_;
  std::int64_t epochs_;
  double start_factor_;
  double lr_;
  std::int64_t epoch_ = 0;
};

ADAMX_NAMESPACE_END  // namespace adamx
