// Reduce the learning rate when a metric stops improving, with the semantics
// of PyTorch 1.13's torch.optim.lr_scheduler.ReduceLROnPlateau. Unlike the
// epoch schedules (schedule.hpp) it is driven by a measured value, usually a
// validation loss, once per epoch.
//
// step(metric), exactly as PyTorch orders it:
//   1. metric better than best (see PlateauOptions::threshold)? best = metric,
//      bad epochs = 0; otherwise bad epochs + 1. A NaN metric is never better.
//   2. in cooldown? cooldown counter − 1, bad epochs = 0.
//   3. bad epochs > patience? new = max(lr × factor, min_lr), taken only if
//      lr − new > eps; then the cooldown starts and bad epochs = 0.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "adamx/abi.hpp"
#include "adamx/options.hpp"
#include "adamx/schedule.hpp"
#include "adamx/schedule_state.hpp"

ADAMX_NAMESPACE_BEGIN

/// Whether a smaller ("min": a loss) or a larger ("max": an accuracy) metric is better.
enum class PlateauMode { min, max };
/// How far past the best a metric must go to count as better.
enum class ThresholdMode {
  rel,  ///< min: metric < best·(1 − threshold); max: metric > best·(1 + threshold)
  abs,  ///< min: metric < best − threshold;     max: metric > best + threshold
};

/// Options of ReduceLROnPlateau; names and defaults are PyTorch's.
struct PlateauOptions {
  PlateauMode mode = PlateauMode::min;
  double factor = 0.1;            ///< lr ← lr·factor on a plateau; [0, 1)
  std::int64_t patience = 10;     ///< bad epochs tolerated before reducing; >= 0
  double threshold = 1e-4;        ///< see ThresholdMode; finite, >= 0
  ThresholdMode threshold_mode = ThresholdMode::rel;
  std::int64_t cooldown = 0;      ///< epochs after a reduction during which bad epochs are not counted
  double min_lr = 0.0;            ///< the lr never goes below this
  double eps = 1e-8;              ///< a reduction smaller than this is not made
};

/// Reduces the lr by `factor` when the metric has not improved for more than
/// `patience` epochs. Drives an optimizer like the schedules: apply(opt) or
/// apply(opt, group) after step(metric).
class ReduceLROnPlateau : public detail::ScheduleBase<ReduceLROnPlateau> {
 public:
  explicit ReduceLROnPlateau(double initial_lr, const PlateauOptions& options = PlateauOptions{})
      : options_(options), initial_lr_(initial_lr), lr_(initial_lr) {
    const char* name = "ReduceLROnPlateau";
    detail::require_lr(name, "initial_lr", initial_lr);
    if (options.mode != PlateauMode::min && options.mode != PlateauMode::max)
      detail::throw_invalid_schedule(name, "mode", std::to_string(static_cast<int>(options.mode)),
                                     "must be PlateauMode::min or ::max");
    if (!(std::isfinite(options.factor) && options.factor >= 0.0 && options.factor < 1.0))
      detail::throw_invalid_schedule(name, "factor", detail::format_value(options.factor),
                                     "must be in [0, 1)");
    if (options.patience < 0)
      detail::throw_invalid_schedule(name, "patience", std::to_string(options.patience),
                                     "must be >= 0");
    if (!(std::isfinite(options.threshold) && options.threshold >= 0.0))
      detail::throw_invalid_schedule(name, "threshold", detail::format_value(options.threshold),
                                     "must be finite and >= 0");
    if (options.threshold_mode != ThresholdMode::rel && options.threshold_mode != ThresholdMode::abs)
      detail::throw_invalid_schedule(name, "threshold_mode",
                                     std::to_string(static_cast<int>(options.threshold_mode)),
                                     "must be ThresholdMode::rel or ::abs");
    if (options.cooldown < 0)
      detail::throw_invalid_schedule(name, "cooldown", std::to_string(options.cooldown),
                                     "must be >= 0");
    detail::require_lr(name, "min_lr", options.min_lr);
    if (!(std::isfinite(options.eps) && options.eps >= 0.0))
      detail::throw_invalid_schedule(name, "eps", detail::format_value(options.eps),
                                     "must be finite and >= 0");
    best_ = worst();
  }

  double lr() const { return lr_; }
  double initial_lr() const { return initial_lr_; }
  std::int64_t epoch() const { return epoch_; }
  /// The best metric so far (+inf for min, −inf for max before the first step).
  double best() const { return best_; }
  std::int64_t num_bad_epochs() const { return num_bad_epochs_; }
  std::int64_t cooldown_counter() const { return cooldown_counter_; }
  const PlateauOptions& options() const { return options_; }

  /// Records one epoch's metric; returns true when it reduced the lr.
  bool step(double metric) {
    ++epoch_;
    if (is_better(metric)) {
      best_ = metric;
      num_bad_epochs_ = 0;
    } else {
      ++num_bad_epochs_;
    }
    if (cooldown_counter_ > 0) {
      --cooldown_counter_;
      num_bad_epochs_ = 0;
    }
    if (num_bad_epochs_ <= options_.patience) return false;
    cooldown_counter_ = options_.cooldown;
    num_bad_epochs_ = 0;
    const double reduced = std::fmax(lr_ * options_.factor, options_.min_lr);
    if (!(lr_ - reduced > options_.eps)) return false;
    lr_ = reduced;
    return true;
  }

  /// The resumable state: settings {initial_lr and every option, the modes
  /// as 0 = min/rel, 1 = max/abs}, values {lr, best}, counters {epoch,
  /// num_bad_epochs, cooldown_counter}.
  ScheduleState state() const {
    ScheduleState s;
    s.kind = "ReduceLROnPlateau";
    s.settings = {{"initial_lr", initial_lr_},
                  {"mode", options_.mode == PlateauMode::min ? 0.0 : 1.0},
                  {"factor", options_.factor},
                  {"patience", static_cast<double>(options_.patience)},
                  {"threshold", options_.threshold},
                  {"threshold_mode", options_.threshold_mode == ThresholdMode::rel ? 0.0 : 1.0},
                  {"cooldown", static_cast<double>(options_.cooldown)},
                  {"min_lr", options_.min_lr},
                  {"eps", options_.eps}};
    s.values = {{"lr", lr_}, {"best", best_}};
    s.counters = {{"epoch", epoch_},
                  {"num_bad_epochs", num_bad_epochs_},
                  {"cooldown_counter", cooldown_counter_}};
    return s;
  }
  /// Takes `s` (from a ReduceLROnPlateau constructed with the same initial
  /// lr and options); all-or-nothing, std::invalid_argument naming any
  /// difference or any value stepping cannot produce: lr not finite or < 0,
  /// best NaN, a negative counter, num_bad_epochs > patience or
  /// cooldown_counter > cooldown (step() resets both before that).
  void restore(const ScheduleState& s) {
    detail::require_schedule_state(s, state());
    const double lr = s.values[0].second;
    const double best = s.values[1].second;
    const std::int64_t epoch = s.counters[0].second;
    const std::int64_t bad = s.counters[1].second;
    const std::int64_t cooldown = s.counters[2].second;
    detail::require_state_lr(s, "lr", lr);
    if (std::isnan(best))
      throw std::invalid_argument("adamx::ReduceLROnPlateau::restore: invalid best = nan");
    detail::require_state_count(s, "epoch", epoch);
    detail::require_state_count(s, "num_bad_epochs", bad);
    detail::require_state_count(s, "cooldown_counter", cooldown);
    if (bad > options_.patience)
      throw std::invalid_argument("adamx::ReduceLROnPlateau::restore: invalid num_bad_epochs = " +
                                  std::to_string(bad) + " (at most patience = " +
                                  std::to_string(options_.patience) + ")");
    if (cooldown > options_.cooldown)
      throw std::invalid_argument("adamx::ReduceLROnPlateau::restore: invalid cooldown_counter = " +
                                  std::to_string(cooldown) + " (at most cooldown = " +
                                  std::to_string(options_.cooldown) + ")");
    lr_ = lr;
    best_ = best;
    epoch_ = epoch;
    num_bad_epochs_ = bad;
    cooldown_counter_ = cooldown;
  }

 private:
  double worst() const {
    const double inf = std::numeric_limits<double>::infinity();
    return options_.mode == PlateauMode::min ? inf : -inf;
  }

  bool is_better(double metric) const {
    const double t = options_.threshold;
    if (options_.mode == PlateauMode::min)
      return options_.threshold_mode == ThresholdMode::rel ? metric < best_ * (1.0 - t)
                                                           : metric < best_ - t;
    return options_.threshold_mode == ThresholdMode::rel ? metric > best_ * (t + 1.0)
                                                         : metric > best_ + t;
  }

  PlateauOptions options_;
  double initial_lr_;
  double lr_;
  double best_;
  std::int64_t epoch_ = 0;
  std::int64_t num_bad_epochs_ = 0;
  std::int64_t cooldown_counter_ = 0;
};

ADAMX_NAMESPACE_END  // namespace adamx
