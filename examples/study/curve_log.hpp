// curve_log.hpp - the training-loop side of a libtorch task's curves: at
// evenly spaced steps, the optimizer's effective step size per layer, its
// γ per group, the mean training loss since the last point and the task's
// metric on held-out data (study.hpp, Curves).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "study.hpp"
#include "study_torch.hpp"

namespace study {

/// Steps an optimizer and records its curves at about `points` evenly
/// spaced steps of `steps` (and at the last). Records nothing, and measures
/// nothing, when the curves are not kept (tuning runs).
class CurveLog {
 public:
  CurveLog(Curves& curves, const std::vector<TorchLayer>& layers, long steps, int points)
      : curves_(curves), meter_(layers), steps_(steps), every_(std::max(1L, steps / points)) {}

  /// opt.step() for update number `step` (from 1), whose minibatch loss was
  /// `loss`; at a curve point also "step/<layer>", "gamma/<group>",
  /// "train_loss" and "metric" = metric(), which should evaluate at the
  /// optimizer's evaluation point (TorchOptimizer::EvalGuard).
  template <class Metric>
  void step(long step, double loss, TorchOptimizer& opt, Metric&& metric) {
    const bool point = curves_.keep() && (step % every_ == 0 || step == steps_);
    if (point) meter_.take();
    opt.step();
    loss_sum_ += loss;
    ++loss_count_;
    if (!point) return;
    meter_.record(step, opt.lr(), curves_);
    record_gammas(opt, step, curves_);
    curves_.add(step, "train_loss", loss_sum_ / static_cast<double>(loss_count_));
    curves_.add(step, "metric", std::forward<Metric>(metric)());
    loss_sum_ = 0;
    loss_count_ = 0;
  }

 private:
  Curves& curves_;
  StepMeter meter_;
  long steps_, every_;
  double loss_sum_ = 0;
  long loss_count_ = 0;
};

/// Whether every parameter of the layers is finite (a run whose parameters
/// are not has diverged, whatever its last loss said).
inline bool all_finite(const std::vector<TorchLayer>& layers) {
  torch::NoGradGuard no_grad;
  for (const auto& layer : layers)
    for (const auto& p : layer.params)
      if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

}  // namespace study
