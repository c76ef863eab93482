// Lion against the independent long-double reference
// (tests/reference/naive_lion.hpp) over 600 steps, float and double, in five
// gradient regimes and with every option; and its exact behaviours: the
// first step is a sign step of exactly α, a tie (c = 0) leaves θ to the
// decay alone (sign(0) = 0, as torch.sign and jnp.sign give), a NaN reaches
// θ and m under propagate and changes nothing under skip.
//
// Tolerance: |library − reference| ≤ kSlack × bound, the bound being the
// reference's first-order rounding-error bound for each quantity (see the
// header); kSlack = 2 absorbs the second-order terms and the use of the
// reference's magnitudes for the library's, as in test_reference.cpp. Every
// sign is checked exactly except at near ties (|c| within the slack of its
// bound, where either sign is a correct rounding of the equations in the
// library's precision): there the reference follows the library's sign,
// and such elements must be rare (kMaxNearTieFraction).
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "reference/naive_lion.hpp"
#include "reference/reference_run.hpp"

namespace {

using naive_lion::Real;
// |c| ≤ 2·bound, the bound a few ulps of c's terms (|terms| ~ 1 here), has
// probability about 4·(a few u)·density(0) ≈ 1e-6 per element and step in
// float for these gradients (unit-scale normals): a run of 600 × 401 element
// steps sees about one. One in 10^4 is far above that and far below what a
// sign computed wrongly near 0 would produce.
constexpr double kMaxNearTieFraction = 1e-4;

using reference::name;
enum class Variant { defaults, decay, maximize, betas, skip_nonfinite };

const char* name(Variant v) {
  switch (v) {
    case Variant::defaults: return "defaults";
    case Variant::decay: return "decay";
    case Variant::maximize: return "maximize";
    case Variant::betas: return "betas";
    case Variant::skip_nonfinite: return "skip_nonfinite";
  }
  return "?";
}

// Lion's part of the reference run (reference/reference_run.hpp).
struct LionRun : reference::RunDefaults {
  using Variant = ::Variant;
  using Options = adamx::LionOptions;
  template <class Scalar>
  using Optimizer = adamx::Lion<Scalar>;
  using Group = naive_lion::Group;
  using Element = naive_lion::Element;
  using Hyper = naive_lion::Hyper;
  static constexpr const char* kLabel = "lion";
  static constexpr reference::Quantity<Element> kParam{"theta", &Element::theta, &Element::err_theta, -1};
  static constexpr reference::Quantity<Element> kSlots[] = {
      {"m", &Element::m, &Element::err_m, adamx::rules::Lion::m}};
  // |θ| ≤ 1.2 (600 steps of α = 3e-4 move it by at most 0.18): each step
  // adds at most about 5 roundings of |θ| (decay factor, product, sum), so 8
  // ulps of 1 per step is a ceiling the bounds reach only if they are wrong.
  static constexpr int kThetaBoundUlpsPerStep = 8;

  static Options options(Variant v) {
    adamx::LionOptions o;
    o.lr = 3e-4;
    switch (v) {
      case Variant::defaults: break;
      case Variant::decay: o.weight_decay = 1.0; break;  // λ·α = 3e-4: Lion's usual λ is 3–10× AdamW's
      case Variant::maximize: o.maximize = true; break;
      case Variant::betas: o.set_betas(0.95, 0.98); break;
      case Variant::skip_nonfinite: o.nonfinite = adamx::NonFinitePolicy::skip; break;
    }
    return o;
  }

  static Hyper hyper(const Options& o) {
    naive_lion::Hyper h;
    h.lr = o.lr;
    h.beta1 = o.beta1;
    h.beta2 = o.beta2;
    h.weight_decay = o.weight_decay;
    h.maximize = o.maximize;
    h.skip_nonfinite = o.nonfinite != adamx::NonFinitePolicy::propagate;
    return h;
  }

  // Every sign is checked exactly except at near ties (|c| within the slack
  // of its bound), where the reference takes the library's sign, read off
  // the library's θ after the step.
  static bool step(Group& group, const Hyper& hp, const std::vector<std::vector<Real>>& grads,
                   const reference::Precision& p, const std::vector<std::vector<Real>>& library_theta) {
    return naive_lion::step(group, hp, grads, p, reference::kSlack, &library_theta);
  }

  // Near ties, where the reference took the library's sign, are rare.
  static std::string after_run(const Group& ref, double element_steps) {
    EXPECT_LE(static_cast<double>(ref.near_ties), kMaxNearTieFraction * element_steps);
    return "; near ties " + std::to_string(ref.near_ties);
  }
};

using Case = reference::Case<Variant>;

class LionReference : public testing::TestWithParam<Case> {};

TEST_P(LionReference, MatchesLongDoubleReferenceWithinRoundingBound) { reference::run_case<LionRun>(GetParam()); }

INSTANTIATE_TEST_SUITE_P(AllRegimesAndOptions, LionReference,
                         testing::ValuesIn(reference::all_cases({Variant::decay, Variant::maximize, Variant::betas,
                                                                 Variant::skip_nonfinite})),
                         reference::case_name<Variant>);

TEST(Lion, DefaultsAreThePapers) {
  const adamx::LionOptions o;
  EXPECT_EQ(o.lr, 1e-4);
  EXPECT_EQ(o.beta1, 0.9);
  EXPECT_EQ(o.beta2, 0.99);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_FALSE(o.maximize);
  EXPECT_STREQ(adamx::Lion<float>::name(), "Lion");
}

// From m = 0, c = (1 − β1)·g has g's sign: θ moves by exactly the rounded
// −α times ±1, one rounding of the sum.
TEST(Lion, FirstStepIsASignStepOfAlpha) {
  Eigen::VectorXf x(4), g(4);
  x << 0.5f, -0.25f, 1.0f, 0.0f;
  g << 3.0f, -1e-20f, -7.5f, 2.0f;
  const Eigen::VectorXf before = x;
  adamx::Lion<float> opt;
  opt.add_group({x});
  opt.step({{x}}, {{g}});
  const float neg_lr = static_cast<float>(-1e-4);
  for (Eigen::Index i = 0; i < 4; ++i) {
    const float sign = g[i] > 0 ? 1.0f : -1.0f;
    EXPECT_EQ(x[i], before[i] + neg_lr * sign) << i;
  }
}

// An exact tie. With β1 = β2 = 1/2 every product is exact: step 1 with g = 1
// leaves m = 1/2; step 2 with g = −1/2 gives c = 1/4 − 1/4 = 0, so θ keeps
// its value bit for bit (and only decays when λ > 0), and m becomes 0.
TEST(Lion, ExactTieLeavesThetaToTheDecay) {
  for (const double decay : {0.0, 0.5}) {
    Eigen::VectorXd x(2);
    x << 0.75, -0.0;
    adamx::LionOptions o;
    o.set_betas(0.5, 0.5);
    o.weight_decay = decay;
    adamx::Lion<double> opt;
    opt.add_group({x}, o);
    const Eigen::VectorXd g1 = Eigen::VectorXd::Constant(2, 1.0);
    const Eigen::VectorXd g2 = Eigen::VectorXd::Constant(2, -0.5);
    opt.step({{x}}, {{g1}});
    const Eigen::VectorXd after_first = x;
    opt.step({{x}}, {{g2}});
    const double factor = 1.0 - o.lr * decay;
    for (Eigen::Index i = 0; i < 2; ++i) {
      const double expected = decay == 0.0 ? after_first[i] : after_first[i] * factor;
      EXPECT_EQ(std::memcmp(&x[i], &expected, sizeof(double)), 0) << "decay " << decay << ", element " << i;
    }
    EXPECT_EQ(opt.state(0).tensors[0].m[0], 0.0);
  }
  // A zero gradient on zero momentum: θ = −0 stays −0 (θ + (−α)·(+0) = θ).
  Eigen::VectorXf z = Eigen::VectorXf::Constant(1, -0.0f);
  const Eigen::VectorXf zero_grad = Eigen::VectorXf::Zero(1);
  adamx::Lion<float> opt;
  opt.add_group({z});
  opt.step({{z}}, {{zero_grad}});
  EXPECT_TRUE(std::signbit(z[0]));
  EXPECT_EQ(z[0], 0.0f);
}

TEST(Lion, NaNPropagatesOrSkipsTheGroup) {
  Eigen::VectorXf x = Eigen::VectorXf::Constant(3, 1.0f);
  Eigen::VectorXf g = Eigen::VectorXf::Constant(3, 0.5f);
  g[1] = std::nanf("");
  adamx::Lion<float> propagate;
  propagate.add_group({x});
  propagate.step({{x}}, {{g}});
  EXPECT_TRUE(std::isnan(x[1]));
  EXPECT_TRUE(std::isnan(propagate.state(0).tensors[0].m[1]));
  EXPECT_FALSE(std::isnan(x[0]));

  Eigen::VectorXf y = Eigen::VectorXf::Constant(3, 1.0f);
  adamx::LionOptions o;
  o.nonfinite = adamx::NonFinitePolicy::skip;
  adamx::Lion<float> skip;
  skip.add_group({y}, o);
  const auto before = skip.state();
  const adamx::StepReport report = skip.step({{y}}, {{g}})[0];
  EXPECT_FALSE(report.applied);
  EXPECT_EQ(skip.state(), before);
  EXPECT_EQ(y, Eigen::VectorXf::Constant(3, 1.0f));
}

}  // namespace
