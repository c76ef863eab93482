// Cyclical learning-rate schedules, usually stepped once per batch, with the
// semantics of PyTorch 1.13's schedulers of the same names:
//
//   OneCycleLR   up from max_lr / div_factor to max_lr, then down to
//                max_lr / div_factor / final_div_factor, over total_steps
//                steps (Smith & Topin, "Super-Convergence", 2017); cosine or
//                linear annealing, two or three phases
//   CyclicLR     between base_lr and max_lr in triangles (Smith, "Cyclical
//                Learning Rates for Training Neural Networks", 2017):
//                triangular, triangular2 (halving every cycle), exp_range
//                (scaled by gamma^step) or a scale function of your own
//
// Both compute each step's lr from scratch, as PyTorch does, with the same
// double operations in the same order: the sequences are PyTorch's to the
// bit. They drive the lr only: PyTorch's cycle_momentum (which also cycles
// SGD's momentum or Adam's beta1) has no counterpart here; set the
// optimizer's betas yourself if you want them cycled.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "adamx/abi.hpp"
#include "adamx/options.hpp"
#include "adamx/schedule.hpp"
#include "adamx/schedule_factor.hpp"
#include "adamx/schedule_state.hpp"

ADAMX_NAMESPACE_BEGIN

/// How OneCycleLR moves between the ends of a phase.
enum class OneCycleAnneal { cos, linear };

/// OneCycleLR's settings other than max_lr and total_steps (PyTorch's defaults).
struct OneCycleOptions {
  double pct_start = 0.3;  ///< fraction of the steps spent rising to max_lr
  OneCycleAnneal anneal_strategy = OneCycleAnneal::cos;
  double div_factor = 25.0;        ///< initial lr = max_lr / div_factor
  double final_div_factor = 1e4;   ///< final lr = initial lr / final_div_factor
  bool three_phase = false;        ///< back down to the initial lr before the final descent
};

/// torch.optim.lr_scheduler.OneCycleLR for one parameter group. PyTorch's
/// `epochs, steps_per_epoch` is total_steps = epochs × steps_per_epoch.
/// step() may be called total_steps times; one more throws
/// std::out_of_range and changes nothing (PyTorch raises ValueError). The
/// lr after the last step lies past the final phase's end, as in PyTorch:
/// with linear annealing below min_lr, even below 0 (apply() then throws).
/// No update uses it when total_steps counts the optimizer steps and the
/// loop applies the lr before each.
class OneCycleLR : public detail::FromScratchSchedule<OneCycleLR> {
 public:
  static constexpr const char* kKind = "OneCycleLR";
  OneCycleLR(double max_lr, std::int64_t total_steps, OneCycleOptions options = {})
      : FromScratchSchedule(kKind, "max_lr", initial_lr_of(max_lr, options)),
        max_lr_(max_lr),
        total_steps_(total_steps),
        options_(options) {
    detail::require_positive_count(kKind, "total_steps", total_steps);
    if (!(options.pct_start >= 0.0 && options.pct_start <= 1.0))
      detail::throw_invalid_schedule(kKind, "pct_start", detail::format_value(options.pct_start),
                                     "must be in [0, 1]");
    if (options.anneal_strategy != OneCycleAnneal::cos && options.anneal_strategy != OneCycleAnneal::linear)
      detail::throw_invalid_schedule(kKind, "anneal_strategy",
                                     std::to_string(static_cast<int>(options.anneal_strategy)),
                                     "must be OneCycleAnneal::cos or ::linear");
    min_lr_ = initial_lr_ / options.final_div_factor;
    const double steps = static_cast<double>(total_steps);
    const double last = static_cast<double>(total_steps - 1);
    if (options.three_phase) {
      phases_ = {{options.pct_start * steps - 1.0, initial_lr_, max_lr_},
                 {2.0 * options.pct_start * steps - 2.0, max_lr_, initial_lr_},
                 {last, initial_lr_, min_lr_}};
    } else {
      phases_ = {{options.pct_start * steps - 1.0, initial_lr_, max_lr_}, {last, max_lr_, min_lr_}};
    }
    // A phase that some step reaches but that has no length would divide by
    // zero (PyTorch raises ZeroDivisionError there): the first one when
    // pct_start × total_steps = 1, the last one when it ends where the one
    // before it does.
    if (phases_.front().end_step == 0.0 || phases_.back().end_step == phases_[phases_.size() - 2].end_step)
      detail::throw_invalid_schedule(kKind, "pct_start", detail::format_value(options.pct_start),
                                     ("with total_steps = " + std::to_string(total_steps) +
                                      " a phase would have no length")
                                         .c_str());
    lr_ = closed_form(0);
  }
  /// The lr at `step` in 0 … total_steps, computed as step() does (PyTorch
  /// computes every step from scratch); std::out_of_range outside, so that
  /// a step() past total_steps throws it.
  double closed_form(std::int64_t step) const {
    if (step < 0 || step > total_steps_)
      throw std::out_of_range("adamx::OneCycleLR: step " + std::to_string(step) + " is outside 0 … total_steps = " +
                              std::to_string(total_steps_) +
                              ": the cycle is over (restart() or a new schedule starts another)");
    const double s = static_cast<double>(step);
    double start_step = 0.0;
    for (std::size_t i = 0; i < phases_.size(); ++i) {
      const Phase& phase = phases_[i];
      if (s <= phase.end_step || i + 1 == phases_.size()) {
        const double pct = (s - start_step) / (phase.end_step - start_step);
        return anneal(phase.start_lr, phase.end_lr, pct);
      }
      start_step = phase.end_step;
    }
    return lr_;  // not reached: the last phase always answers
  }
  double max_lr() const { return max_lr_; }
  double min_lr() const { return min_lr_; }
  std::int64_t total_steps() const { return total_steps_; }

 private:
  friend class detail::FromScratchSchedule<OneCycleLR>;
  struct Phase {
    double end_step;  // PyTorch's: a double, which may be fractional
    double start_lr;
    double end_lr;
  };
  static double initial_lr_of(double max_lr, const OneCycleOptions& o) {
    detail::require_lr(kKind, "max_lr", max_lr);
    if (!(std::isfinite(o.div_factor) && o.div_factor > 0.0))
      detail::throw_invalid_schedule(kKind, "div_factor", detail::format_value(o.div_factor), "must be finite and > 0");
    if (!(std::isfinite(o.final_div_factor) && o.final_div_factor > 0.0))
      detail::throw_invalid_schedule(kKind, "final_div_factor", detail::format_value(o.final_div_factor),
                                     "must be finite and > 0");
    const double initial = max_lr / o.div_factor;
    if (!std::isfinite(initial) || !std::isfinite(initial / o.final_div_factor))
      detail::throw_invalid_schedule(kKind, "div_factor", detail::format_value(o.div_factor),
                                     "too small: the initial or final lr overflows");
    return initial;
  }
  double anneal(double start, double end, double pct) const {
    if (options_.anneal_strategy == OneCycleAnneal::cos) {
      const double cos_out = std::cos(detail::kPi * pct) + 1.0;
      return end + (start - end) / 2.0 * cos_out;
    }
    return (end - start) * pct + start;
  }
  void check_restored_epoch(const ScheduleState& s, std::int64_t epoch) const {
    if (epoch > total_steps_)
      throw std::invalid_argument("adamx::" + s.kind + "::restore: invalid epoch = " + std::to_string(epoch) +
                                  " (must be <= total_steps = " + std::to_string(total_steps_) + ")");
  }
  std::vector<std::pair<std::string, double>> settings() const {
    return {{"max_lr", max_lr_},
            {"total_steps", detail::as_setting(total_steps_)},
            {"pct_start", options_.pct_start},
            {"anneal_strategy", static_cast<double>(options_.anneal_strategy)},
            {"div_factor", options_.div_factor},
            {"final_div_factor", options_.final_div_factor},
            {"three_phase", options_.three_phase ? 1.0 : 0.0}};
  }
  double max_lr_;
  std::int64_t total_steps_;
  OneCycleOptions options_;
  double min_lr_ = 0.0;
  std::vector<Phase> phases_;
};

/// CyclicLR's built-in shapes.
enum class CyclicMode { triangular, triangular2, exp_range };
/// What a custom scale function of CyclicLR is given: the cycle (from 1) or the step.
enum class CyclicScaleMode { cycle, iterations };

/// CyclicLR's settings other than base_lr and max_lr (PyTorch's defaults).
struct CyclicOptions {
  std::int64_t step_size_up = 2000;  ///< steps from base_lr up to max_lr
  std::optional<std::int64_t> step_size_down;  ///< steps back down; unset: step_size_up
  CyclicMode mode = CyclicMode::triangular;
  double gamma = 1.0;  ///< exp_range's factor per step
};

/// torch.optim.lr_scheduler.CyclicLR for one parameter group (the lr only:
/// see the file comment about cycle_momentum). A custom scale function
/// replaces the mode's, as PyTorch's scale_fn; state() cannot hold it, so
/// restore into a CyclicLR constructed with the same one. An lr that is not
/// finite and >= 0 (from gamma > 1 or a custom function) throws
/// std::invalid_argument at the step that would reach it and changes nothing.
class CyclicLR : public detail::FromScratchSchedule<CyclicLR> {
 public:
  static constexpr const char* kKind = "CyclicLR";
  using ScaleFn = std::function<double(std::int64_t)>;
  CyclicLR(double base_lr, double max_lr, CyclicOptions options = {})
      : CyclicLR(base_lr, max_lr, options, ScaleFn(), CyclicScaleMode::cycle, false) {}
  CyclicLR(double base_lr, double max_lr, CyclicOptions options, ScaleFn scale_fn, CyclicScaleMode scale_mode)
      : CyclicLR(base_lr, max_lr, options, std::move(scale_fn), scale_mode, true) {}

  /// The lr at `step`, computed as step() does (PyTorch computes every step from scratch).
  double closed_form(std::int64_t step) const {
    const double q = static_cast<double>(step) / total_size_;
    const double cycle = std::floor(1.0 + q);
    const double x = 1.0 + q - cycle;
    const double scale = x <= step_ratio_ ? x / step_ratio_ : (x - 1.0) / (step_ratio_ - 1.0);
    const double height = (max_lr_ - initial_lr_) * scale;
    return detail::require_computed_lr(kKind, step, initial_lr_ + height * scale_at(cycle, step));
  }
  double max_lr() const { return max_lr_; }

 private:
  friend class detail::FromScratchSchedule<CyclicLR>;
  CyclicLR(double base_lr, double max_lr, const CyclicOptions& o, ScaleFn scale_fn, CyclicScaleMode scale_mode,
           bool custom)
      : FromScratchSchedule(kKind, "base_lr", base_lr),
        max_lr_(max_lr),
        step_size_up_(o.step_size_up),
        step_size_down_(o.step_size_down.value_or(o.step_size_up)),
        mode_(o.mode),
        gamma_(o.gamma),
        scale_fn_(std::move(scale_fn)),
        scale_mode_(scale_mode),
        custom_(custom) {
    detail::require_lr(kKind, "max_lr", max_lr);
    detail::require_positive_count(kKind, "step_size_up", step_size_up_);
    detail::require_positive_count(kKind, "step_size_down", step_size_down_);
    detail::require_gamma(kKind, gamma_);
    if (custom_) {
      if (!scale_fn_) detail::throw_invalid_schedule(kKind, "scale_fn", "an empty std::function", "must be callable");
      if (scale_mode != CyclicScaleMode::cycle && scale_mode != CyclicScaleMode::iterations)
        detail::throw_invalid_schedule(kKind, "scale_mode", std::to_string(static_cast<int>(scale_mode)),
                                       "must be CyclicScaleMode::cycle or ::iterations");
    } else if (mode_ != CyclicMode::triangular && mode_ != CyclicMode::triangular2 &&
               mode_ != CyclicMode::exp_range) {
      detail::throw_invalid_schedule(kKind, "mode", std::to_string(static_cast<int>(mode_)),
                                     "must be CyclicMode::triangular, ::triangular2 or ::exp_range");
    }
    const double up = static_cast<double>(step_size_up_);
    total_size_ = up + static_cast<double>(step_size_down_);
    step_ratio_ = up / total_size_;
    lr_ = closed_form(0);
  }
  double scale_at(double cycle, std::int64_t step) const {
    if (custom_)
      return scale_fn_(scale_mode_ == CyclicScaleMode::cycle ? static_cast<std::int64_t>(cycle) : step);
    switch (mode_) {
      case CyclicMode::triangular2:
        return 1.0 / std::pow(2.0, cycle - 1.0);
      case CyclicMode::exp_range:
        return std::pow(gamma_, static_cast<double>(step));
      case CyclicMode::triangular:
        break;
    }
    return 1.0;
  }
  std::vector<std::pair<std::string, double>> settings() const {
    return {{"base_lr", initial_lr_},
            {"max_lr", max_lr_},
            {"step_size_up", detail::as_setting(step_size_up_)},
            {"step_size_down", detail::as_setting(step_size_down_)},
            {"mode", static_cast<double>(mode_)},
            {"gamma", gamma_},
            {"custom_scale_fn", custom_ ? 1.0 : 0.0},
            {"scale_mode", static_cast<double>(scale_mode_)}};
  }
  double max_lr_;
  std::int64_t step_size_up_;
  std::int64_t step_size_down_;
  CyclicMode mode_;
  double gamma_;
  ScaleFn scale_fn_;
  CyclicScaleMode scale_mode_;
  bool custom_;
  double total_size_ = 0.0;
  double step_ratio_ = 0.0;
};

ADAMX_NAMESPACE_END  // namespace adamx
