// Adan against the independent long-double reference
// (tests/reference/naive_adan.hpp) over 600 steps, float and double, in five
// gradient regimes and with every option; and its exact behaviours: the
// defaults are the authors', the first step sees d = 0 (v stays exactly 0,
// the stored previous gradient is the gradient), the proximal decay is the
// default, a NaN reaches θ and every slot under propagate and changes
// nothing under skip.
//
// Tolerance: |library − reference| ≤ kSlack × bound, the bound being the
// reference's first-order rounding-error bound for each quantity (see the
// header); kSlack = 2 absorbs the second-order terms and the use of the
// reference's magnitudes for the library's, as in test_reference.cpp. The
// stored previous gradient is compared exactly: it is the gradient the
// library received (sign-flipped for maximize), which both hold exactly.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "reference/naive_adan.hpp"
#include "reference/reference_run.hpp"

namespace {

using naive_adan::Real;

using reference::name;
enum class Variant { defaults, decay, decay_no_prox, maximize, betas, skip_nonfinite };

const char* name(Variant v) {
  switch (v) {
    case Variant::defaults: return "defaults";
    case Variant::decay: return "decay";
    case Variant::decay_no_prox: return "decay_no_prox";
    case Variant::maximize: return "maximize";
    case Variant::betas: return "betas";
    case Variant::skip_nonfinite: return "skip_nonfinite";
  }
  return "?";
}

// Adan's part of the reference run (reference/reference_run.hpp).
struct AdanRun : reference::RunDefaults {
  using Variant = ::Variant;
  using Options = adamx::AdanOptions;
  template <class Scalar>
  using Optimizer = adamx::Adan<Scalar>;
  using Group = naive_adan::Group;
  using Element = naive_adan::Element;
  using Hyper = naive_adan::Hyper;
  using Rule = adamx::rules::Adan;
  static constexpr const char* kLabel = "adan";
  static constexpr reference::Quantity<Element> kParam{"theta", &Element::theta, &Element::err_theta, -1};
  // The stored previous gradient has no bound: it is compared exactly.
  static constexpr reference::Quantity<Element> kSlots[] = {
      {"m", &Element::m, &Element::err_m, Rule::m},
      {"v", &Element::v, &Element::err_v, Rule::v},
      {"n", &Element::n, &Element::err_n, Rule::n},
      {"prev_grad", &Element::prev_grad, nullptr, Rule::prev_grad}};
  // Each step adds a few roundings of |θ| ≤ 2 and of the update (≤ α times
  // a few), so 16 ulps of 1 per step is a ceiling the bounds reach only if
  // they are wrong.
  static constexpr int kThetaBoundUlpsPerStep = 16;

  static Options options(Variant v) {
    adamx::AdanOptions o;
    switch (v) {
      case Variant::defaults: break;
      case Variant::decay: o.weight_decay = 0.02; break;  // the authors' usual λ
      case Variant::decay_no_prox:
        o.weight_decay = 0.02;
        o.no_prox = true;
        break;
      case Variant::maximize: o.maximize = true; break;
      case Variant::betas:
        o.beta1 = 0.9;
        o.beta2 = 0.7;
        o.beta3 = 0.999;
        o.eps = 1e-6;
        break;
      case Variant::skip_nonfinite: o.nonfinite = adamx::NonFinitePolicy::skip; break;
    }
    return o;
  }

  static Hyper hyper(const Options& o) {
    naive_adan::Hyper h;
    h.lr = o.lr;
    h.beta1 = o.beta1;
    h.beta2 = o.beta2;
    h.beta3 = o.beta3;
    h.eps = o.eps;
    h.weight_decay = o.weight_decay;
    h.no_prox = o.no_prox;
    h.maximize = o.maximize;
    h.skip_nonfinite = o.nonfinite != adamx::NonFinitePolicy::propagate;
    return h;
  }

  static bool step(Group& group, const Hyper& hp, const std::vector<std::vector<Real>>& grads,
                   const reference::Precision& p, const std::vector<std::vector<Real>>& /*library_theta*/) {
    return naive_adan::step(group, hp, grads, p);
  }
};

using Case = reference::Case<Variant>;

class AdanReference : public testing::TestWithParam<Case> {};

TEST_P(AdanReference, MatchesLongDoubleReferenceWithinRoundingBound) { reference::run_case<AdanRun>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(AllRegimesAndOptions, AdanReference,
                         testing::ValuesIn(reference::all_cases({Variant::decay, Variant::decay_no_prox,
                                                                 Variant::maximize, Variant::betas,
                                                                 Variant::skip_nonfinite})),
                         reference::case_name<Variant>);

TEST(Adan, DefaultsAreTheAuthors) {
  const adamx::AdanOptions o;
  EXPECT_EQ(o.lr, 1e-3);
  EXPECT_EQ(o.beta1, 0.98);
  EXPECT_EQ(o.beta2, 0.92);
  EXPECT_EQ(o.beta3, 0.99);
  EXPECT_EQ(o.eps, 1e-8);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_FALSE(o.no_prox);
  EXPECT_FALSE(o.maximize);
  EXPECT_STREQ(adamx::Adan<float>::name(), "Adan");
}

// Step 1 sees d = g − g = +0: v stays exactly 0, n is (1 − β3)·g², the
// stored previous gradient is g itself. Step 2 with the same g again has
// d = 0, so v is still exactly 0.
TEST(Adan, FirstStepSeesNoDifference) {
  Eigen::VectorXf x(4), g(4);
  x << 0.5f, -0.25f, 1.0f, 0.0f;
  g << 3.0f, -1e-20f, -7.5f, 2.0f;
  adamx::Adan<float> opt;
  opt.add_group({x});
  for (int step = 1; step <= 2; ++step) {
    opt.step({{x}}, {{g}});
    const auto ts = opt.state(0).tensors[0];
    for (Eigen::Index i = 0; i < 4; ++i) {
      EXPECT_EQ(ts.v[i], 0.0f) << "step " << step << ", element " << i;
      EXPECT_FALSE(std::signbit(ts.v[i])) << "step " << step << ", element " << i;
      EXPECT_EQ(ts.prev_grad[i], g[i]) << "step " << step << ", element " << i;
    }
  }
  // Then a different gradient: d ≠ 0 reaches v.
  const Eigen::VectorXf g3 = -g;
  opt.step({{x}}, {{g3}});
  const auto ts = opt.state(0).tensors[0];
  for (Eigen::Index i = 0; i < 4; ++i) {
    EXPECT_NE(ts.v[i], 0.0f) << i;
    EXPECT_EQ(ts.prev_grad[i], g3[i]) << i;
  }
}

// With λ > 0, the default divides by 1 + αλ after the step and no_prox
// multiplies by 1 − αλ before it; with a zero gradient the step is 0 (m, v
// and n stay 0, and 0/ε = 0), so θ shows the decay alone.
TEST(Adan, DecayIsProximalUnlessNoProx) {
  for (const bool no_prox : {false, true}) {
    Eigen::VectorXd x(3);
    x << 1.0, -2.0, 0.5;
    const Eigen::VectorXd before = x;
    const Eigen::VectorXd zero = Eigen::VectorXd::Zero(3);
    adamx::AdanOptions o;
    o.lr = 0.1;
    o.weight_decay = 0.5;
    o.no_prox = no_prox;
    adamx::Adan<double> opt;
    opt.add_group({x}, o);
    opt.step({{x}}, {{zero}});
    for (Eigen::Index i = 0; i < 3; ++i) {
      const double expected = no_prox ? before[i] * (1.0 - 0.05) : before[i] / 1.05;
      // The library multiplies by 1/(1 + αλ) rounded once: within an ulp of the division.
      EXPECT_NEAR(x[i], expected, 2 * std::numeric_limits<double>::epsilon() * std::fabs(expected))
          << (no_prox ? "no_prox" : "prox") << ", element " << i;
    }
  }
}

TEST(Adan, NaNPropagatesOrSkipsTheGroup) {
  Eigen::VectorXf x = Eigen::VectorXf::Constant(3, 1.0f);
  Eigen::VectorXf g = Eigen::VectorXf::Constant(3, 0.5f);
  g[1] = std::nanf("");
  adamx::Adan<float> propagate;
  propagate.add_group({x});
  propagate.step({{x}}, {{g}});
  EXPECT_TRUE(std::isnan(x[1]));
  const auto ts = propagate.state(0).tensors[0];
  EXPECT_TRUE(std::isnan(ts.m[1]));
  EXPECT_TRUE(std::isnan(ts.v[1]));  // d = NaN − NaN
  EXPECT_TRUE(std::isnan(ts.n[1]));
  EXPECT_TRUE(std::isnan(ts.prev_grad[1]));
  EXPECT_FALSE(std::isnan(x[0]));

  Eigen::VectorXf y = Eigen::VectorXf::Constant(3, 1.0f);
  adamx::AdanOptions o;
  o.nonfinite = adamx::NonFinitePolicy::skip;
  adamx::Adan<float> skip;
  skip.add_group({y}, o);
  const auto before = skip.state();
  const adamx::StepReport report = skip.step({{y}}, {{g}})[0];
  EXPECT_FALSE(report.applied);
  EXPECT_EQ(skip.state(), before);
  EXPECT_EQ(y, Eigen::VectorXf::Constant(3, 1.0f));
}

}  // namespace
