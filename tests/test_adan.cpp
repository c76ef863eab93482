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
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference/naive_adan.hpp"
#include "reference/regime_gradients.hpp"
#include "reference/regimes.hpp"

namespace {

using naive_adan::Real;
constexpr Real kSlack = 2;
constexpr int kSteps = 600;

using reference::name;
using reference::Regime;  // all but nonfinite_bursts: non-finite gradients are the skip variant's
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

adamx::AdanOptions options_for(Variant v) {
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

naive_adan::Hyper hyper_from(const adamx::AdanOptions& o) {
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

// |library − reference| ≤ kSlack × bound (reference/regime_gradients.hpp).
std::string compare(const char* what, Real library, Real expected, Real bound, Real& worst_ratio) {
  return reference::compare_within_bound(what, library, expected, bound, kSlack, worst_ratio);
}

template <class Scalar>
void run_case(Regime regime, Variant variant) {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  const std::vector<std::size_t> sizes = {37, 300, 64};
  std::vector<Vector> params, grads;
  naive_adan::Group ref;
  std::mt19937_64 init(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (std::size_t n : sizes) {
    params.emplace_back(static_cast<Eigen::Index>(n));
    grads.emplace_back(static_cast<Eigen::Index>(n));
    ref.tensors.emplace_back(n);
    for (std::size_t i = 0; i < n; ++i) {
      params.back()[static_cast<Eigen::Index>(i)] = static_cast<Scalar>(uniform(init));
      ref.tensors.back()[i].theta = params.back()[static_cast<Eigen::Index>(i)];
    }
  }
  const adamx::AdanOptions options = options_for(variant);
  adamx::Adan<Scalar> opt;
  opt.add_group({params[0], params[1], params[2]}, options, "layer", {"w0", "w1", "w2"});
  const naive_adan::Hyper hyper = hyper_from(options);
  const auto precision = naive_adan::Precision::of<Scalar>();

  reference::RegimeGradients source(regime, variant == Variant::skip_nonfinite, sizes);
  std::vector<std::vector<double>> g;
  std::vector<std::vector<Real>> g_ref(sizes.size());
  Real worst_trajectory = 0, worst_one_step = 0;
  for (int k = 1; k <= kSteps; ++k) {
    source.next(k, g);
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      g_ref[j].resize(sizes[j]);
      for (std::size_t i = 0; i < sizes[j]; ++i) {
        grads[j][static_cast<Eigen::Index>(i)] = static_cast<Scalar>(g[j][i]);
        g_ref[j][i] = grads[j][static_cast<Eigen::Index>(i)];  // exactly what the library sees
      }
    }
    // The one-step check restarts the reference from the library's state.
    naive_adan::Group restart;
    {
      const auto before = opt.state(0);
      restart.t = before.t;
      for (std::size_t j = 0; j < sizes.size(); ++j) {
        restart.tensors.emplace_back(sizes[j]);
        for (std::size_t i = 0; i < sizes[j]; ++i) {
          const auto at = static_cast<Eigen::Index>(i);
          naive_adan::Element& e = restart.tensors[j][i];
          e.theta = params[j][at];
          e.m = before.tensors[j].m[at];
          e.v = before.tensors[j].v[at];
          e.n = before.tensors[j].n[at];
          e.prev_grad = before.tensors[j].prev_grad[at];
        }
      }
    }
    const adamx::StepReport report = opt.step({{params[0], params[1], params[2]}},
                                              {{grads[0], grads[1], grads[2]}})[0];
    const bool applied = naive_adan::step(ref, hyper, g_ref, precision);
    ASSERT_EQ(naive_adan::step(restart, hyper, g_ref, precision), applied) << "step " << k;
    ASSERT_EQ(report.applied, applied) << "step " << k;
    const auto state = opt.state(0);
    ASSERT_EQ(state.t, ref.t) << "step " << k;
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      for (std::size_t i = 0; i < sizes[j]; ++i) {
        const auto at = static_cast<Eigen::Index>(i);
        const Real theta = params[j][at], m = state.tensors[j].m[at], v = state.tensors[j].v[at],
                   n = state.tensors[j].n[at], prev_grad = state.tensors[j].prev_grad[at];
        for (const naive_adan::Group* r : {&ref, &restart}) {
          Real& worst = r == &ref ? worst_trajectory : worst_one_step;
          const naive_adan::Element& e = r->tensors[j][i];
          std::string problem = compare("theta", theta, e.theta, e.err_theta, worst);
          if (problem.empty()) problem = compare("m", m, e.m, e.err_m, worst);
          if (problem.empty()) problem = compare("v", v, e.v, e.err_v, worst);
          if (problem.empty()) problem = compare("n", n, e.n, e.err_n, worst);
          if (problem.empty()) problem = compare("prev_grad", prev_grad, e.prev_grad, 0, worst);
          ASSERT_TRUE(problem.empty()) << "step " << k << (r == &ref ? ", trajectory" : ", one step")
                                       << ", tensor " << j << " element " << i << ": " << problem;
        }
      }
    }
  }
  // The bounds stay far below θ's scale, or the comparison could not fail:
  // each step adds a few roundings of |θ| ≤ 2 and of the update (≤ α times
  // a few), so 16 ulps of 1 per step is a ceiling the bounds reach only if
  // they are wrong.
  Real largest_bound = 0;
  for (const auto& tensor : ref.tensors)
    for (const auto& e : tensor) largest_bound = std::fmax(largest_bound, e.err_theta);
  EXPECT_LT(largest_bound, 16 * kSteps * precision.u);
  std::cout << "[ adan ] |lib-ref|/bound: trajectory " << static_cast<double>(worst_trajectory) << ", one step "
            << static_cast<double>(worst_one_step) << "; largest theta bound " << static_cast<double>(largest_bound)
            << "\n";
}

struct Case {
  Regime regime;
  Variant variant;
  bool is_double;
};

class AdanReference : public testing::TestWithParam<Case> {};

TEST_P(AdanReference, MatchesLongDoubleReferenceWithinRoundingBound) {
  if (GetParam().is_double) {
    run_case<double>(GetParam().regime, GetParam().variant);
  } else {
    run_case<float>(GetParam().regime, GetParam().variant);
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (bool is_double : {false, true}) {
    for (Regime r : {Regime::stationary, Regime::burst, Regime::decaying, Regime::mixed_scales,
                     Regime::zero_stretches})
      cases.push_back({r, Variant::defaults, is_double});
    for (Variant v : {Variant::decay, Variant::decay_no_prox, Variant::maximize, Variant::betas,
                      Variant::skip_nonfinite})
      cases.push_back({Regime::stationary, v, is_double});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllRegimesAndOptions, AdanReference, testing::ValuesIn(all_cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(name(info.param.regime)) + "_" + name(info.param.variant) +
                                  (info.param.is_double ? "_double" : "_float");
                         });

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
