// The baselines' defining behaviours, each checked against a value worked
// out by hand from the papers' equations (the long-double reference in
// test_reference.cpp follows every step; these name the properties):
//   RAdam takes un-adapted momentum steps α·m̂ while ρ_t ≤ 5 and switches to
//   the rectified adaptive step at the first t with ρ_t > 5;
//   AdaBound's step size is clipped into [lower(t), upper(t)];
//   AdaMod's first step is capped by its average, (1 − β3)·η.
#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

namespace {

TEST(Defaults, BaselineOptionsMatchThePapers) {
  const adamx::AdaBoundOptions bound;
  EXPECT_EQ(bound.final_lr, 0.1);
  EXPECT_EQ(bound.bound_speed, 1e-3);
  EXPECT_EQ(bound.lr, 1e-3);
  const adamx::AdaModOptions mod;
  EXPECT_EQ(mod.beta_step, 0.999);
  const adamx::RAdamOptions radam;
  EXPECT_EQ(radam.beta3, 1.0);  // γ fixed
  EXPECT_STREQ(adamx::RAdam<float>::name(), "RAdam");
  EXPECT_STREQ(adamx::AdaBound<float>::name(), "AdaBound");
  EXPECT_STREQ(adamx::AdaMod<float>::name(), "AdaMod");
}

// ρ_t for β2 = 0.999 first exceeds 5 at t = 6 (ρ_5 ≈ 4.99, ρ_6 ≈ 5.99):
// the step is α·m̂ for t ≤ 5, then α·r_t·m̂/(√v̂ + ε).
TEST(RAdam, MomentumStepsUntilRhoExceedsFiveThenRectified) {
  const auto rho = [](double beta2, double t) {
    const double rho_inf = 2 / (1 - beta2) - 1;
    return rho_inf - 2 * t * std::pow(beta2, t) / (1 - std::pow(beta2, t));
  };
  ASSERT_LE(rho(0.999, 5), 5.0);
  ASSERT_GT(rho(0.999, 6), 5.0);
  adamx::RAdam<double> opt;
  Eigen::VectorXd x = Eigen::VectorXd::Constant(1, 1.0);
  const Eigen::VectorXd g = Eigen::VectorXd::Constant(1, 0.5);
  opt.add_group({x});
  double m = 0, v = 0;
  for (int t = 1; t <= 8; ++t) {
    const double before = x[0];
    opt.step({{x}}, {{g}});
    m = 0.9 * m + 0.1 * 0.5;
    v = 0.999 * v + 0.001 * 0.25;
    const double m_hat = m / (1 - std::pow(0.9, t));
    double expected = 1e-3 * m_hat;
    if (t >= 6) {
      const double r = rho(0.999, t), ri = 2 / (1 - 0.999) - 1;
      const double rect = std::sqrt((r - 4) * (r - 2) * ri / ((ri - 4) * (ri - 2) * r));
      expected = 1e-3 * rect * m_hat / (std::sqrt(v / (1 - std::pow(0.999, t))) + 1e-8);
      EXPECT_LT(rect, 0.1) << "r_t starts small";  // ≈ 0.02 at t = 6
    }
    // The step is computed here in another order (1e-12 of it covers a few
    // hundred ulps), and reading it back as before − x costs up to an ulp of
    // θ ≈ 1 for each of x's roundings (2 · 2.2e-16).
    EXPECT_NEAR(before - x[0], expected, 1e-12 * expected + 4.5e-16) << "t = " << t;
  }
}

// AdaBound: at t = 1, η = α·√(1−β2)/(1−β1)/(√((1−β2)g²) + ε) ≈ 10α/|g|.
// Gradients far from 1 put η far outside the bounds, so the clip decides the
// step exactly: −bound·m.
TEST(AdaBound, StepSizeIsClippedToTheBounds) {
  for (const double g_value : {1e-6, 1e3}) {  // η huge (upper bound), η tiny (lower bound)
    adamx::AdaBound<double> opt;
    adamx::AdaBoundOptions o;
    o.lr = 1e-3;
    o.final_lr = 0.1;
    o.bound_speed = 0.5;  // bounds at t = 1: [0.1·(1 − 1/1.5), 0.1·(1 + 2)] = [1/30, 0.3]
    Eigen::VectorXd x = Eigen::VectorXd::Zero(1);
    const Eigen::VectorXd g = Eigen::VectorXd::Constant(1, g_value);
    opt.add_group({x}, o);
    opt.step({{x}}, {{g}});
    const double m = 0.1 * g_value;  // (1 − β1)·g
    const double bound = g_value < 1 ? 0.1 * 3.0 : 0.1 * (1 - 1 / 1.5);
    // −bound·m, with bound computed here in another order: 4 ulps.
    EXPECT_NEAR(x[0], -bound * m, 4 * 2.2e-16 * bound * m) << "g = " << g_value;
  }
}

// AdaMod's average starts at 0, so the first step is capped at
// (1 − β3)·η: a thousandth of the uncapped step with β3 = 0.999.
TEST(AdaMod, FirstStepIsCappedByTheAverage) {
  adamx::AdaMod<double> opt;
  Eigen::VectorXd x = Eigen::VectorXd::Zero(1);
  const Eigen::VectorXd g = Eigen::VectorXd::Constant(1, 2.0);
  opt.add_group({x});
  opt.step({{x}}, {{g}});
  const double eta = 1e-3 * std::sqrt(1 - 0.999) / (1 - 0.9) / (std::sqrt(0.001 * 4.0) + 1e-8);
  const double expected = -(0.001 * eta) * (0.1 * 2.0);
  EXPECT_NEAR(x[0], expected, 8 * 2.2e-16 * std::fabs(expected));
  EXPECT_NEAR(opt.state(0).tensors[0].step_avg[0], 0.001 * eta, 8 * 2.2e-16 * 0.001 * eta);
}

// An AdaMod group's state carries the third array; other optimizers' do not.
TEST(AdaMod, StateHasStepAverageOnlyForAdaMod) {
  Eigen::VectorXf x = Eigen::VectorXf::Zero(5);
  adamx::AdaMod<float> mod;
  mod.add_group({x});
  EXPECT_EQ(mod.state(0).tensors[0].step_avg.size(), 5);
  // Adam's state has no member for it at all (its rule declares m, v, v_max).
  adamx::Adam<float> adam;
  adam.add_group({x});
  using AdamTensor = adamx::Adam<float>::tensor_state_type;
  static_assert(AdamTensor::kSlots == 3, "m, v, v_max");
  for (int k = 0; k < AdamTensor::kSlots; ++k) EXPECT_STRNE(AdamTensor::slot_names[k], "step_avg");
  EXPECT_EQ(adam.state(0).tensors[0].m.size(), 5);
}

}  // namespace
