// A small two-group model for the checkpoint tests: "layer1" holds a 5x3
// column-major weight and a 5-vector bias, "layer2" a 4x5 row-major weight,
// so names, both storage orders and vectors all pass through a checkpoint.
// Gradients are reproducible per step and swing over six orders of
// magnitude, so AdamX's γ moves away from 1 and every state field is busy.
#pragma once

#include "test_util.hpp"

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

namespace adamx_test {

template <class Opt>
struct CheckpointModel {
  using Scalar = typename Opt::scalar_type;
  using Options = typename Opt::Options;
  using ColMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  ColMatrix w1 = ColMatrix(5, 3), gw1 = ColMatrix(5, 3);
  Vector b1 = Vector(5), gb1 = Vector(5);
  RowMatrix w2 = RowMatrix(4, 5), gw2 = RowMatrix(4, 5);

  CheckpointModel() {
    fill(w1, 11);
    fill(b1, 12);
    fill(w2, 13);
  }

  /// The two groups, named, with the given options.
  void add_groups(Opt& opt, const Options& first = Options{}, const Options& second = Options{}) {
    opt.add_group({w1, b1}, first, "layer1", {"weight", "bias"});
    opt.add_group({w2}, second, "layer2", {"weight"});
  }

  /// Options that switch on what a checkpoint must carry: amsgrad, weight
  /// decay, a non-default lr, policy and baseline options.
  static Options busy_options(bool amsgrad) {
    Options o;
    o.lr = 3e-3;
    // AMSGrad where the optimizer has it; a rule without it keeps no v_max.
    if (!adamx_test::set_option(o, "amsgrad", amsgrad)) {
      EXPECT_FALSE(adamx_test::rule_has_slot<Opt>("v_max"));
    }
    o.weight_decay = 0.05;
    o.nonfinite = adamx::NonFinitePolicy::skip;
    // AdaBound's and AdaMod's own options, non-default, where the optimizer has them.
    adamx_test::set_option(o, "final_lr", 0.05);
    adamx_test::set_option(o, "bound_speed", 2e-3);
    adamx_test::set_option(o, "beta_step", 0.99);
    return o;
  }

  /// The gradients of step `k` (k = 0, 1, ...): scale 10^((k mod 7) - 3).
  void set_gradients(int k) {
    const double scale = std::pow(10.0, (k % 7) - 3);
    const auto seed = static_cast<std::uint64_t>(100 + 3 * k);
    fill(gw1, seed, scale);
    fill(gb1, seed + 1, scale);
    fill(gw2, seed + 2, scale);
  }

  void step(Opt& opt, int k) {
    set_gradients(k);
    opt.step({{w1, b1}, {w2}}, {{gw1, gb1}, {gw2}});
  }

  ::testing::AssertionResult SameParameters(const CheckpointModel& other) const {
    if (!BitwiseEqual(w1, other.w1)) return ::testing::AssertionFailure() << "w1 differs";
    if (!BitwiseEqual(b1, other.b1)) return ::testing::AssertionFailure() << "b1 differs";
    if (!BitwiseEqual(w2, other.w2)) return ::testing::AssertionFailure() << "w2 differs";
    return ::testing::AssertionSuccess();
  }
};

/// The checkpoint of `opt`, as bytes.
template <class Opt>
std::string saved(const Opt& opt) {
  std::ostringstream out(std::ios::binary);
  adamx::save_checkpoint(opt, out);
  return out.str();
}

/// The checkpoint of `opt` after the model's two groups (layer2 with
/// busy_options(true)) took `steps` steps.
template <class Opt>
std::string busy_checkpoint(Opt& opt, int steps) {
  CheckpointModel<Opt> model;
  model.add_groups(opt, typename Opt::Options{}, CheckpointModel<Opt>::busy_options(true));
  for (int k = 0; k < steps; ++k) model.step(opt, k);
  return saved(opt);
}

/// What load_checkpoint says about `bytes`, loaded into a fresh optimizer
/// with the model's groups; "" if it loads them.
template <class Opt>
std::string loader_message(const std::string& bytes) {
  CheckpointModel<Opt> model;
  Opt opt;
  model.add_groups(opt);
  std::istringstream in(bytes, std::ios::binary);
  try {
    adamx::load_checkpoint(opt, in);
  } catch (const adamx::CheckpointError& error) {
    return error.what();
  }
  return {};
}

}  // namespace adamx_test
