// study_eigen.hpp - an arm of the study as an adamx::Optimizer over a model
// written with Eigen, for the study's Eigen tasks (study_eigen.cpp).
#pragma once

#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "study.hpp"

namespace study {

/// One layer of an Eigen model: its parameters and their gradients (the same
/// order and shapes), and whether Muon may step its matrices (see
/// TorchLayer for the rule).
struct EigenLayer {
  std::string name;
  std::vector<adamx::TensorRef<float>> params;
  std::vector<adamx::ConstTensorRef<float>> grads;
  bool hidden = true;
};

/// The groups an arm steps, built from a model's layers as TorchOptimizer
/// builds them: one per layer, one for everything (one_group), or Muon's
/// matrices and the rest.
struct EigenGroups {
  std::vector<std::vector<adamx::TensorRef<float>>> params;
  std::vector<std::vector<adamx::ConstTensorRef<float>>> grads;
  std::vector<std::string> names;
  std::vector<bool> muon;  ///< Muon's own group (the others, for Muon, its AdamW)
};

inline EigenGroups group_layers(const Arm& arm, const std::vector<EigenLayer>& layers) {
  EigenGroups g;
  const auto open = [&](const std::string& name, bool muon) {
    g.params.emplace_back();
    g.grads.emplace_back();
    g.names.push_back(name);
    g.muon.push_back(muon);
  };
  const auto put = [&](std::size_t group, const EigenLayer& layer, std::size_t i) {
    g.params[group].push_back(layer.params[i]);
    g.grads[group].push_back(layer.grads[i]);
  };
  if (steps_matrices(arm)) {
    // Muon's group first, then its AdamW's; a kind with no tensor gets no group.
    for (const bool muon : {true, false}) {
      bool opened = false;
      for (const auto& layer : layers)
        for (std::size_t i = 0; i < layer.params.size(); ++i) {
          const bool matrix = layer.params[i].rows() > 1 && layer.params[i].cols() > 1;
          if ((layer.hidden && matrix) != muon) continue;
          if (!opened) open(muon ? "muon" : "adamw", muon);
          opened = true;
          put(g.names.size() - 1, layer, i);
        }
    }
  } else if (arm.one_group) {
    open("all", false);
    for (const auto& layer : layers)
      for (std::size_t i = 0; i < layer.params.size(); ++i) put(0, layer, i);
  } else {
    for (const auto& layer : layers) {
      open(layer.name, false);
      for (std::size_t i = 0; i < layer.params.size(); ++i) put(g.names.size() - 1, layer, i);
    }
  }
  return g;
}

/// Calls body(opt) with the arm's float optimizer at `lr`, its groups added.
template <class Body>
void with_eigen_optimizer(const Arm& arm, double lr, const EigenGroups& groups, Body&& body) {
  with_options(arm, lr, [&](auto options) {
    using Flavour = decltype(flavour_of(options));
    adamx::Optimizer<float, Flavour> opt;
    for (std::size_t i = 0; i < groups.params.size(); ++i) {
      if constexpr (std::is_same<Flavour, adamx::flavour::Muon>::value) {
        opt.add_group(groups.params[i], groups.muon[i] ? options : muon_companion_options(lr), groups.names[i]);
      } else {
        opt.add_group(groups.params[i], options, groups.names[i]);
      }
    }
    body(opt);
  });
}

namespace detail {
template <class Opt, class Params>
auto move_to_evaluation_point(Opt& opt, const Params& params, bool evaluate, int)
    -> decltype(opt.eval(params), void()) {
  if (evaluate) {
    opt.eval(params);
  } else {
    opt.train(params);
  }
}
template <class Opt, class Params>
void move_to_evaluation_point(Opt&, const Params&, bool, long) {}
}  // namespace detail

/// For its lifetime the parameters hold the point to evaluate (Schedule-Free
/// AdamW's x; every other optimizer's parameters already do).
template <class Opt>
class EvaluationPoint {
 public:
  EvaluationPoint(Opt& opt, const EigenGroups& groups) : opt_(opt), groups_(groups) {
    detail::move_to_evaluation_point(opt_, groups_.params, true, 0);
  }
  ~EvaluationPoint() { detail::move_to_evaluation_point(opt_, groups_.params, false, 0); }
  EvaluationPoint(const EvaluationPoint&) = delete;
  EvaluationPoint& operator=(const EvaluationPoint&) = delete;

 private:
  Opt& opt_;
  const EigenGroups& groups_;
};

/// Each layer's effective step size across one step (the RMS of the change
/// of its parameters per unit lr): take() before the step, record() after.
class EigenStepMeter {
 public:
  explicit EigenStepMeter(const std::vector<EigenLayer>& layers) : layers_(layers) {}
  void take() {
    before_.clear();
    for (const auto& layer : layers_) {
      std::vector<Eigen::VectorXf> copies;
      for (const auto& p : layer.params)
        copies.emplace_back(Eigen::Map<const Eigen::VectorXf>(p.data(), p.size()));
      before_.push_back(std::move(copies));
    }
  }
  void record(long step, double lr, Curves& curves) const {
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      double sum = 0, n = 0;
      for (std::size_t i = 0; i < layers_[l].params.size(); ++i) {
        const auto& p = layers_[l].params[i];
        const Eigen::Map<const Eigen::VectorXf> now(p.data(), p.size());
        sum += (now.cast<double>() - before_[l][i].cast<double>()).squaredNorm();
        n += static_cast<double>(p.size());
      }
      curves.add(step, "step/" + layers_[l].name, std::sqrt(sum / n) / lr);
    }
  }

 private:
  const std::vector<EigenLayer>& layers_;
  std::vector<std::vector<Eigen::VectorXf>> before_;
};

/// Adds "gamma/<group>" for every group at `step`, from a step's reports.
template <class Reports>
void record_gammas(const Reports& reports, const EigenGroups& groups, long step, Curves& curves) {
  for (std::size_t g = 0; g < groups.names.size(); ++g) curves.add(step, "gamma/" + groups.names[g], reports[g].gamma);
}

}  // namespace study
