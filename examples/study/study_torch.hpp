// study_torch.hpp - an arm of the study as a libtorch optimizer, through
// adamx's libtorch adapter (adamx/torch.hpp), for the study's neural tasks.
#pragma once

#include <adamx/torch.hpp>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "study.hpp"

namespace study {

/// One layer of a model: its parameters, and whether it is a hidden layer
/// whose weight matrices Muon may step (its authors leave embeddings, output
/// layers, biases and gains to AdamW).
struct TorchLayer {
  std::string name;
  std::vector<torch::Tensor> params;
  bool hidden = true;
};

namespace detail {
template <class Opt>
auto switch_to_eval(Opt& opt, int) -> decltype(opt.eval(), void()) {
  opt.eval();
}
template <class Opt>
void switch_to_eval(Opt&, long) {}
template <class Opt>
auto switch_to_train(Opt& opt, int) -> decltype(opt.train(), void()) {
  opt.train();
}
template <class Opt>
void switch_to_train(Opt&, long) {}
}  // namespace detail

/// The arm's optimizer over a model's layers, grouped as the arm needs:
///  - by default one group per layer (AdamX: one γ per layer);
///  - one_group: every parameter in one group (one global γ);
///  - Muon: the hidden layers' matrices (parameters of two or more
///    dimensions) in one Muon group, everything else in one AdamW group at
///    muon_companion_options(lr).
class TorchOptimizer {
 public:
  TorchOptimizer(const Arm& arm, double lr, const std::vector<TorchLayer>& layers) : lr_(lr) {
    with_options(arm, lr, [&](auto options) {
      using Flavour = decltype(flavour_of(options));
      using Optimizer = adamx::torch_optim::BasicOptimizer<Flavour>;
      using TorchOptions = adamx::torch_optim::BasicOptions<Flavour>;
      std::vector<torch::optim::OptimizerParamGroup> groups;
      const auto add = [&](std::vector<torch::Tensor> params, const adamx::BasicOptions<Flavour>& o,
                           const std::string& name) {
        if (params.empty()) return;
        groups.emplace_back(std::move(params), std::make_unique<TorchOptions>(TorchOptions::from_adamx(o)));
        group_names_.push_back(name);
      };
      if constexpr (std::is_same<Flavour, adamx::flavour::Muon>::value) {
        std::vector<torch::Tensor> matrices, others;
        for (const auto& layer : layers)
          for (const auto& p : layer.params) (layer.hidden && p.dim() >= 2 ? matrices : others).push_back(p);
        add(matrices, options, "muon");
        add(others, muon_companion_options(lr), "adamw");
      } else if (arm.one_group) {
        std::vector<torch::Tensor> all;
        for (const auto& layer : layers) all.insert(all.end(), layer.params.begin(), layer.params.end());
        add(all, options, "all");
      } else {
        for (const auto& layer : layers) add(layer.params, options, layer.name);
      }
      auto opt = std::make_shared<Optimizer>(std::move(groups), TorchOptions::from_adamx(options));
      Optimizer* raw = opt.get();
      optimizer_ = opt;
      gamma_ = [raw](std::size_t g) { return raw->gamma(g); };
      eval_ = [raw] { detail::switch_to_eval(*raw, 0); };
      train_ = [raw] { detail::switch_to_train(*raw, 0); };
    });
  }

  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  void zero_grad() { optimizer_->zero_grad(); }
  /// Throws adamx::NonFiniteGradientError on a non-finite gradient (the
  /// study counts the run as diverged).
  void step() { optimizer_->step(); }
  std::size_t groups() const { return group_names_.size(); }
  const std::string& group_name(std::size_t g) const { return group_names_[g]; }
  double gamma(std::size_t g) const { return gamma_(g); }
  double lr() const { return lr_; }

  /// For the lifetime of the returned guard the parameters hold the point to
  /// evaluate (Schedule-Free AdamW's x; every other optimizer's parameters
  /// already do).
  class EvalGuard {
   public:
    explicit EvalGuard(TorchOptimizer& o) : o_(o) { o_.eval_(); }
    ~EvalGuard() { o_.train_(); }
    EvalGuard(const EvalGuard&) = delete;
    EvalGuard& operator=(const EvalGuard&) = delete;

   private:
    TorchOptimizer& o_;
  };

 private:
  double lr_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<std::string> group_names_;
  std::function<double(std::size_t)> gamma_;
  std::function<void()> eval_, train_;
};

/// Snapshots of each layer's parameters, to measure its effective step size
/// (RMS of the change per unit lr) across one step: take() before the step,
/// record() after it.
class StepMeter {
 public:
  explicit StepMeter(const std::vector<TorchLayer>& layers) : layers_(layers) {}
  void take() {
    torch::NoGradGuard no_grad;
    before_.clear();
    for (const auto& layer : layers_) {
      std::vector<torch::Tensor> copies;
      for (const auto& p : layer.params) copies.push_back(p.detach().clone());
      before_.push_back(std::move(copies));
    }
  }
  /// Adds "step/<layer>" at `step` to the curves.
  void record(long step, double lr, Curves& curves) const {
    torch::NoGradGuard no_grad;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      double sum = 0, n = 0;
      for (std::size_t i = 0; i < layers_[l].params.size(); ++i) {
        const torch::Tensor d = layers_[l].params[i].detach().to(torch::kDouble) - before_[l][i].to(torch::kDouble);
        sum += d.pow(2).sum().item<double>();
        n += static_cast<double>(d.numel());
      }
      curves.add(step, "step/" + layers_[l].name, std::sqrt(sum / n) / lr);
    }
  }

 private:
  const std::vector<TorchLayer>& layers_;
  std::vector<std::vector<torch::Tensor>> before_;
};

/// Adds "gamma/<group>" for every group at `step`.
inline void record_gammas(const TorchOptimizer& opt, long step, Curves& curves) {
  for (std::size_t g = 0; g < opt.groups(); ++g) curves.add(step, "gamma/" + opt.group_name(g), opt.gamma(g));
}

}  // namespace study
