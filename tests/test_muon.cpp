// Muon (rules/muon.hpp) against its independent long-double reference
// (tests/reference/naive_muon.hpp), its AdamW groups against the same
// reference's AdamW and bit for bit against adamx::AdamW, the Newton–Schulz
// output's singular values, and Muon's own behaviours: which tensors a
// group takes, options, checkpoints, the non-finite policies.
#include <gtest/gtest.h>

#include <Eigen/QR>
#include <Eigen/SVD>
#include <adamx/adamx.hpp>
#include <adamx/sharded_checkpoint.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "reference/naive_muon.hpp"
#include "temp_dir.hpp"

namespace {

using naive_muon::Real;

template <class T>
using MatrixOf = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using RowMajorOf = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using VectorOf = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// Gradient regimes, one per tensor: each element's value at step t, in long
// double, then rounded to the tensor's type (the reference steps with the
// rounded values).
enum class Regime { noise, large, tiny_then_zero, drift };
Real regime_value(Regime regime, std::mt19937_64& rng, long element, long t) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const Real z = normal(rng);
  switch (regime) {
    case Regime::noise: return z;
    case Regime::large: return 1e3L * z;
    case Regime::tiny_then_zero: return t % 20 < 5 ? 0.0L : 1e-6L * z;  // zero gradients for whole steps
    case Regime::drift: return (static_cast<Real>(element % 5) - 2) * std::exp(-static_cast<Real>(t) / 50) + 0.1L * z;
  }
  return 0;
}

template <class Scalar>
Real unit_roundoff() {
  return static_cast<Real>(std::numeric_limits<Scalar>::epsilon()) / 2;
}

// The Frobenius norm of a reference matrix or of the difference of two.
Real frobenius(const std::vector<Real>& a) {
  Real sum = 0;
  for (const Real e : a) sum += e * e;
  return std::sqrt(sum);
}

template <class Scalar>
class MuonReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MuonReference, Scalars);

struct Case {
  const char* name;
  naive_muon::Hyper muon;
  naive_muon::AdamWHyper adamw;
};

std::vector<Case> reference_cases() {
  std::vector<Case> cases;
  cases.push_back({"defaults", {}, {}});
  Case plain{"no_nesterov_match_rms_decay", {}, {}};
  plain.muon.nesterov = false;
  plain.muon.match_rms_adamw = true;
  plain.muon.weight_decay = 0.1L;
  plain.muon.lr = 0.01L;
  plain.adamw.weight_decay = 0.05L;
  plain.adamw.lr = 1e-3L;
  cases.push_back(plain);
  Case other{"low_momentum_three_steps_maximize", {}, {}};
  other.muon.momentum = 0.3L;  // 1 − μ ≥ 1/2: lerp from the other end
  other.muon.ns_steps = 3;
  other.muon.maximize = true;
  other.adamw.maximize = true;
  other.adamw.beta1 = 0.5L;
  other.adamw.beta2 = 0.99L;
  other.adamw.eps = 1e-6L;
  cases.push_back(other);
  return cases;
}

// 120 steps of a Muon optimizer with four matrices (6x4 and 4x7
// column-major, 5x3 and 3x6 row-major: tall and wide in both memory
// orders) in a Muon group and two vectors in an AdamW
// group, every tensor with its own gradient regime, against the reference.
TYPED_TEST(MuonReference, TrajectoriesStayWithinTheRoundingBound) {
  using Scalar = TypeParam;
  const Real eps = unit_roundoff<Scalar>();
  for (const Case& test : reference_cases()) {
    SCOPED_TRACE(test.name);
    std::mt19937_64 rng(7);
    std::normal_distribution<double> normal(0.0, 1.0);
    MatrixOf<Scalar> w0(6, 4), w1(4, 7), g0(6, 4), g1(4, 7);
    RowMajorOf<Scalar> w2(5, 3), g2(5, 3), w3(3, 6), g3(3, 6);
    VectorOf<Scalar> b0(5), b1(3), gb0(5), gb1(3);
    const auto fill = [&](auto& x) {
      for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<Scalar>(0.1 * normal(rng));
    };
    fill(w0), fill(w1), fill(w2), fill(w3), fill(b0), fill(b1);

    // The reference's copies, row by row.
    naive_muon::MuonMatrix ref[4];
    const auto load = [](const auto& x, naive_muon::MuonMatrix& m) {
      m.w = naive_muon::Matrix(x.rows(), x.cols());
      for (long i = 0; i < x.rows(); ++i)
        for (long j = 0; j < x.cols(); ++j) m.w(i, j) = static_cast<Real>(x(i, j));
    };
    load(w0, ref[0]), load(w1, ref[1]), load(w2, ref[2]), load(w3, ref[3]);
    naive_muon::AdamWVector ref_b[2];
    for (int k = 0; k < 2; ++k) {
      const VectorOf<Scalar>& b = k == 0 ? b0 : b1;
      for (Eigen::Index i = 0; i < b.size(); ++i) ref_b[k].theta.push_back(static_cast<Real>(b[i]));
    }

    adamx::MuonOptions muon;
    muon.lr = static_cast<double>(test.muon.lr);
    muon.momentum = static_cast<double>(test.muon.momentum);
    muon.nesterov = test.muon.nesterov;
    muon.weight_decay = static_cast<double>(test.muon.weight_decay);
    muon.adjust_lr = test.muon.match_rms_adamw ? adamx::MuonAdjustLr::match_rms_adamw : adamx::MuonAdjustLr::original;
    muon.ns_steps = test.muon.ns_steps;
    muon.maximize = test.muon.maximize;
    adamx::MuonOptions adamw = adamx::muon_adamw_options();
    adamw.lr = static_cast<double>(test.adamw.lr);
    adamw.beta1 = static_cast<double>(test.adamw.beta1);
    adamw.beta2 = static_cast<double>(test.adamw.beta2);
    adamw.eps = static_cast<double>(test.adamw.eps);
    adamw.weight_decay = static_cast<double>(test.adamw.weight_decay);
    adamw.maximize = test.adamw.maximize;
    adamx::Muon<Scalar> opt;
    opt.add_group({w0, w1, w2, w3}, muon, "matrices");
    opt.add_group({b0, b1}, adamw, "vectors");

    const Regime regimes[6] = {Regime::noise, Regime::large, Regime::tiny_then_zero, Regime::drift,
                               Regime::drift, Regime::large};
    naive_muon::MatrixBound bounds[4];
    Real worst_ratio = 0;
    std::mt19937_64 gradients(11);
    for (long t = 1; t <= 120; ++t) {
      // Gradients, rounded to Scalar, and the reference's copies.
      naive_muon::Matrix ref_g[4];
      const auto make = [&](auto& g, int k) {
        ref_g[k] = naive_muon::Matrix(g.rows(), g.cols());
        for (long i = 0; i < g.rows(); ++i)
          for (long j = 0; j < g.cols(); ++j) {
            g(i, j) = static_cast<Scalar>(regime_value(regimes[k], gradients, i * g.cols() + j, t));
            ref_g[k](i, j) = static_cast<Real>(g(i, j));
          }
      };
      make(g0, 0), make(g1, 1), make(g2, 2), make(g3, 3);
      std::vector<Real> ref_gb[2];
      for (int k = 0; k < 2; ++k) {
        VectorOf<Scalar>& g = k == 0 ? gb0 : gb1;
        for (Eigen::Index i = 0; i < g.size(); ++i) {
          g[i] = static_cast<Scalar>(regime_value(regimes[4 + k], gradients, i, t));
          ref_gb[k].push_back(static_cast<Real>(g[i]));
        }
      }
      opt.step({{w0, w1, w2, w3}, {b0, b1}}, {{g0, g1, g2, g3}, {gb0, gb1}});

      for (int k = 0; k < 4; ++k) {
        naive_muon::MuonMatrix& m = ref[k];
        m.step(test.muon, ref_g[k]);
        bounds[k].advance(test.muon, m, ref_g[k], eps);
        std::vector<Real> difference;
        const auto compare = [&](const auto& w) {
          for (long i = 0; i < w.rows(); ++i)
            for (long j = 0; j < w.cols(); ++j) difference.push_back(static_cast<Real>(w(i, j)) - m.w(i, j));
        };
        if (k == 0) compare(w0);
        if (k == 1) compare(w1);
        if (k == 2) compare(w2);
        if (k == 3) compare(w3);
        const Real ratio = frobenius(difference) / bounds[k].w_error;
        worst_ratio = std::max(worst_ratio, ratio);
        ASSERT_LE(ratio, 1) << "matrix " << k << " at step " << t;
      }
      for (int k = 0; k < 2; ++k) {
        ref_b[k].step(test.adamw, ref_gb[k]);
        const VectorOf<Scalar>& b = k == 0 ? b0 : b1;
        for (Eigen::Index i = 0; i < b.size(); ++i) {
          const std::size_t e = static_cast<std::size_t>(i);
          const Real bound = naive_muon::adamw_element_bound(test.adamw, ref_b[k], e, eps);
          ASSERT_LE(std::abs(static_cast<Real>(b[i]) - ref_b[k].theta[e]), bound) << "vector " << k << " step " << t;
        }
      }
    }
    std::cout << "  [" << test.name << "] largest difference / bound of the matrices: "
              << static_cast<double>(worst_ratio) << "\n";
  }
}

// The Newton–Schulz output's singular values lie where the coefficients
// put them, about [0.7, 1.2], for every singular value the five steps can
// reach: the normalised value σ/‖X‖_F must be at least about 0.7/3.4445^5
// (1.5e-3), because a small σ grows by at most a = 3.4445 per step. Smaller
// ones stay below 1.2 and are not mapped to 0. Random, tall and wide,
// ill-conditioned (σ spread over 1 to 1e-3) and rank-deficient matrices.
template <class Scalar>
void check_singular_values(const MatrixOf<Scalar>& g, const char* what) {
  SCOPED_TRACE(what);
  const MatrixOf<Scalar> x = adamx::newton_schulz(g);
  ASSERT_EQ(x.rows(), g.rows());
  ASSERT_EQ(x.cols(), g.cols());
  const MatrixOf<double> gd = g.template cast<double>();
  const Eigen::VectorXd in = Eigen::JacobiSVD<MatrixOf<double>>(gd).singularValues();
  const Eigen::VectorXd out = Eigen::JacobiSVD<MatrixOf<double>>(x.template cast<double>()).singularValues();
  const double norm = gd.norm();
  // Output singular values in the same (descending) order as the input's:
  // the iteration is a polynomial applied to each σ, increasing on [0, 0.6]
  // and mapping [0.6, 1] into [0.68, 1.2], so its order is the input's
  // among the small ones; compare sets by rank.
  for (Eigen::Index i = 0; i < in.size(); ++i) {
    const double normalised = in[i] / norm;
    EXPECT_LE(out[i], 1.21) << "singular value " << i << " of input " << normalised;
    if (normalised >= 1.5e-3) {
      EXPECT_GE(out[out.size() - 1 - (in.size() - 1 - i)], 0.0);
    }
  }
  Eigen::Index reachable = 0;
  for (Eigen::Index i = 0; i < in.size(); ++i)
    if (in[i] / norm >= 1.5e-3) ++reachable;
  // The `reachable` largest outputs are the reachable inputs' images.
  for (Eigen::Index i = 0; i < reachable; ++i) {
    EXPECT_GE(out[i], 0.68) << "singular value " << i;
    EXPECT_LE(out[i], 1.21) << "singular value " << i;
  }
  // Zero singular values (rank deficiency) stay zero, to rounding.
  for (Eigen::Index i = 0; i < in.size(); ++i)
    if (in[i] <= 1e-12 * norm) {
      EXPECT_LE(out[i], 1e-3) << "singular value " << i << " of a rank-deficient input";
    }
}

template <class Scalar>
MatrixOf<Scalar> with_singular_values(Eigen::Index rows, Eigen::Index cols, const Eigen::VectorXd& sigma,
                                      std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto random = [&](Eigen::Index r, Eigen::Index c) {
    MatrixOf<double> m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
  };
  const MatrixOf<double> u = Eigen::HouseholderQR<MatrixOf<double>>(random(rows, rows)).householderQ();
  const MatrixOf<double> v = Eigen::HouseholderQR<MatrixOf<double>>(random(cols, cols)).householderQ();
  MatrixOf<double> s = MatrixOf<double>::Zero(rows, cols);
  for (Eigen::Index i = 0; i < sigma.size(); ++i) s(i, i) = sigma[i];
  return (u * s * v.transpose()).template cast<Scalar>();
}

TYPED_TEST(MuonReference, NewtonSchulzSingularValuesLieInTheDesignedInterval) {
  using Scalar = TypeParam;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const auto& shape : {std::pair<Eigen::Index, Eigen::Index>{32, 32}, {48, 16}, {16, 48}, {64, 40}}) {
    MatrixOf<Scalar> g(shape.first, shape.second);
    for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = static_cast<Scalar>(normal(rng));
    check_singular_values(g, "random");
    const Eigen::Index k = std::min(shape.first, shape.second);
    Eigen::VectorXd spread(k), deficient = Eigen::VectorXd::Zero(k);
    for (Eigen::Index i = 0; i < k; ++i) spread[i] = std::pow(10.0, -3.0 * static_cast<double>(i) / static_cast<double>(k - 1));
    for (Eigen::Index i = 0; i < k / 2; ++i) deficient[i] = 1.0 + static_cast<double>(i);
    check_singular_values(with_singular_values<Scalar>(shape.first, shape.second, spread, rng), "ill-conditioned");
    check_singular_values(with_singular_values<Scalar>(shape.first, shape.second, deficient, rng), "rank-deficient");
  }
  // Against the long-double reference on one matrix, within its bound.
  MatrixOf<Scalar> g(12, 20);
  for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = static_cast<Scalar>(normal(rng));
  naive_muon::Matrix u(12, 20);
  for (long i = 0; i < 12; ++i)
    for (long j = 0; j < 20; ++j) u(i, j) = static_cast<Real>(g(i, j));
  const naive_muon::Matrix expected = naive_muon::newton_schulz(u, 5);
  const MatrixOf<Scalar> x = adamx::newton_schulz(g);
  std::vector<Real> difference;
  for (long i = 0; i < 12; ++i)
    for (long j = 0; j < 20; ++j) difference.push_back(static_cast<Real>(x(i, j)) - expected(i, j));
  const Real bound = naive_muon::newton_schulz_error_bound(u, 5, unit_roundoff<Scalar>(), 0);
  EXPECT_LE(frobenius(difference), bound);
  std::cout << "  Newton-Schulz 12x20: difference / bound " << static_cast<double>(frobenius(difference) / bound)
            << "\n";
}

// ---- behaviours -------------------------------------------------------------

// A Muon optimizer's AdamW group is adamx::AdamW with the same options, bit
// for bit: the same rule (rules/adam.hpp) through the same element pass.
TEST(Muon, AdamWGroupsAreAdamWBitForBit) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  VectorOf<float> a(37), b(37), g(37);
  for (Eigen::Index i = 0; i < a.size(); ++i) a[i] = b[i] = normal(rng);
  adamx::MuonOptions mo = adamx::muon_adamw_options();
  mo.weight_decay = 0.1;
  adamx::AdamWOptions ao;
  ao.lr = mo.lr;
  ao.set_betas(mo.beta1, mo.beta2);
  ao.eps = mo.eps;
  ao.weight_decay = mo.weight_decay;
  adamx::Muon<float> muon;
  adamx::AdamW<float> adamw;
  muon.add_group({a}, mo);
  adamw.add_group({b}, ao);
  for (int t = 0; t < 50; ++t) {
    for (Eigen::Index i = 0; i < g.size(); ++i) g[i] = normal(rng);
    muon.step({{a}}, {{g}});
    adamw.step({{b}}, {{g}});
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * 37)) << "step " << t;
  }
}

TEST(Muon, GroupsOfMatricesRefuseVectorsAndChangeNothing) {
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(4, 3);
  Eigen::VectorXf bias = Eigen::VectorXf::Random(4);
  Eigen::RowVectorXf row = Eigen::RowVectorXf::Random(5);
  adamx::Muon<float> opt;
  opt.add_group({w}, adamx::MuonOptions{}, "w");
  try {
    opt.add_group({bias}, adamx::MuonOptions{}, "fc", {"bias"});
    FAIL() << "a vector was accepted in a Muon group";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("group 'fc': tensor 'bias' is 4x1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("muon = false"), std::string::npos) << e.what();
  }
  EXPECT_THROW(opt.add_group({row}, adamx::MuonOptions{}), std::invalid_argument);
  EXPECT_EQ(opt.num_groups(), 1u);
  // Switching a group of vectors to Muon is refused the same way.
  opt.add_group({bias}, adamx::muon_adamw_options(), "b");
  EXPECT_THROW(opt.set(1, &adamx::MuonOptions::muon, true), std::invalid_argument);
  EXPECT_FALSE(opt.options(1).muon);
  // A state claiming Muon for a vector is refused by restore().
  auto states = opt.state();
  states[1].options.muon = true;
  EXPECT_THROW(opt.restore(states), std::invalid_argument);
  EXPECT_FALSE(opt.options(1).muon);
}

// A group of matrices may switch between AdamW and Muon: set_options
// allocates the slots and the Newton-Schulz workspace the new kind needs
// (and drops the others), and the next step is the new kind's first.
TEST(Muon, AGroupOfMatricesSwitchesBetweenAdamWAndMuon) {
  Eigen::MatrixXd w = Eigen::MatrixXd::Random(6, 9), g = Eigen::MatrixXd::Random(6, 9);
  adamx::Muon<double> opt;
  opt.add_group({w}, adamx::muon_adamw_options());
  opt.step({{w}}, {{g}});
  EXPECT_EQ(opt.state_view(0, 0).slot(adamx::rules::Muon::m).size(), 54);
  opt.set(0, &adamx::MuonOptions::muon, true);
  EXPECT_EQ(opt.state_view(0, 0).slot(adamx::rules::Muon::m).size(), 0);
  EXPECT_EQ(opt.state_view(0, 0).slot(adamx::rules::Muon::momentum_buffer).size(), 54);
  // From here on it is a Muon group: its next step equals a fresh Muon
  // group's first step from the same weights (the momentum starts at 0).
  adamx::MuonOptions muon = opt.options(0);
  Eigen::MatrixXd fresh_w = w;
  adamx::Muon<double> fresh;
  fresh.add_group({fresh_w}, muon);
  opt.step({{w}}, {{g}});
  fresh.step({{fresh_w}}, {{g}});
  EXPECT_EQ(0, std::memcmp(w.data(), fresh_w.data(), sizeof(double) * 54));
  opt.set(0, &adamx::MuonOptions::muon, false);
  opt.step({{w}}, {{g}});
  EXPECT_TRUE(w.allFinite());
}

TEST(Muon, OptionsAreValidated) {
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(4, 3);
  adamx::Muon<float> opt;
  for (const double steps : {0.0, 2.5, 101.0, std::nan("")}) {
    adamx::MuonOptions o;
    o.ns_steps = steps;
    EXPECT_THROW(opt.add_group({w}, o), std::invalid_argument) << steps;
  }
  adamx::MuonOptions o;
  o.momentum = 1.0;
  EXPECT_THROW(opt.add_group({w}, o), std::invalid_argument);
  o = adamx::MuonOptions{};
  o.adjust_lr = static_cast<adamx::MuonAdjustLr>(7);
  EXPECT_THROW(opt.add_group({w}, o), std::invalid_argument);
  EXPECT_EQ(opt.num_groups(), 0u);
  // The defaults are the authors'.
  const adamx::MuonOptions d;
  EXPECT_TRUE(d.muon);
  EXPECT_EQ(d.lr, 0.02);
  EXPECT_EQ(d.momentum, 0.95);
  EXPECT_TRUE(d.nesterov);
  EXPECT_EQ(d.weight_decay, 0.0);
  EXPECT_EQ(d.ns_steps, 5.0);
  EXPECT_EQ(d.adjust_lr, adamx::MuonAdjustLr::original);
  const adamx::MuonOptions a = adamx::muon_adamw_options();
  EXPECT_FALSE(a.muon);
  EXPECT_EQ(a.lr, 3e-4);
  EXPECT_EQ(a.beta1, 0.9);
  EXPECT_EQ(a.beta2, 0.95);
  EXPECT_EQ(a.eps, 1e-10);
}

// Exact: a zero gradient from a zero momentum leaves W as it was (X = 0,
// and θ·1 + (−lr·s)·0 = θ); with decay, only the decay moves it.
TEST(Muon, ZeroGradientLeavesTheWeightsToTheDecay) {
  Eigen::MatrixXd w = Eigen::MatrixXd::Random(5, 3), zero = Eigen::MatrixXd::Zero(5, 3);
  const Eigen::MatrixXd before = w;
  adamx::Muon<double> opt;
  opt.add_group({w}, adamx::MuonOptions{});
  opt.step({{w}}, {{zero}});
  EXPECT_EQ(0, std::memcmp(w.data(), before.data(), sizeof(double) * 15));
  adamx::MuonOptions decays;
  decays.weight_decay = 0.5;
  opt.set_options(0, decays);
  opt.step({{w}}, {{zero}});
  const Eigen::MatrixXd expected = before * (1.0 - 0.02 * 0.5);
  EXPECT_EQ(0, std::memcmp(w.data(), expected.data(), sizeof(double) * 15));
}

// A checkpoint taken mid-run and loaded into a fresh optimizer continues
// the run bit for bit; the momentum is the Muon group's one slot and m, v
// the AdamW group's.
TEST(Muon, CheckpointResumesBitForBit) {
  std::mt19937_64 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(6, 4), g(6, 4);
  Eigen::VectorXf b = Eigen::VectorXf::Random(6), gb(6);
  adamx::Muon<float> opt;
  opt.add_group({w}, adamx::MuonOptions{}, "w");
  opt.add_group({b}, adamx::muon_adamw_options(), "b");
  const auto gradients = [&] {
    for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = normal(rng);
    for (Eigen::Index i = 0; i < gb.size(); ++i) gb[i] = normal(rng);
  };
  for (int t = 0; t < 10; ++t) gradients(), opt.step({{w}, {b}}, {{g}, {gb}});
  std::stringstream saved;
  adamx::save_checkpoint(opt, saved);
  EXPECT_EQ(opt.state_view(0, 0).slot(adamx::rules::Muon::momentum_buffer).size(), 24);
  EXPECT_EQ(opt.state_view(0, 0).slot(adamx::rules::Muon::m).size(), 0);
  EXPECT_EQ(opt.state_view(1, 0).slot(adamx::rules::Muon::m).size(), 6);
  EXPECT_EQ(opt.state_view(1, 0).slot(adamx::rules::Muon::momentum_buffer).size(), 0);
  Eigen::MatrixXf w2 = w;
  Eigen::VectorXf b2 = b;
  adamx::Muon<float> resumed;
  resumed.add_group({w2}, adamx::MuonOptions{}, "w");
  resumed.add_group({b2}, adamx::muon_adamw_options(), "b");
  adamx::load_checkpoint(resumed, saved);
  for (int t = 0; t < 10; ++t) {
    gradients();
    opt.step({{w}, {b}}, {{g}, {gb}});
    resumed.step({{w2}, {b2}}, {{g}, {gb}});
  }
  EXPECT_EQ(0, std::memcmp(w.data(), w2.data(), sizeof(float) * 24));
  EXPECT_EQ(0, std::memcmp(b.data(), b2.data(), sizeof(float) * 6));
}

// A whole run (parameters, optimizer, a per-group schedule of the Muon
// group's lr, a counter) saved mid-run and loaded into fresh objects goes
// on bit for bit.
TEST(Muon, WholeRunResumesBitForBit) {
  std::mt19937_64 rng(13);
  std::normal_distribution<double> normal(0.0, 1.0);
  struct Run {
    Eigen::MatrixXd w = Eigen::MatrixXd::Constant(5, 7, 0.25);
    Eigen::VectorXd b = Eigen::VectorXd::Constant(5, -0.5);
    adamx::Muon<double> opt;
    adamx::StepLR schedule{0.02, 3, 0.5};
    std::int64_t step = 0;
    Run() {
      opt.add_group({w}, adamx::MuonOptions{}, "w");
      opt.add_group({b}, adamx::muon_adamw_options(), "b");
    }
    void advance(const Eigen::MatrixXd& g, const Eigen::VectorXd& gb) {
      schedule.apply(opt, 0);
      opt.step({{w}, {b}}, {{g}, {gb}});
      schedule.step();
      ++step;
    }
  };
  Eigen::MatrixXd g(5, 7);
  Eigen::VectorXd gb(5);
  const auto gradients = [&] {
    for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = normal(rng);
    for (Eigen::Index i = 0; i < gb.size(); ++i) gb[i] = normal(rng);
  };
  Run first;
  for (int t = 0; t < 7; ++t) gradients(), first.advance(g, gb);
  std::stringstream saved;
  adamx::save_run(first.opt, {{first.w}, {first.b}}, {{"lr", first.schedule}}, {{"step", first.step}}, saved);
  Run second;
  adamx::load_run(second.opt, {{second.w}, {second.b}}, {{"lr", second.schedule}}, {{"step", second.step}}, saved);
  EXPECT_EQ(second.step, 7);
  for (int t = 0; t < 7; ++t) {
    gradients();
    first.advance(g, gb);
    second.advance(g, gb);
  }
  EXPECT_EQ(0, std::memcmp(first.w.data(), second.w.data(), sizeof(double) * 35));
  EXPECT_EQ(0, std::memcmp(first.b.data(), second.b.data(), sizeof(double) * 5));
  EXPECT_EQ(first.opt.options(0).lr, second.opt.options(0).lr);
}

// bfloat16 parameters: the state and the Newton-Schulz products are float,
// and θ is rounded once when stored. So a step from bfloat16 θ and g is
// exactly the float step from the same values, rounded to bfloat16.
TEST(Muon, BFloat16StepIsTheFloatStepRoundedOnce) {
  using B = Eigen::bfloat16;
  std::mt19937_64 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Eigen::Matrix<B, Eigen::Dynamic, Eigen::Dynamic> w(6, 9), g(6, 9);
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = B(0.1f * normal(rng));
  Eigen::MatrixXf wf = w.cast<float>(), gf(6, 9);
  adamx::MuonOptions o;
  o.weight_decay = 0.1;
  adamx::Muon<B> low;
  adamx::Muon<float> high;
  low.add_group({w}, o);
  high.add_group({wf}, o);
  for (int t = 0; t < 20; ++t) {
    for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = B(normal(rng));
    gf = g.cast<float>();
    wf = w.cast<float>();  // the same θ: the float run's is not rounded to bfloat16
    low.step({{w}}, {{g}});
    high.step({{wf}}, {{gf}});
    const Eigen::Matrix<B, Eigen::Dynamic, Eigen::Dynamic> rounded = wf.cast<B>();
    ASSERT_EQ(0, std::memcmp(w.data(), rounded.data(), sizeof(B) * 54)) << "step " << t;
  }
}

// Muon has no sharded driver, so its checkpoint is not cut into shards:
// split_checkpoint refuses, writing nothing.
TEST(Muon, CheckpointIsNotSplitIntoShards) {
  adamx_test::TempDir dir;
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(4, 3), g = Eigen::MatrixXf::Random(4, 3);
  adamx::Muon<float> opt;
  opt.add_group({w});
  opt.step({{w}}, {{g}});
  const std::filesystem::path file = dir / "muon.ckpt";
  adamx::save_checkpoint(opt, file);
  try {
    adamx::split_checkpoint(file, dir / "shards", 2);
    FAIL() << "a Muon checkpoint was split";
  } catch (const adamx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("Muon's, which steps whole matrices"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir.files(), std::vector<std::string>{"muon.ckpt"});
}

// skip: a non-finite gradient changes nothing (W, B, t); error: throws,
// changing nothing; propagate: NaN reaches W.
TEST(Muon, NonFinitePolicies) {
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(4, 4), g = Eigen::MatrixXf::Random(4, 4);
  adamx::MuonOptions o;
  o.nonfinite = adamx::NonFinitePolicy::skip;
  adamx::Muon<float> opt;
  opt.add_group({w}, o);
  opt.step({{w}}, {{g}});
  const Eigen::MatrixXf before = w;
  const auto state = opt.state();
  g(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(opt.step({{w}}, {{g}})[0].applied);
  EXPECT_EQ(0, std::memcmp(w.data(), before.data(), sizeof(float) * 16));
  EXPECT_EQ(opt.step_count(0), 1);
  EXPECT_TRUE((opt.state()[0].tensors[0].momentum_buffer == state[0].tensors[0].momentum_buffer).all());
  opt.set_nonfinite(0, adamx::NonFinitePolicy::error);
  EXPECT_THROW(opt.step({{w}}, {{g}}), adamx::NonFiniteGradientError);
  EXPECT_EQ(0, std::memcmp(w.data(), before.data(), sizeof(float) * 16));
  opt.set_nonfinite(0, adamx::NonFinitePolicy::propagate);
  opt.step({{w}}, {{g}});
  EXPECT_TRUE(w.array().isNaN().any());
}

}  // namespace
