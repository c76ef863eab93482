// Exact invariants of AdamX (docs/design.md, D2–D4). Where the invariant is
// exact in floating point it is tested bitwise; where rounding enters, the
// tolerance is derived next to the check.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace {

template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
template <class Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

template <class Derived>
bool bitwise_equal(const Eigen::DenseBase<Derived>& a, const Eigen::DenseBase<Derived>& b) {
  using Scalar = typename Derived::Scalar;
  const auto& x = a.derived();
  const auto& y = b.derived();
  return x.size() == y.size() &&
         (x.size() == 0 ||  // an empty array's data() may be null, which memcmp must not see
          std::memcmp(x.data(), y.data(), sizeof(Scalar) * static_cast<std::size_t>(x.size())) == 0);
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Gradients whose noise level jumps ×100 for a stretch (exercises γ).
template <class Scalar>
class BurstGradients {
 public:
  explicit BurstGradients(unsigned seed) : rng_(seed) {}
  void fill(int step, Matrix<Scalar>& gw, Vector<Scalar>& gb) {
    const double scale = (step >= 100 && step < 200) ? 100.0 : 1.0;
    std::normal_distribution<double> normal(0.0, 1.0);
    for (Eigen::Index i = 0; i < gw.size(); ++i)
      gw.data()[i] = static_cast<Scalar>(scale * (0.3 + normal(rng_)));
    for (Eigen::Index i = 0; i < gb.size(); ++i)
      gb.data()[i] = static_cast<Scalar>(scale * (normal(rng_) - 0.2));
  }

 private:
  std::mt19937_64 rng_;
};

template <class Scalar>
class Invariants : public testing::Test {};
using ScalarTypes = testing::Types<float, double>;
TYPED_TEST_SUITE(Invariants, ScalarTypes);

// D4: AdamX with β3 = 1 keeps γ exactly 1, and (1 − β2)·1 is exactly the
// coefficient Adam uses, so θ, m, v agree bit for bit, with every option.
TYPED_TEST(Invariants, BetaThreeOneIsAdamBitwise) {
  using Scalar = TypeParam;
  struct Setting {
    bool amsgrad;
    adamx::WeightDecayMode mode;
    double decay;
  };
  for (const Setting setting : {Setting{false, adamx::WeightDecayMode::l2, 0.0},
                                Setting{true, adamx::WeightDecayMode::l2, 1e-2},
                                Setting{false, adamx::WeightDecayMode::decoupled, 1e-2}}) {
    Matrix<Scalar> w_adam = Matrix<Scalar>::Constant(17, 9, Scalar(0.5));
    Vector<Scalar> b_adam = Vector<Scalar>::LinSpaced(9, Scalar(-1), Scalar(1));
    Matrix<Scalar> w_x = w_adam;
    Vector<Scalar> b_x = b_adam;
    Matrix<Scalar> gw(17, 9);
    Vector<Scalar> gb(9);

    adamx::AdamOptions adam_options;
    adam_options.amsgrad = setting.amsgrad;
    adam_options.decay_mode = setting.mode;
    adam_options.weight_decay = setting.decay;
    adamx::AdamXOptions x_options;
    x_options.amsgrad = setting.amsgrad;
    x_options.decay_mode = setting.mode;
    x_options.weight_decay = setting.decay;
    x_options.beta3 = 1.0;

    adamx::Adam<Scalar> adam;
    adam.add_group({w_adam, b_adam}, adam_options);
    adamx::AdamX<Scalar> adamx_opt;
    adamx_opt.add_group({w_x, b_x}, x_options);
    BurstGradients<Scalar> source(7);
    for (int step = 1; step <= 1000; ++step) {
      source.fill(step, gw, gb);
      adam.step({{w_adam, b_adam}}, {{gw, gb}});
      const auto& report = adamx_opt.step({{w_x, b_x}}, {{gw, gb}});
      ASSERT_EQ(report[0].gamma, 1.0) << "step " << step;
    }
    EXPECT_TRUE(bitwise_equal(w_adam, w_x));
    EXPECT_TRUE(bitwise_equal(b_adam, b_x));
    for (std::size_t j = 0; j < 2; ++j) {
      const auto a = adam.state(0).tensors[j];
      const auto x = adamx_opt.state(0).tensors[j];
      EXPECT_TRUE(bitwise_equal(a.m, x.m));
      EXPECT_TRUE(bitwise_equal(a.v, x.v));
      EXPECT_TRUE(bitwise_equal(a.v_max, x.v_max));
    }
    // Adam tracks the same norm history, so h agrees too.
    EXPECT_TRUE(same_bits(adam.state(0).h, adamx_opt.state(0).h));
  }
}

// D2: step 1 includes s in the history before the ratio, so r₁ = 1 and γ₀ = 1
// is what both use: AdamX's first step is Adam's, bit for bit.
TYPED_TEST(Invariants, FirstStepOfAdamXIsAdamBitwise) {
  using Scalar = TypeParam;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  Matrix<Scalar> w_adam(31, 5), g(31, 5);
  for (Eigen::Index i = 0; i < w_adam.size(); ++i) {
    w_adam.data()[i] = static_cast<Scalar>(normal(rng));
    g.data()[i] = static_cast<Scalar>(1e-3 * normal(rng));
  }
  Matrix<Scalar> w_x = w_adam;
  adamx::Adam<Scalar> adam;
  adam.add_group({w_adam});
  adamx::AdamX<Scalar> adamx_opt;
  adamx_opt.add_group({w_x});
  adam.step({{w_adam}}, {{g}});
  const auto& report = adamx_opt.step({{w_x}}, {{g}});
  EXPECT_TRUE(bitwise_equal(w_adam, w_x));
  EXPECT_TRUE(bitwise_equal(adam.state(0).tensors[0].m, adamx_opt.state(0).tensors[0].m));
  EXPECT_TRUE(bitwise_equal(adam.state(0).tensors[0].v, adamx_opt.state(0).tensors[0].v));
  // r₁ = s/(h₁/(1−β_n)) = s/s up to two roundings of h₁ and ĥ₁: γ₁ is within
  // (1 − β3)·4u of 1.
  EXPECT_NEAR(report[0].gamma, 1.0, 0.01 * 4 * std::numeric_limits<double>::epsilon());
}

// D2: with s the same every step, ĥ_t = s exactly in real arithmetic, so r = 1
// and γ stays 1. Gradients here are sign flips and permutations of one
// vector: the squares are identical, only the summation order changes (a few
// ulps of double in s). Each step's r is then within ~4 double ulps of 1 and
// γ, a contraction towards r, stays within ~1e-15 of 1: the 1e-12 tolerance
// leaves three orders of magnitude of margin, while a real drift (e.g. an ε in
// the ratio or the history excluding the current step) moves γ by far more.
TYPED_TEST(Invariants, ConstantNormKeepsGammaAtOneOverTenThousandSteps) {
  using Scalar = TypeParam;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  const Eigen::Index n = 1000;
  Vector<Scalar> base(n), g(n), w = Vector<Scalar>::Zero(n);
  for (Eigen::Index i = 0; i < n; ++i) base[i] = static_cast<Scalar>(normal(rng));
  std::vector<Eigen::Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  std::bernoulli_distribution coin(0.5);

  adamx::AdamX<Scalar> opt;
  opt.add_group({w});
  double worst = 0.0;
  for (int step = 1; step <= 10000; ++step) {
    std::shuffle(order.begin(), order.end(), rng);
    for (Eigen::Index i = 0; i < n; ++i) {
      const Scalar x = base[order[static_cast<std::size_t>(i)]];
      g[i] = coin(rng) ? x : -x;
    }
    worst = std::max(worst, std::fabs(opt.step({{w}}, {{g}})[0].gamma - 1.0));
  }
  EXPECT_LE(worst, 1e-12);
}

// D2: r ≤ (1 − β_n^t)/(1 − β_n) < 1/(1 − β_n) and γ is a convex combination of
// r's, so 0 ≤ γ ≤ 1/(1 − β_n) at every step. Pushed to the edge: a long run of
// zero gradients (h decays towards 0) and then a burst, with β3 = 0 so γ = r.
TYPED_TEST(Invariants, GammaStaysWithinItsBound) {
  using Scalar = TypeParam;
  for (const double beta_norm : {0.5, 0.9, 0.99}) {
    for (const double beta3 : {0.0, 0.9, 0.99}) {
      adamx::AdamXOptions o;
      o.beta_norm = beta_norm;
      o.beta3 = beta3;
      Vector<Scalar> w = Vector<Scalar>::Zero(64), g(64);
      adamx::AdamX<Scalar> opt;
      opt.add_group({w}, o);
      const double bound = 1.0 / (1.0 - beta_norm);
      double highest = 0.0;
      std::mt19937_64 rng(5);
      std::normal_distribution<double> normal(0.0, 1.0);
      for (int step = 1; step <= 3000; ++step) {
        // Scales of 1, 0, 10^-6 and 10^6 in 100-step phases, then 2000 steps
        // of exact zeros (h decays to ~1e-9 of its value), then bursts.
        const double phases[] = {1.0, 0.0, 1e-6, 1e6, 1.0};
        double scale = 0.0;
        if (step <= 500) scale = phases[(step - 1) / 100];
        if (step > 2500) scale = ((step - 1) / 100) % 2 == 1 ? 1e6 : 1e-6;
        for (Eigen::Index i = 0; i < g.size(); ++i) g[i] = static_cast<Scalar>(scale * normal(rng));
        const double gamma = opt.step({{w}}, {{g}})[0].gamma;
        ASSERT_GE(gamma, 0.0) << "beta_norm " << beta_norm << " step " << step;
        ASSERT_LE(gamma, bound) << "beta_norm " << beta_norm << " step " << step;
        highest = std::max(highest, gamma);
      }
      // With β3 = 0 the first burst after the long zeros drives γ to within
      // 1% of the bound: the test reaches the edge it guards.
      if (beta3 == 0.0) {
        EXPECT_GT(highest, 0.99 * bound) << "beta_norm " << beta_norm;
      }
    }
  }
}

// D2/D3: r = s/ĥ is a ratio of squared norms, so multiplying every gradient
// by c leaves γ unchanged. By a power of two the scaling is exact in binary
// floating point, so γ must match bit for bit.
TYPED_TEST(Invariants, PowerOfTwoGradientScalingLeavesGammaBitwiseUnchanged) {
  using Scalar = TypeParam;
  for (const double scale : {std::ldexp(1.0, -20), std::ldexp(1.0, 20)}) {
    Matrix<Scalar> w1 = Matrix<Scalar>::Zero(40, 10), w2 = w1, g1(40, 10), g2(40, 10);
    Vector<Scalar> b1 = Vector<Scalar>::Zero(10), b2 = b1, gb1(10), gb2(10);
    adamx::AdamX<Scalar> reference, scaled;
    reference.add_group({w1, b1});
    scaled.add_group({w2, b2});
    BurstGradients<Scalar> source(21);
    for (int step = 1; step <= 1000; ++step) {
      source.fill(step, g1, gb1);
      g2 = g1 * static_cast<Scalar>(scale);
      gb2 = gb1 * static_cast<Scalar>(scale);
      const double gamma1 = reference.step({{w1, b1}}, {{g1, gb1}})[0].gamma;
      const double gamma2 = scaled.step({{w2, b2}}, {{g2, gb2}})[0].gamma;
      ASSERT_TRUE(same_bits(gamma1, gamma2)) << "scale " << scale << " step " << step << ": "
                                             << gamma1 << " vs " << gamma2;
    }
  }
}

// By 10^±6 the scaled gradients round (relative error ≤ u of Scalar each), so
// s and ĥ each change by at most ~2u relative and r by ~4u; γ, a weighted
// average of r's bounded by 1/(1 − β_n) = 100, then differs by at most
// 4u·100 (plus double-precision noise). We allow 8u·100: float ≈ 4.8e-5,
// double ≈ 8.9e-14 — "unchanged to rounding", orders of magnitude below the
// bursts' effect on γ (which moves it by O(1)).
TYPED_TEST(Invariants, DecimalGradientScalingLeavesGammaUnchangedToRounding) {
  using Scalar = TypeParam;
  const double tolerance = 8 * (std::numeric_limits<Scalar>::epsilon() / 2) * 100;
  for (const double scale : {1e-6, 1e6}) {
    Matrix<Scalar> w1 = Matrix<Scalar>::Zero(40, 10), w2 = w1, g1(40, 10), g2(40, 10);
    Vector<Scalar> b1 = Vector<Scalar>::Zero(10), b2 = b1, gb1(10), gb2(10);
    adamx::AdamX<Scalar> reference, scaled;
    reference.add_group({w1, b1});
    scaled.add_group({w2, b2});
    BurstGradients<Scalar> source(22);
    double worst = 0.0, moved = 0.0;
    for (int step = 1; step <= 1000; ++step) {
      source.fill(step, g1, gb1);
      for (Eigen::Index i = 0; i < g1.size(); ++i)
        g2.data()[i] = static_cast<Scalar>(static_cast<double>(g1.data()[i]) * scale);
      for (Eigen::Index i = 0; i < gb1.size(); ++i)
        gb2[i] = static_cast<Scalar>(static_cast<double>(gb1[i]) * scale);
      const double gamma1 = reference.step({{w1, b1}}, {{g1, gb1}})[0].gamma;
      const double gamma2 = scaled.step({{w2, b2}}, {{g2, gb2}})[0].gamma;
      worst = std::max(worst, std::fabs(gamma1 - gamma2));
      moved = std::max(moved, std::fabs(gamma1 - 1.0));
    }
    EXPECT_LE(worst, tolerance) << "scale " << scale;
    EXPECT_GT(moved, 0.5) << "the bursts must move γ, or the comparison proves nothing";
  }
}

// D5: a non-finite gradient leaves γ and h exactly as they were, under every
// policy; later finite steps continue from them.
TYPED_TEST(Invariants, NonFiniteGradientNeverChangesGammaOrHistory) {
  using Scalar = TypeParam;
  for (const auto policy : {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::skip}) {
    adamx::AdamXOptions o;
    o.nonfinite = policy;
    Matrix<Scalar> w = Matrix<Scalar>::Zero(40, 10), g(40, 10);
    Vector<Scalar> b = Vector<Scalar>::Zero(10), gb(10);
    adamx::AdamX<Scalar> opt;
    opt.add_group({w, b}, o);
    BurstGradients<Scalar> source(9);
    for (int step = 1; step <= 150; ++step) {
      source.fill(step, g, gb);
      opt.step({{w, b}}, {{g, gb}});
    }
    const double gamma = opt.state(0).gamma, h = opt.state(0).h;
    for (const Scalar bad : {std::numeric_limits<Scalar>::quiet_NaN(),
                             std::numeric_limits<Scalar>::infinity(),
                             -std::numeric_limits<Scalar>::infinity()}) {
      gb[3] = bad;
      const auto& report = opt.step({{w, b}}, {{g, gb}});
      EXPECT_FALSE(report[0].finite);
      EXPECT_TRUE(same_bits(opt.state(0).gamma, gamma));
      EXPECT_TRUE(same_bits(opt.state(0).h, h));
      EXPECT_TRUE(same_bits(report[0].gamma, gamma));
    }
  }
}

}  // namespace
