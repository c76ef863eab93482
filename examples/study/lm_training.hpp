// lm_training.hpp - the training loop and the held-out score that the
// study's two language models on the fortunes text share (task_char_lm.hpp,
// task_transformer.hpp): next-symbol prediction on random windows of the
// training text, scored by the mean cross-entropy on fixed held-out windows.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fortunes_text.hpp"
#include "study.hpp"
#include "study_torch.hpp"

namespace study::lm {

/// The size of a run, full or quick.
struct Length {
  long steps = 0;             ///< optimizer steps
  std::int64_t batch = 0;     ///< training windows per step
  int log_points = 0;         ///< curve points (evaluation runs)
};

/// The data both phases read, loaded once per task: the training symbols and
/// the fixed held-out windows of validation (tune) and test (eval) text.
struct Data {
  std::vector<std::uint8_t> train;
  torch::Tensor validation, test;  ///< windows × (context + 1) symbols
};

/// Loads the corpus and cuts `windows` evenly spaced held-out windows of
/// context + 1 symbols from each of validation and test (their inputs are
/// the first `context`, their targets the last `context`).
inline std::shared_ptr<const Data> load_data(const std::string& dir, std::int64_t windows,
                                             std::int64_t context) {
  fortunes::Corpus c = fortunes::load(dir);
  auto d = std::make_shared<Data>();
  d->train = std::move(c.train.symbols);
  d->validation = fortunes::even_windows(c.validation.symbols, windows, context + 1);
  d->test = fortunes::even_windows(c.test.symbols, windows, context + 1);
  return d;
}

/// What the two tasks share: a loss (lower is better) with an absolute
/// margin, the protocol's ten evaluation seeds, hidden matrices for Muon.
inline Task lm_task(const std::string& name) {
  Task t;
  t.name = name;
  t.higher_is_better = false;
  t.margin_relative = false;
  t.eval_seeds = 10;
  t.has_matrices = true;
  return t;
}

using Forward = std::function<torch::Tensor(const torch::Tensor&)>;  ///< symbols B×T → logits B×T×V

/// Mean cross-entropy (nats per symbol) of `forward`'s predictions over
/// every position of `windows`, in chunks of 128 windows to bound memory.
inline double mean_cross_entropy(const Forward& forward, const torch::Tensor& windows) {
  torch::NoGradGuard no_grad;
  const std::int64_t n = windows.size(0), t = windows.size(1) - 1;
  double sum = 0;
  for (std::int64_t first = 0; first < n; first += 128) {
    const torch::Tensor w = windows.slice(0, first, std::min(n, first + 128));
    const torch::Tensor logits = forward(w.slice(1, 0, t));
    sum += torch::nn::functional::cross_entropy(
               logits.reshape({-1, logits.size(-1)}), w.slice(1, 1, t + 1).reshape({-1}),
               torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
               .item<double>();
  }
  return sum / static_cast<double>(n * t);
}

inline bool all_finite(const std::vector<TorchLayer>& layers) {
  torch::NoGradGuard no_grad;
  for (const auto& layer : layers)
    for (const auto& p : layer.params)
      if (!torch::isfinite(p).all().item<bool>()) return false;
  return true;
}

/// Trains the model behind `forward` (its parameters in `layers`, already
/// initialised from the run's seed) with the run's arm and lr on random
/// training windows drawn from the run's seed, and returns the held-out
/// mean cross-entropy times `unit` (1: nats, 1/ln 2: bits); the curves'
/// "train_loss" is in the same unit. The windows of a step have the
/// held-out windows' length.
inline Outcome train(const Run& run, Curves& curves, const Data& data, const Forward& forward,
                     const std::vector<TorchLayer>& layers, const Length& len, double unit) {
  TorchOptimizer opt(*run.arm, run.lr, layers);
  StepMeter meter(layers);
  const torch::Tensor& held_out = run.phase == Phase::tune ? data.validation : data.test;
  const std::int64_t window = held_out.size(1);
  const auto score = [&] {
    TorchOptimizer::EvalGuard guard(opt);
    return unit * mean_cross_entropy(forward, held_out);
  };
  // The batches' generator: the seed alone, so every arm sees the same text.
  std::mt19937 rng(static_cast<std::mt19937::result_type>(run.seed));
  const long every = std::max<long>(1, len.steps / std::max(1, len.log_points));
  double loss_sum = 0;
  long loss_count = 0;
  Outcome out;
  bool scored_last = false;  // the last step's curve point already scored the end
  for (long step = 1; step <= len.steps; ++step) {
    const torch::Tensor w = fortunes::random_windows(data.train, len.batch, window, rng);
    const torch::Tensor logits = forward(w.slice(1, 0, window - 1));
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), w.slice(1, 1, window).reshape({-1}));
    const double l = loss.item<double>();
    if (!std::isfinite(l)) {
      out.diverged = true;
      return out;
    }
    loss_sum += l;
    ++loss_count;
    opt.zero_grad();
    loss.backward();
    const bool log = curves.keep() && (step % every == 0 || step == len.steps);
    if (log) meter.take();
    opt.step();
    if (log) {
      meter.record(step, opt.lr(), curves);
      record_gammas(opt, step, curves);
      curves.add(step, "train_loss", unit * loss_sum / static_cast<double>(loss_count));
      out.metric = score();
      curves.add(step, "metric", out.metric);
      scored_last = step == len.steps;
      loss_sum = 0;
      loss_count = 0;
    }
  }
  if (!all_finite(layers)) {
    out.diverged = true;
    return out;
  }
  if (!scored_last) out.metric = score();
  return out;
}

}  // namespace study::lm
