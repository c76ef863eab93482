// The optimizer's public API: defaults, names, groups, the step() overloads,
// tensor kinds, option changes between steps, reports and the state struct.
// Most checks are bitwise comparisons between two ways of doing the same
// thing; the few that compare with a hand-computed value state their
// tolerance and why it is right.
#include "test_util.hpp"

#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using adamx_test::BitwiseEqual;
using adamx_test::same_bits;

// ---- defaults -------------------------------------------------------------------

TEST(Defaults, AdamOptionsMatchTorchOptimAdam) {
  const adamx::AdamOptions o;
  EXPECT_EQ(o.lr, 1e-3);
  EXPECT_EQ(o.beta1, 0.9);
  EXPECT_EQ(o.beta2, 0.999);
  EXPECT_EQ(o.eps, 1e-8);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_EQ(o.decay_mode, adamx::WeightDecayMode::l2);
  EXPECT_FALSE(o.amsgrad);
  EXPECT_FALSE(o.maximize);
  EXPECT_EQ(o.beta3, 1.0);  // γ fixed: plain Adam
  EXPECT_EQ(o.nonfinite, adamx::NonFinitePolicy::propagate);  // PyTorch lets NaN through
}

TEST(Defaults, AdamWOptionsMatchTorchOptimAdamW) {
  const adamx::AdamWOptions o;
  EXPECT_EQ(o.lr, 1e-3);
  EXPECT_EQ(o.beta1, 0.9);
  EXPECT_EQ(o.beta2, 0.999);
  EXPECT_EQ(o.eps, 1e-8);
  EXPECT_EQ(o.weight_decay, 1e-2);
  EXPECT_EQ(o.decay_mode, adamx::WeightDecayMode::decoupled);
  EXPECT_FALSE(o.amsgrad);
  EXPECT_FALSE(o.maximize);
  EXPECT_EQ(o.beta3, 1.0);
  EXPECT_EQ(o.nonfinite, adamx::NonFinitePolicy::propagate);
}

TEST(Defaults, AdamXOptionsAreAdamsPlusBeta3AndBetaNorm) {
  const adamx::AdamXOptions o;
  EXPECT_EQ(o.lr, 1e-3);
  EXPECT_EQ(o.beta1, 0.9);
  EXPECT_EQ(o.beta2, 0.999);
  EXPECT_EQ(o.eps, 1e-8);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_EQ(o.decay_mode, adamx::WeightDecayMode::l2);
  EXPECT_FALSE(o.amsgrad);
  EXPECT_FALSE(o.maximize);
  EXPECT_EQ(o.beta3, 0.99);
  EXPECT_EQ(o.beta_norm, 0.99);
  EXPECT_EQ(o.nonfinite, adamx::NonFinitePolicy::propagate);
}

TEST(Defaults, OptimizerNamesAreTheFlavourNames) {
  EXPECT_STREQ(adamx::Adam<float>::name(), "Adam");
  EXPECT_STREQ(adamx::AdamW<double>::name(), "AdamW");
  EXPECT_STREQ(adamx::AdamX<float>::name(), "AdamX");
}

// The option type is per flavour, so AdamX options cannot be handed to Adam.
static_assert(std::is_same<adamx::Adam<float>::Options, adamx::AdamOptions>::value, "");
static_assert(std::is_same<adamx::AdamW<double>::Options, adamx::AdamWOptions>::value, "");
static_assert(std::is_same<adamx::AdamX<float>::Options, adamx::AdamXOptions>::value, "");
static_assert(!std::is_convertible<adamx::AdamXOptions, adamx::AdamOptions>::value, "");

// ---- a typed fixture over every optimizer ------------------------------------------

template <class Opt>
class OptimizerTest : public ::testing::Test {
 protected:
  using S = typename Opt::scalar_type;
  using Options = typename Opt::Options;
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  using Arr = Eigen::Array<S, Eigen::Dynamic, 1>;
  using Arr2 = Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Tensor = adamx::TensorRef<S>;
  using ConstTensor = adamx::ConstTensorRef<S>;
  static constexpr bool kGammaFixed = adamx_test::kGammaFixed<Opt>;

  // Scale of the gradient at step k: varies over four decades, so AdamX's
  // γ moves away from 1.
  static double Scale(int k) {
    static const double scales[] = {1.0, 0.1, 10.0, 1.0, 1e-2, 3.0, 0.5, 100.0};
    return scales[k % 8];
  }

  static void ExpectSameReports(const adamx::StepReport& a, const adamx::StepReport& b) {
    EXPECT_EQ(a.step, b.step);
    EXPECT_TRUE(same_bits(a.grad_norm_sq, b.grad_norm_sq)) << a.grad_norm_sq << " vs " << b.grad_norm_sq;
    EXPECT_TRUE(same_bits(a.gamma, b.gamma)) << a.gamma << " vs " << b.gamma;
    EXPECT_EQ(a.finite, b.finite);
    EXPECT_EQ(a.applied, b.applied);
  }
};

// Adam's step rule is what these tests hold the optimizers to; the baselines'
// rules have their own tests (test_baselines.cpp, test_reference.cpp).
using AdamRuleOptimizers =
    ::testing::Types<adamx::Adam<float>, adamx::Adam<double>, adamx::AdamW<float>,
                     adamx::AdamW<double>, adamx::AdamX<float>, adamx::AdamX<double>>;
TYPED_TEST_SUITE(OptimizerTest, AdamRuleOptimizers, adamx_test::OptimizerName);

TYPED_TEST(OptimizerTest, DefaultOptionsAreValueInitialisedOptionsAndAddGroupUsesThem) {
  using Options = typename TestFixture::Options;
  EXPECT_TRUE(TypeParam::default_options() == Options{});
  typename TestFixture::Vec w = TestFixture::Vec::Zero(3);
  TypeParam opt;
  opt.add_group({w});
  EXPECT_TRUE(opt.options(0) == Options{});
  EXPECT_TRUE(opt.state(0).options == Options{});
}

TYPED_TEST(OptimizerTest, FreshGroupStateIsZeroWithGammaOne) {
  typename TestFixture::Mat w = TestFixture::Mat::Ones(2, 3);
  typename TestFixture::Vec b = TestFixture::Vec::Ones(3);
  TypeParam opt;
  typename TestFixture::Options amsgrad;
  amsgrad.amsgrad = true;
  opt.add_group({w});
  opt.add_group({b}, amsgrad);
  for (std::size_t g = 0; g < 2; ++g) {
    const auto& s = opt.state(g);
    EXPECT_EQ(s.t, 0);
    EXPECT_EQ(s.gamma, 1.0);
    EXPECT_EQ(s.h, 0.0);
    ASSERT_EQ(s.tensors.size(), 1u);
    const auto& ts = s.tensors[0];
    EXPECT_EQ(ts.m.size(), ts.size());
    EXPECT_EQ(ts.v.size(), ts.size());
    EXPECT_TRUE((ts.m == 0).all());
    EXPECT_TRUE((ts.v == 0).all());
    EXPECT_EQ(ts.v_max.size(), g == 1 ? ts.size() : 0);
    EXPECT_TRUE((ts.v_max == 0).all());
  }
  EXPECT_EQ(opt.state(0).tensors[0].rows, 2);
  EXPECT_EQ(opt.state(0).tensors[0].cols, 3);
  EXPECT_TRUE(opt.last_reports().size() == 2u);
}

// ---- names -------------------------------------------------------------------------------

TYPED_TEST(OptimizerTest, DefaultNamesAreGroupIndexAndTensorIndex) {
  typename TestFixture::Mat w = TestFixture::Mat::Zero(2, 2);
  typename TestFixture::Vec b = TestFixture::Vec::Zero(2);
  TypeParam opt;
  EXPECT_EQ(opt.add_group({w, b}), 0u);
  EXPECT_EQ(opt.add_group({b}), 1u);
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_EQ(opt.state(0).name, "group0");
  EXPECT_EQ(opt.state(1).name, "group1");
  EXPECT_EQ(opt.state(0).tensors[0].name, "tensor0");
  EXPECT_EQ(opt.state(0).tensors[1].name, "tensor1");
  EXPECT_EQ(opt.state(1).tensors[0].name, "tensor0");
}

TYPED_TEST(OptimizerTest, GroupIndexFindsGroupsByTheirNames) {
  typename TestFixture::Vec w = TestFixture::Vec::Zero(2);
  TypeParam opt;
  opt.add_group({w}, {}, "encoder", {"weight"});
  opt.add_group({w});  // default name "group1"
  opt.add_group({w, w}, {}, "decoder.head", {"weight", "bias"});
  EXPECT_EQ(opt.group_index("encoder"), 0u);
  EXPECT_EQ(opt.group_index("group1"), 1u);
  EXPECT_EQ(opt.group_index("decoder.head"), 2u);
  EXPECT_EQ(opt.state(2).tensors[1].name, "bias");
  EXPECT_THROW((void)opt.group_index("Encoder"), std::out_of_range);  // names are case-sensitive
}

// ---- several groups in one call -----------------------------------------------------------

// Three groups with very different options step together; each must end up
// bitwise as a single-group optimizer with the same options would.
TYPED_TEST(OptimizerTest, GroupsWithDifferentOptionsStepLikeSeparateOptimizers) {
  using T = TestFixture;
  using Options = typename T::Options;
  Options o0;  // the flavour's defaults
  Options o1;
  o1.lr = 3e-3;
  o1.set_betas(0.8, 0.99);
  o1.beta_norm = 0.95;
  o1.weight_decay = 1e-2;
  o1.decay_mode = adamx::WeightDecayMode::decoupled;
  o1.amsgrad = true;
  Options o2;
  o2.lr = 5e-4;
  o2.maximize = true;
  o2.weight_decay = 1e-3;
  o2.decay_mode = adamx::WeightDecayMode::l2;
  o2.eps = 1e-6;
  o2.beta_norm = 0.5;
  o2.nonfinite = adamx::NonFinitePolicy::skip;
  if (!T::kGammaFixed) {
    o1.beta3 = 0.9;
    o2.beta3 = 0.5;
  }
  typename T::Mat a = typename T::Mat(3, 4), ga = typename T::Mat(3, 4);
  typename T::Vec b = typename T::Vec(4), gb = typename T::Vec(4);
  typename T::RowMat c = typename T::RowMat(5, 3), gc = typename T::RowMat(5, 3);
  typename T::Vec d = typename T::Vec(7), gd = typename T::Vec(7);
  typename T::Arr2 e = typename T::Arr2(2, 2), ge = typename T::Arr2(2, 2);
  adamx_test::fill(a, 1);
  adamx_test::fill(b, 2);
  adamx_test::fill(c, 3);
  adamx_test::fill(d, 4);
  adamx_test::fill(e, 5);
  // The separate optimizers' parameters start as copies.
  auto a1 = a;
  auto b1 = b;
  auto c1 = c;
  auto d1 = d;
  auto e1 = e;

  TypeParam together;
  together.add_group({a, b}, o0, "g0");
  together.add_group({c}, o1, "g1");
  together.add_group({d, e}, o2, "g2");
  TypeParam alone0, alone1, alone2;
  alone0.add_group({a1, b1}, o0, "g0");
  alone1.add_group({c1}, o1, "g1");
  alone2.add_group({d1, e1}, o2, "g2");

  for (int k = 0; k < 8; ++k) {
    SCOPED_TRACE("step " + std::to_string(k + 1));
    adamx_test::fill(ga, 10 * k + 1, T::Scale(k));
    adamx_test::fill(gb, 10 * k + 2, T::Scale(k));
    adamx_test::fill(gc, 10 * k + 3, T::Scale(k + 3));
    adamx_test::fill(gd, 10 * k + 4, T::Scale(k + 5));
    adamx_test::fill(ge, 10 * k + 5, T::Scale(k + 5));
    const auto reports = together.step({{a, b}, {c}, {d, e}}, {{ga, gb}, {gc}, {gd, ge}});
    const auto r0 = alone0.step({{a1, b1}}, {{ga, gb}});
    const auto r1 = alone1.step({{c1}}, {{gc}});
    const auto r2 = alone2.step({{d1, e1}}, {{gd, ge}});
    ASSERT_EQ(reports.size(), 3u);
    T::ExpectSameReports(reports[0], r0[0]);
    T::ExpectSameReports(reports[1], r1[0]);
    T::ExpectSameReports(reports[2], r2[0]);
  }
  EXPECT_TRUE(together.state(0) == alone0.state(0));
  EXPECT_TRUE(together.state(1) == alone1.state(0));
  EXPECT_TRUE(together.state(2) == alone2.state(0));
  EXPECT_TRUE(BitwiseEqual(a, a1));
  EXPECT_TRUE(BitwiseEqual(b, b1));
  EXPECT_TRUE(BitwiseEqual(c, c1));
  EXPECT_TRUE(BitwiseEqual(d, d1));
  EXPECT_TRUE(BitwiseEqual(e, e1));
  if (!T::kGammaFixed) {
    EXPECT_NE(together.state(1).gamma, 1.0);  // γ did move: the test has teeth
  }
}

// ---- tensor kinds ------------------------------------------------------------------------

// One group holds an ArrayXX, a MatrixX, a row-major Matrix, a VectorX, a
// fixed-size 3x3 Matrix and a Map over a std::vector; another holds six
// VectorX with the same numbers in the same memory order, split the same way
// (s is summed in fixed blocks per tensor, so only the same split is
// guaranteed the same s). Both must agree bit for bit.
TYPED_TEST(OptimizerTest, EveryTensorKindStepsLikeTheSameNumbersAsVectors) {
  using T = TestFixture;
  using S = typename T::S;
  using Fixed = Eigen::Matrix<S, 3, 3>;
  using MapMat = Eigen::Map<typename T::Mat>;

  typename T::Arr2 p0 = typename T::Arr2(2, 3), g0 = typename T::Arr2(2, 3);
  typename T::Mat p1 = typename T::Mat(3, 4), g1 = typename T::Mat(3, 4);
  typename T::RowMat p2 = typename T::RowMat(2, 5), g2 = typename T::RowMat(2, 5);
  typename T::Vec p3 = typename T::Vec(7), g3 = typename T::Vec(7);
  Fixed p4, g4;
  std::vector<S> p5_storage(6), g5_storage(6);
  MapMat p5(p5_storage.data(), 2, 3), g5(g5_storage.data(), 2, 3);

  const Eigen::Index sizes[] = {6, 12, 10, 7, 9, 6};
  std::vector<typename T::Vec> q(6), gq(6);
  for (int j = 0; j < 6; ++j) {
    q[j].resize(sizes[j]);
    gq[j].resize(sizes[j]);
  }
  adamx_test::fill(p0, 1);
  adamx_test::fill(p1, 2);
  adamx_test::fill(p2, 3);
  adamx_test::fill(p3, 4);
  adamx_test::fill(p4, 5);
  adamx_test::fill(p5, 6);
  for (int j = 0; j < 6; ++j) adamx_test::fill(q[j], static_cast<std::uint64_t>(j + 1));

  typename T::Options o;
  o.weight_decay = 1e-2;  // so θ enters the update too (L2 or decoupled by flavour)
  TypeParam kinds, vectors;
  kinds.add_group({p0, p1, p2, p3, p4, p5}, o);
  vectors.add_group({q[0], q[1], q[2], q[3], q[4], q[5]}, o);

  for (int k = 0; k < 6; ++k) {
    const double scale = T::Scale(k);
    adamx_test::fill(g0, 100 * k + 1, scale);
    adamx_test::fill(g1, 100 * k + 2, scale);
    adamx_test::fill(g2, 100 * k + 3, scale);
    adamx_test::fill(g3, 100 * k + 4, scale);
    adamx_test::fill(g4, 100 * k + 5, scale);
    adamx_test::fill(g5, 100 * k + 6, scale);
    for (int j = 0; j < 6; ++j) adamx_test::fill(gq[j], static_cast<std::uint64_t>(100 * k + j + 1), scale);
    const auto a = kinds.step({{p0, p1, p2, p3, p4, p5}}, {{g0, g1, g2, g3, g4, g5}});
    const auto b = vectors.step({{q[0], q[1], q[2], q[3], q[4], q[5]}},
                                {{gq[0], gq[1], gq[2], gq[3], gq[4], gq[5]}});
    T::ExpectSameReports(a[0], b[0]);
  }
  EXPECT_TRUE(BitwiseEqual(p0, q[0]));
  EXPECT_TRUE(BitwiseEqual(p1, q[1]));
  EXPECT_TRUE(BitwiseEqual(p2, q[2]));
  EXPECT_TRUE(BitwiseEqual(p3, q[3]));
  EXPECT_TRUE(BitwiseEqual(p4, q[4]));
  EXPECT_TRUE(BitwiseEqual(p5, q[5]));
  const auto& x = kinds.state(0);
  const auto& y = vectors.state(0);
  EXPECT_EQ(x.t, y.t);
  EXPECT_TRUE(same_bits(x.gamma, y.gamma));
  EXPECT_TRUE(same_bits(x.h, y.h));
  for (std::size_t j = 0; j < 6; ++j) {
    SCOPED_TRACE("tensor " + std::to_string(j));
    EXPECT_TRUE(BitwiseEqual(x.tensors[j].m, y.tensors[j].m));
    EXPECT_TRUE(BitwiseEqual(x.tensors[j].v, y.tensors[j].v));
  }
  // The state records each tensor's own shape and order.
  EXPECT_EQ(x.tensors[2].rows, 2);
  EXPECT_EQ(x.tensors[2].cols, 5);
  EXPECT_TRUE(x.tensors[2].row_major);
  EXPECT_FALSE(x.tensors[1].row_major);
  EXPECT_EQ(x.tensors[4].size(), 9);
}

// ---- step overloads -----------------------------------------------------------------------

// The container overload (vectors built once by a training loop), the
// initializer-list overload and operator() in both forms are one algorithm.
TYPED_TEST(OptimizerTest, ContainerOverloadAndOperatorCallEqualInitializerListStep) {
  using T = TestFixture;
  typename T::Mat w[4];
  typename T::Vec b[4];
  typename T::Mat gw = typename T::Mat(4, 3);
  typename T::Vec gb = typename T::Vec(5);
  for (int i = 0; i < 4; ++i) {
    w[i].resize(4, 3);
    b[i].resize(5);
    adamx_test::fill(w[i], 1);
    adamx_test::fill(b[i], 2);
  }
  TypeParam opt[4];
  typename T::Options o;
  o.amsgrad = true;
  for (int i = 0; i < 4; ++i) {
    opt[i].add_group({w[i]}, {}, "w");
    opt[i].add_group({b[i]}, o, "b");
  }
  std::vector<std::vector<typename T::Tensor>> params = {{w[1]}, {b[1]}};
  std::vector<std::vector<typename T::ConstTensor>> grads = {{gw}, {gb}};
  std::vector<std::vector<typename T::Tensor>> params3 = {{w[3]}, {b[3]}};

  for (int k = 0; k < 5; ++k) {
    adamx_test::fill(gw, 7 * k + 1, T::Scale(k));
    adamx_test::fill(gb, 7 * k + 2, T::Scale(k + 1));
    const auto r0 = opt[0].step({{w[0]}, {b[0]}}, {{gw}, {gb}});
    const auto r1 = opt[1].step(params, grads);
    const auto r2 = opt[2]({{w[2]}, {b[2]}}, {{gw}, {gb}});
    const auto r3 = opt[3](params3, grads);
    for (std::size_t g = 0; g < 2; ++g) {
      T::ExpectSameReports(r0[g], r1[g]);
      T::ExpectSameReports(r0[g], r2[g]);
      T::ExpectSameReports(r0[g], r3[g]);
    }
  }
  for (int i = 1; i < 4; ++i) {
    SCOPED_TRACE("optimizer " + std::to_string(i));
    EXPECT_TRUE(opt[i].state() == opt[0].state());
    EXPECT_TRUE(BitwiseEqual(w[i], w[0]));
    EXPECT_TRUE(BitwiseEqual(b[i], b[0]));
  }
}

TYPED_TEST(OptimizerTest, StepReturnsTheSameReportsAsLastReports) {
  using T = TestFixture;
  // Two tensors: one tensor stepped in two groups would be refused (shared memory).
  typename T::Vec w1 = T::Vec::Ones(3), w2 = T::Vec::Ones(3), g = T::Vec::Constant(3, 0.5);
  TypeParam opt;
  opt.add_group({w1});
  opt.add_group({w2});
  const auto& reports = opt.step({{w1}, {w2}}, {{g}, {g}});
  EXPECT_EQ(&reports, &opt.last_reports());
  EXPECT_EQ(reports.size(), 2u);
}

// ---- learning rate changes ------------------------------------------------------------------

// Adam's first step, from m = v = 0 with bias correction, is exactly
//   Δθ = −lr · m̂/(sqrt(v̂) + eps) = −lr · g/(|g| + eps)
// (m̂ = g, sqrt(v̂) = |g|), i.e. −lr·sign(g) except where |g| is near eps.
// With θ0 = 0 (so weight decay of either kind has nothing to act on and the
// final θ + Δθ adds nothing) this holds for all three flavours (γ0 = 1).
//
// Tolerance: the library computes Δθ in Scalar with about a dozen
// correctly-rounded operations (the rounded 1−β1, m, (1−β2)γ·g·g, sqrt,
// sqrt(1−β2), the division, + eps, −lr/(1−β1), the product and the final
// division), each contributing at most u = ε/2 relative error; the sqrt
// halves the error of its input. The errors add to under 12u = 6ε, so 8ε
// relative is a bound, not a guess, and far below the effects pinned here
// (in double the eps term, 1e-8 relative for |g| = 1, is 2e7 ε).
template <class Opt>
void ExpectFirstStepIsMinusLrGOverAbsGPlusEps(double lr, bool all_groups_setter) {
  using S = typename Opt::scalar_type;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  const std::vector<double> gs = {1.0,  -1.0, 0.5,    -3.0, 1e-3, -1e-6, 1e-8,
                                  -2e-8, 1e3,  -1e-12, 7.25, 0.0,  -0.1};
  Vec g(static_cast<Eigen::Index>(gs.size()));
  for (std::size_t i = 0; i < gs.size(); ++i) g(static_cast<Eigen::Index>(i)) = static_cast<S>(gs[i]);
  Vec w = Vec::Zero(g.size());
  Vec other = Vec::Zero(2);
  Opt opt;
  opt.add_group({w});  // created with the default lr 1e-3
  opt.add_group({other});
  if (all_groups_setter) {
    opt.set_lr(lr);
    EXPECT_EQ(opt.options(1).lr, lr);
  } else {
    opt.set_lr(0, lr);
    EXPECT_EQ(opt.options(1).lr, 1e-3);  // the other group keeps its own
  }
  EXPECT_EQ(opt.options(0).lr, lr);
  const Vec g_other = Vec::Ones(2);
  opt.step({{w}, {other}}, {{g}, {g_other}});

  const long double eps = 1e-8L;
  const long double tolerance = 8.0L * std::numeric_limits<S>::epsilon();
  for (Eigen::Index i = 0; i < g.size(); ++i) {
    const long double gi = static_cast<long double>(g(i));  // the gradient as the library saw it
    const long double expected = -static_cast<long double>(lr) * gi / (std::fabs(gi) + eps);
    const long double got = static_cast<long double>(w(i));
    EXPECT_LE(std::fabs(got - expected), tolerance * std::fabs(expected))
        << "element " << i << ": g = " << gi << ", got " << got << ", expected " << expected;
  }
  // The other group moved by its own lr: 1e-3 unless set for all groups.
  const long double other_lr = all_groups_setter ? lr : 1e-3L;
  const long double expected_other = -other_lr / (1.0L + eps);
  EXPECT_LE(std::fabs(static_cast<long double>(other(0)) - expected_other),
            tolerance * std::fabs(expected_other));
}

TYPED_TEST(OptimizerTest, FirstStepMovesEachElementByMinusLrTimesGOverAbsGPlusEps) {
  ExpectFirstStepIsMinusLrGOverAbsGPlusEps<TypeParam>(1e-3, false);
}

TYPED_TEST(OptimizerTest, SetLrBeforeTheFirstStepTakesEffectOnThatStep) {
  ExpectFirstStepIsMinusLrGOverAbsGPlusEps<TypeParam>(0.25, false);
}

TYPED_TEST(OptimizerTest, AllGroupsSetLrBeforeTheFirstStepTakesEffectOnThatStep) {
  ExpectFirstStepIsMinusLrGOverAbsGPlusEps<TypeParam>(0.125, true);
}

// m, v, γ and h do not depend on lr (no L2 decay here), so an optimizer A
// run at lr a, switched to lr b, and then fed the same θ as an optimizer B
// that ran at lr b all along must produce exactly B's step.
TYPED_TEST(OptimizerTest, SetLrMidRunTakesEffectOnTheNextStep) {
  using T = TestFixture;
  typename T::Mat wa = typename T::Mat(3, 5), wb, g = typename T::Mat(3, 5);
  adamx_test::fill(wa, 1);
  wb = wa;
  typename T::Options oa, ob;
  oa.lr = 1e-3;
  ob.lr = 4e-2;
  ASSERT_FALSE(oa.weight_decay != 0.0 && oa.decay_mode == adamx::WeightDecayMode::l2);
  TypeParam a, b;
  a.add_group({wa}, oa);
  b.add_group({wb}, ob);
  for (int k = 0; k < 4; ++k) {
    adamx_test::fill(g, 50 + k, T::Scale(k));
    a.step({{wa}}, {{g}});
    b.step({{wb}}, {{g}});
  }
  adamx_test::fill(g, 60, 2.0);
  // Control: without the change, the same θ gives a different step.
  {
    TypeParam a_copy = a;
    typename T::Mat w1 = wa, w2 = wa;
    TypeParam b_copy = b;
    a_copy.step({{w1}}, {{g}});
    b_copy.step({{w2}}, {{g}});
    EXPECT_FALSE(BitwiseEqual(w1, w2));
  }
  a.set_lr(0, ob.lr);
  wb = wa;
  a.step({{wa}}, {{g}});
  b.step({{wb}}, {{g}});
  EXPECT_TRUE(BitwiseEqual(wa, wb));
  EXPECT_TRUE(a.state() == b.state());
}

// lr = 0 set mid-run: the next step moves nothing (−0·m/denominator is ±0,
// and θ(1 − 0·λ) = θ), while t, m and v advance as usual.
TYPED_TEST(OptimizerTest, SetLrToZeroMidRunFreezesParametersOnTheNextStep) {
  using T = TestFixture;
  typename T::Mat w = typename T::Mat(4, 4), g = typename T::Mat(4, 4);
  adamx_test::fill(w, 3);
  TypeParam opt;
  opt.add_group({w});
  for (int k = 0; k < 3; ++k) {
    adamx_test::fill(g, 70 + k, T::Scale(k));
    opt.step({{w}}, {{g}});
  }
  const typename T::Mat before = w;
  const auto state_before = opt.state(0);
  opt.set_lr(0, 0.0);
  adamx_test::fill(g, 80);
  opt.step({{w}}, {{g}});
  EXPECT_TRUE(BitwiseEqual(w, before));
  EXPECT_EQ(opt.state(0).t, state_before.t + 1);
  EXPECT_FALSE(BitwiseEqual(opt.state(0).tensors[0].m, state_before.tensors[0].m));
  // And back on: the step after that moves θ again.
  opt.set_lr(0, 1e-2);
  opt.step({{w}}, {{g}});
  EXPECT_FALSE(BitwiseEqual(w, before));
}

// ---- amsgrad switched mid-run -----------------------------------------------------------------

TYPED_TEST(OptimizerTest, SetAmsgradMidRunStartsVMaxAtZeroAndOffDropsIt) {
  using T = TestFixture;
  typename T::Mat w = typename T::Mat(3, 3), g = typename T::Mat(3, 3);
  typename T::Vec b = typename T::Vec(4), gb = typename T::Vec(4);
  adamx_test::fill(w, 1);
  adamx_test::fill(b, 2);
  TypeParam opt;
  opt.add_group({w, b});
  const auto step = [&](int k) {
    adamx_test::fill(g, 90 + k, T::Scale(k));
    adamx_test::fill(gb, 190 + k, T::Scale(k));
    return opt.step({{w, b}}, {{g, gb}});
  };
  for (int k = 0; k < 3; ++k) step(k);
  const auto before = opt.state(0);
  for (const auto& ts : before.tensors) EXPECT_EQ(ts.v_max.size(), 0);

  opt.set_amsgrad(0, true);
  EXPECT_TRUE(opt.options(0).amsgrad);
  for (std::size_t j = 0; j < 2; ++j) {
    const auto ts = opt.state(0).tensors[j];  // a copy: state() returns one
    ASSERT_EQ(ts.v_max.size(), ts.size());
    using Array = typename TypeParam::tensor_state_type::Array;
    const Array zeros = Array::Zero(ts.size());
    EXPECT_TRUE(BitwiseEqual(ts.v_max, zeros));  // +0, bitwise
    EXPECT_TRUE(BitwiseEqual(ts.m, before.tensors[j].m));
    EXPECT_TRUE(BitwiseEqual(ts.v, before.tensors[j].v));
  }
  EXPECT_EQ(opt.state(0).t, before.t);

  // The first step with v_max = 0 uses max(0, v) = v: exactly the step
  // without amsgrad, and v_max becomes v.
  TypeParam plain = opt;
  plain.set_amsgrad(0, false);
  typename T::Mat w_plain = w;
  typename T::Vec b_plain = b;
  step(3);
  plain.step({{w_plain, b_plain}}, {{g, gb}});
  EXPECT_TRUE(BitwiseEqual(w, w_plain));
  EXPECT_TRUE(BitwiseEqual(b, b_plain));
  for (std::size_t j = 0; j < 2; ++j)
    EXPECT_TRUE(BitwiseEqual(opt.state(0).tensors[j].v_max, opt.state(0).tensors[j].v));

  // Setting it on again keeps the running max (no reset).
  step(4);
  const auto with_max = opt.state(0);
  opt.set_amsgrad(0, true);
  EXPECT_TRUE(opt.state(0) == with_max);

  opt.set_amsgrad(0, false);
  EXPECT_FALSE(opt.options(0).amsgrad);
  for (std::size_t j = 0; j < 2; ++j) {
    EXPECT_EQ(opt.state(0).tensors[j].v_max.size(), 0);
    EXPECT_TRUE(BitwiseEqual(opt.state(0).tensors[j].v, with_max.tensors[j].v));
  }
  // On again: a fresh AMSGrad start, zeros.
  opt.set_amsgrad(0, true);
  for (std::size_t j = 0; j < 2; ++j) EXPECT_TRUE((opt.state(0).tensors[j].v_max == 0).all());
  // The set_options route does the same as the typed setter.
  auto o = opt.options(0);
  o.amsgrad = false;
  opt.set_options(0, o);
  EXPECT_EQ(opt.state(0).tensors[0].v_max.size(), 0);
}

// Each typed setter changes its own field and nothing else.
TYPED_TEST(OptimizerTest, TypedSettersChangeOnlyTheirField) {
  using T = TestFixture;
  typename T::Vec w = T::Vec::Zero(2);
  TypeParam opt;
  opt.add_group({w});
  opt.add_group({w});
  auto expect = opt.options(0);
  const auto untouched = opt.options(1);
  const auto check = [&](const char* what) {
    SCOPED_TRACE(what);
    EXPECT_TRUE(opt.options(0) == expect);
    EXPECT_TRUE(opt.options(1) == untouched);
  };
  opt.set_lr(0, 0.5);
  expect.lr = 0.5;
  check("set_lr");
  opt.set_betas(0, 0.5, 0.75);
  expect.beta1 = 0.5;
  expect.beta2 = 0.75;
  check("set_betas");
  opt.set_beta3(0, 1.0);
  expect.beta3 = 1.0;
  check("set_beta3");
  opt.set_beta_norm(0, 0.25);
  expect.beta_norm = 0.25;
  check("set_beta_norm");
  opt.set_eps(0, 1e-4);
  expect.eps = 1e-4;
  check("set_eps");
  opt.set_weight_decay(0, 0.125);
  expect.weight_decay = 0.125;
  check("set_weight_decay");
  opt.set_decay_mode(0, adamx::WeightDecayMode::decoupled);
  expect.decay_mode = adamx::WeightDecayMode::decoupled;
  check("set_decay_mode");
  opt.set_amsgrad(0, true);
  expect.amsgrad = true;
  check("set_amsgrad");
  opt.set_maximize(0, true);
  expect.maximize = true;
  check("set_maximize");
  opt.set_nonfinite(0, adamx::NonFinitePolicy::error);
  expect.nonfinite = adamx::NonFinitePolicy::error;
  check("set_nonfinite");
}

// ---- reports -------------------------------------------------------------------------------------

// s = Σ g² in the report, against an independent long double sum. Group 0
// has more than one summation block (4096 elements) plus a small tensor;
// group 1 maximizes (sign flips do not change s).
//
// Tolerance: float squares are exact in double (24-bit mantissas give 48-bit
// products) and double squares are rounded once; the library then adds n
// non-negative terms in double in some order. Any order of summing n
// non-negative terms has relative error at most (n−1)u_d (u_d = 2^-53), and
// the squares add u_d more, so n·ε_d relative (ε_d = 2u_d) bounds it.
TYPED_TEST(OptimizerTest, ReportsGiveStepGradNormSqAndGamma) {
  using T = TestFixture;
  typename T::Vec big = typename T::Vec(10000), gbig = typename T::Vec(10000);
  typename T::Mat small = typename T::Mat(3, 4), gsmall = typename T::Mat(3, 4);
  typename T::Vec x = typename T::Vec(33), gx = typename T::Vec(33);
  adamx_test::fill(big, 1);
  adamx_test::fill(small, 2);
  adamx_test::fill(x, 3);
  typename T::Options maximize;
  maximize.maximize = true;
  TypeParam opt;
  opt.add_group({big, small});
  opt.add_group({x}, maximize);
  const auto sum_sq = [](const auto& t) {
    long double s = 0.0L;
    for (Eigen::Index i = 0; i < t.size(); ++i) {
      const long double v = static_cast<long double>(t.data()[i]);
      s += v * v;
    }
    return s;
  };
  for (int k = 0; k < 6; ++k) {
    SCOPED_TRACE("step " + std::to_string(k + 1));
    adamx_test::fill(gbig, 300 + k, T::Scale(k));
    adamx_test::fill(gsmall, 400 + k, T::Scale(k + 2));
    adamx_test::fill(gx, 500 + k, T::Scale(k + 4));
    const auto& reports = opt.step({{big, small}, {x}}, {{gbig, gsmall}, {gx}});
    ASSERT_EQ(reports.size(), 2u);
    const long double expected[2] = {sum_sq(gbig) + sum_sq(gsmall), sum_sq(gx)};
    const long double n[2] = {10012.0L, 33.0L};
    for (std::size_t g = 0; g < 2; ++g) {
      SCOPED_TRACE("group " + std::to_string(g));
      EXPECT_EQ(reports[g].step, k + 1);
      EXPECT_EQ(reports[g].step, opt.state(g).t);
      EXPECT_TRUE(reports[g].finite);
      EXPECT_TRUE(reports[g].applied);
      const long double tolerance = n[g] * std::numeric_limits<double>::epsilon() * expected[g];
      EXPECT_LE(std::fabs(static_cast<long double>(reports[g].grad_norm_sq) - expected[g]), tolerance)
          << "s = " << reports[g].grad_norm_sq << ", expected " << static_cast<double>(expected[g]);
      EXPECT_TRUE(same_bits(reports[g].gamma, opt.state(g).gamma));
    }
  }
  if (!T::kGammaFixed) {
    EXPECT_NE(opt.state(0).gamma, 1.0);
  }
}

// ---- Adam's γ -------------------------------------------------------------------------------------

// Adam and AdamW are AdamX with β3 = 1: γ stays exactly 1 however the
// gradient norm moves (h still tracks the norm). AdamX, the control, moves.
TYPED_TEST(OptimizerTest, GammaIsExactlyOneAfterManyStepsIffTheFlavourFixesIt) {
  using T = TestFixture;
  typename T::Vec w = typename T::Vec(16), g = typename T::Vec(16);
  adamx_test::fill(w, 1);
  TypeParam opt;
  opt.add_group({w});
  bool always_one = true;
  for (int k = 0; k < 300; ++k) {
    adamx_test::fill(g, 1000 + k, std::pow(10.0, (k * 7) % 9 - 4));  // 1e-4 .. 1e4
    const auto& reports = opt.step({{w}}, {{g}});
    always_one = always_one && reports[0].gamma == 1.0 && opt.state(0).gamma == 1.0;
  }
  EXPECT_GT(opt.state(0).h, 0.0);
  EXPECT_EQ(opt.state(0).t, 300);
  EXPECT_EQ(always_one, T::kGammaFixed);
}

// ---- zero-size tensors -------------------------------------------------------------------------------

// Empty tensors (an empty VectorX has a null data pointer) are fine in a
// group and change nothing about its other tensors.
TYPED_TEST(OptimizerTest, ZeroSizeTensorsInAGroupAreHarmless) {
  using T = TestFixture;
  typename T::Vec e0, ge0;  // 0 elements, data() == nullptr
  typename T::Mat e1 = typename T::Mat(0, 3), ge1 = typename T::Mat(0, 3);
  typename T::Arr2 e2 = typename T::Arr2(4, 0), ge2 = typename T::Arr2(4, 0);
  typename T::Mat w = typename T::Mat(3, 4), g = typename T::Mat(3, 4);
  adamx_test::fill(w, 1);
  typename T::Mat w_alone = w;

  TypeParam with_empty, alone;
  with_empty.add_group({e0, w, e1, e2});
  alone.add_group({w_alone});
  TypeParam only_empty;
  only_empty.add_group({e0, e1});
  for (int k = 0; k < 5; ++k) {
    adamx_test::fill(g, 600 + k, T::Scale(k));
    const auto a = with_empty.step({{e0, w, e1, e2}}, {{ge0, g, ge1, ge2}});
    const auto b = alone.step({{w_alone}}, {{g}});
    T::ExpectSameReports(a[0], b[0]);
    const auto& c = only_empty.step({{e0, e1}}, {{ge0, ge1}});
    EXPECT_EQ(c[0].step, k + 1);
    EXPECT_EQ(c[0].grad_norm_sq, 0.0);
    EXPECT_TRUE(c[0].finite);
    EXPECT_TRUE(c[0].applied);
  }
  EXPECT_TRUE(BitwiseEqual(w, w_alone));
  const auto& s = with_empty.state(0);
  // (tensor1 there, tensor0 here: compare the data, not the names)
  EXPECT_TRUE(BitwiseEqual(s.tensors[1].m, alone.state(0).tensors[0].m));
  EXPECT_TRUE(BitwiseEqual(s.tensors[1].v, alone.state(0).tensors[0].v));
  EXPECT_TRUE(same_bits(s.gamma, alone.state(0).gamma));
  EXPECT_TRUE(same_bits(s.h, alone.state(0).h));
  EXPECT_EQ(s.tensors[0].m.size(), 0);
  EXPECT_EQ(s.tensors[2].rows, 0);
  EXPECT_EQ(s.tensors[2].cols, 3);
  EXPECT_TRUE(std::isfinite(only_empty.state(0).gamma));
}

// ---- the state struct ---------------------------------------------------------------------------------

TYPED_TEST(OptimizerTest, StateIsAPlainCopyableStructComparedBitwise) {
  using T = TestFixture;
  using State = typename TypeParam::State;
  static_assert(std::is_copy_constructible<State>::value && std::is_copy_assignable<State>::value, "");
  static_assert(std::is_aggregate<State>::value, "GroupState is a plain struct");
  static_assert(std::is_aggregate<typename TypeParam::tensor_state_type>::value, "TensorState is a plain struct");
  static_assert(std::is_same<decltype(std::declval<const TypeParam&>().state()), std::vector<State>>::value,
                "state() returns a copy built from the flat storage");

  typename T::Mat w = typename T::Mat(3, 2), g = typename T::Mat(3, 2);
  adamx_test::fill(w, 1);
  typename T::Options o;
  o.amsgrad = true;
  TypeParam opt;
  opt.add_group({w}, o, "layer", {"weight"});
  for (int k = 0; k < 3; ++k) {
    adamx_test::fill(g, 700 + k, T::Scale(k));
    opt.step({{w}}, {{g}});
  }
  std::vector<State> copy = opt.state();
  EXPECT_TRUE(copy == opt.state());
  EXPECT_TRUE(copy[0] == opt.state(0));
  State assigned;
  assigned = opt.state(0);
  EXPECT_TRUE(assigned == copy[0]);

  // A copy is independent: changing it does not touch the optimizer, and
  // any one-bit change is seen.
  copy[0].tensors[0].m(1) = std::nextafter(copy[0].tensors[0].m(1), typename T::S(1));
  EXPECT_FALSE(copy[0] == opt.state(0));
  EXPECT_TRUE(copy[0] != opt.state(0));
  State other = opt.state(0);
  other.h = std::nextafter(other.h, 1e300);
  EXPECT_FALSE(other == opt.state(0));
  other = opt.state(0);
  other.tensors[0].v_max(0) = -other.tensors[0].v_max(0) - typename T::S(1);
  EXPECT_FALSE(other == opt.state(0));
  other = opt.state(0);
  other.t += 1;
  EXPECT_FALSE(other == opt.state(0));
  other = opt.state(0);
  other.options.eps *= 2;
  EXPECT_FALSE(other == opt.state(0));
  other = opt.state(0);
  other.tensors[0].name = "bias";
  EXPECT_FALSE(other == opt.state(0));
  // Bitwise: +0 and −0 differ, the same NaN equals itself.
  other = opt.state(0);
  other.h = 0.0;
  State negative_zero = other;
  negative_zero.h = -0.0;
  EXPECT_FALSE(other == negative_zero);
  other.gamma = std::numeric_limits<double>::quiet_NaN();
  State same_nan = other;
  EXPECT_TRUE(other == same_nan);

  // The optimizer itself is copyable and the copy continues identically.
  TypeParam twin = opt;
  typename T::Mat w_twin = w;
  adamx_test::fill(g, 800);
  opt.step({{w}}, {{g}});
  twin.step({{w_twin}}, {{g}});
  EXPECT_TRUE(opt.state() == twin.state());
  EXPECT_TRUE(BitwiseEqual(w, w_twin));
}

// A view whose inner dimension has length 1 never uses its inner stride, so
// a 1x3 column-major Map with outer stride 1 is contiguous whatever inner
// stride it declares; it must be accepted and step like a plain vector.
TEST(TensorViews, UnitInnerDimensionIgnoresItsStride) {
  std::vector<float> memory = {1.0f, 2.0f, 3.0f};
  Eigen::Map<Eigen::MatrixXf, 0, Eigen::Stride<1, 5>> row(memory.data(), 1, 3);
  Eigen::VectorXf plain = Eigen::Map<Eigen::VectorXf>(memory.data(), 3);
  const Eigen::MatrixXf grad_row = Eigen::MatrixXf::Constant(1, 3, 0.5f);
  const Eigen::VectorXf grad_plain = Eigen::VectorXf::Constant(3, 0.5f);
  adamx::AdamX<float> a, b;
  a.add_group({row});
  b.add_group({plain});
  a.step({{row}}, {{grad_row}});
  b.step({{plain}}, {{grad_plain}});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(memory[static_cast<std::size_t>(i)], plain[i]);
}

}  // namespace
