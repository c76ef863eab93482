// The optimizers the checkpoint fuzzer loads into, shared with the seed
// generator so that the seeds are checkpoints these optimizers accept (the
// fuzzer then starts from inputs that reach the deepest checks).
#pragma once

#include <adamx/adamx.hpp>

namespace adamx_fuzz {

// Two groups, both storage orders, a vector and amsgrad in one group: every
// part of the format is present. AdamX over float, Adam over double and
// AdaMod over float (the one optimizer with a third state array), so the
// optimizer- and type-mismatch paths are reached from every seed.
template <class Opt>
struct Model {
  using Scalar = typename Opt::scalar_type;
  Eigen::Matrix<Scalar, 3, 2> w1;
  Eigen::Matrix<Scalar, 3, 1> b1;
  Eigen::Matrix<Scalar, 2, 3, Eigen::RowMajor> w2;
  Opt opt;

  Model() {
    w1.setConstant(Scalar(0.5));
    b1.setConstant(Scalar(-0.5));
    w2.setConstant(Scalar(0.25));
    typename Opt::Options with_amsgrad;
    with_amsgrad.amsgrad = true;
    opt.add_group({w1, b1}, with_amsgrad, "layer1", {"weight", "bias"});
    opt.add_group({w2}, typename Opt::Options{}, "layer2", {"weight"});
  }

  /// `steps` steps with gradients of alternating scale, so γ, h and the
  /// moments all hold non-trivial values.
  void train(int steps) {
    Eigen::Matrix<Scalar, 3, 2> g1;
    Eigen::Matrix<Scalar, 3, 1> gb;
    Eigen::Matrix<Scalar, 2, 3, Eigen::RowMajor> g2;
    for (int k = 0; k < steps; ++k) {
      const Scalar scale = Scalar(k % 2 == 0 ? 1.0 : 1e-3);
      g1.setConstant(scale * Scalar(0.3 + k));
      gb.setConstant(scale * Scalar(-0.2));
      g2.setConstant(scale * Scalar(0.1 * k - 0.4));
      opt.step({{w1, b1}, {w2}}, {{g1, gb}, {g2}});
    }
  }
};

using AdamXModel = Model<adamx::AdamX<float>>;
using AdamModel = Model<adamx::Adam<double>>;
using AdaModModel = Model<adamx::AdaMod<float>>;

}  // namespace adamx_fuzz
