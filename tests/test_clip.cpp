// Gradient clipping (include/adamx/clip.hpp): global norm of every order,
// PyTorch's 1e-6 semantics, the non-finite rule, and clipping by value.
// (tests/test_parity_clip.cpp compares with PyTorch's own results.)
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace {

template <class Scalar>
class Clip : public testing::Test {};
using ScalarTypes = testing::Types<float, double>;
TYPED_TEST_SUITE(Clip, ScalarTypes);

template <class Scalar>
long double norm_of(const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>& a,
                    const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& b) {
  long double s = 0;
  for (Eigen::Index i = 0; i < a.size(); ++i) s += static_cast<long double>(a[i]) * a[i];
  for (Eigen::Index i = 0; i < b.size(); ++i) s += static_cast<long double>(b.data()[i]) * b.data()[i];
  return std::sqrt(s);
}

// The returned norm is s summed in double (a few hundred terms) and one sqrt:
// relative error well below 1e-13, checked against long double with 1e-12.
TYPED_TEST(Clip, BelowTheLimitReturnsTheNormAndChangesNothing) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::LinSpaced(50, -1, 2);
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> b =
      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>::Constant(7, 9, Scalar(0.25));
  const auto a0 = a;
  const auto b0 = b;
  const long double expected = norm_of(a, b);
  const double norm = adamx::clip_grad_norm<Scalar>({{a}, {b}}, 1e3);
  EXPECT_NEAR(norm, static_cast<double>(expected), 1e-12 * static_cast<double>(expected));
  EXPECT_TRUE((a.array() == a0.array()).all());
  EXPECT_TRUE((b.array() == b0.array()).all());
}

// Above the limit every element is scaled by max/(norm + 1e-6) (rounded to
// Scalar once, then one product per element): the new norm is within a few
// Scalar ulps (8u) of max·norm/(norm + 1e-6).
TYPED_TEST(Clip, AboveTheLimitScalesEveryGroupToTheLimit) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::LinSpaced(50, -1, 2);
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> b =
      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>::Constant(7, 9, Scalar(0.25));
  const long double before = norm_of(a, b);
  std::vector<std::vector<adamx::TensorRef<Scalar>>> grads{{a}, {b}};
  const double norm = adamx::clip_grad_norm(grads, 2.0);
  EXPECT_NEAR(norm, static_cast<double>(before), 1e-12 * static_cast<double>(before));
  const long double target = 2.0L * before / (before + 1e-6L);
  const long double u = std::numeric_limits<Scalar>::epsilon() / 2;
  EXPECT_NEAR(static_cast<double>(norm_of(a, b)), static_cast<double>(target),
              static_cast<double>(8 * u * target));
}

TYPED_TEST(Clip, NonFiniteNormIsReturnedAndNothingChanges) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::Ones(5);
  a[2] = std::numeric_limits<Scalar>::quiet_NaN();
  const double norm = adamx::clip_grad_norm<Scalar>({{a}}, 1.0);
  EXPECT_TRUE(std::isnan(norm));
  EXPECT_EQ(a[0], Scalar(1));
  EXPECT_EQ(a[4], Scalar(1));
}

TYPED_TEST(Clip, InvalidLimitThrowsAndChangesNothing) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::Constant(5, 3);
  for (const double bad : {-1.0, std::numeric_limits<double>::quiet_NaN()}) {
    try {
      adamx::clip_grad_norm<Scalar>({{a}}, bad);
      FAIL() << "no exception for max_norm " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("max_norm"), std::string::npos) << e.what();
    }
    EXPECT_TRUE((a.array() == Scalar(3)).all());
  }
}

// norm_type ∞, 1 and 3 against long double; the sums run in double over 113
// terms, relative error ≤ 113·2^-53 plus a pow: 1e-12 is ample.
TYPED_TEST(Clip, EveryNormTypeMatchesALongDoubleReference) {
  using Scalar = TypeParam;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  for (const double p : {std::numeric_limits<double>::infinity(), 1.0, 3.0, 0.5}) {
    Vector a = Vector::LinSpaced(50, -1, 2);
    Vector b = Vector::LinSpaced(63, 3, -4);
    long double expected = 0;
    for (const Vector* v : {&a, &b})
      for (Eigen::Index i = 0; i < v->size(); ++i) {
        const long double x = std::fabs(static_cast<long double>((*v)[i]));
        expected = std::isinf(p) ? std::max(expected, x) : expected + std::pow(x, static_cast<long double>(p));
      }
    if (!std::isinf(p)) expected = std::pow(expected, 1.0L / p);
    const double norm = adamx::clip_grad_norm<Scalar>({{a}, {b}}, 1e9, p);
    EXPECT_NEAR(norm, static_cast<double>(expected), 1e-12 * static_cast<double>(expected)) << "p = " << p;
  }
}

// PyTorch scales by max_norm / (norm + 1e-6) whenever that is below 1, so a
// norm just under max_norm (by less than 1e-6) is still scaled, a little.
TYPED_TEST(Clip, ANormJustBelowTheLimitIsStillScaledAsInPyTorch) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a(2);
  a << Scalar(3), Scalar(4);  // norm 5, exactly
  const double max_norm = 5.0 - 5e-7;
  EXPECT_EQ(adamx::clip_grad_norm<Scalar>({{a}}, max_norm), 5.0);
  const Scalar scale = static_cast<Scalar>(max_norm / (5.0 + 1e-6));
  EXPECT_LT(scale, Scalar(1));
  EXPECT_EQ(a[0], Scalar(3) * scale);
  EXPECT_EQ(a[1], Scalar(4) * scale);
  a << Scalar(3), Scalar(4);
  adamx::clip_grad_norm<Scalar>({{a}}, 5.0);  // 5 / (5 + 1e-6) < 1 as well
  EXPECT_LT(a[1], Scalar(4));
  a << Scalar(3), Scalar(4);
  adamx::clip_grad_norm<Scalar>({{a}}, 5.0 + 1e-6);  // coefficient 1: nothing changes
  EXPECT_EQ(a[0], Scalar(3));
  EXPECT_EQ(a[1], Scalar(4));
}

TYPED_TEST(Clip, ErrorIfNonfiniteThrowsNamingTheGroupAndChangesNothing) {
  using Scalar = TypeParam;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Vector a = Vector::Constant(4, Scalar(10)), b = Vector::Constant(3, Scalar(10));
  b[1] = std::numeric_limits<Scalar>::infinity();
  try {
    adamx::clip_grad_norm<Scalar>({{a}, {b}}, 1.0, 2.0, true);
    FAIL() << "no exception for an infinite gradient";
  } catch (const adamx::NonFiniteGradientError& e) {
    EXPECT_EQ(e.group(), 1u);
    EXPECT_NE(std::string(e.what()).find("inf"), std::string::npos) << e.what();
  }
  EXPECT_TRUE((a.array() == Scalar(10)).all());
  EXPECT_EQ(b[0], Scalar(10));
  // Without the flag, the infinite norm is returned and nothing changes either.
  EXPECT_TRUE(std::isinf(adamx::clip_grad_norm<Scalar>({{a}, {b}}, 1.0, std::numeric_limits<double>::infinity())));
  EXPECT_TRUE((a.array() == Scalar(10)).all());
}

TYPED_TEST(Clip, InvalidNormTypeOrNonContiguousGradientThrowsAndChangesNothing) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::Constant(5, 3);
  for (const double bad : {0.0, -2.0, std::numeric_limits<double>::quiet_NaN()}) {
    try {
      adamx::clip_grad_norm<Scalar>({{a}}, 1.0, bad);
      FAIL() << "no exception for norm_type " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("norm_type"), std::string::npos) << e.what();
    }
  }
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m =
      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>::Constant(4, 4, 3);
  Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<2>> strided(m.data(), 8);
  EXPECT_THROW(adamx::clip_grad_norm<Scalar>({{a}, {strided}}, 1.0), std::invalid_argument);
  EXPECT_THROW(adamx::clip_grad_value<Scalar>({{a}, {strided}}, 1.0), std::invalid_argument);
  EXPECT_TRUE((a.array() == Scalar(3)).all());
  EXPECT_TRUE((m.array() == Scalar(3)).all());
}

TYPED_TEST(Clip, ClipByValueClampsEveryGroupAndKeepsNaN) {
  using Scalar = TypeParam;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Vector a(4), b(2);
  a << Scalar(-3), Scalar(0.5), Scalar(2), std::numeric_limits<Scalar>::quiet_NaN();
  b << Scalar(-0.25), -std::numeric_limits<Scalar>::infinity();
  adamx::clip_grad_value<Scalar>({{a}, {b}}, 1.0);
  EXPECT_EQ(a[0], Scalar(-1));
  EXPECT_EQ(a[1], Scalar(0.5));
  EXPECT_EQ(a[2], Scalar(1));
  EXPECT_TRUE(std::isnan(a[3]));
  EXPECT_EQ(b[0], Scalar(-0.25));
  EXPECT_EQ(b[1], Scalar(-1));
  // The bound is rounded to the gradients' type, as torch.clamp does.
  Vector c = Vector::Constant(1, Scalar(1));
  adamx::clip_grad_value<Scalar>({{c}}, 0.1);
  EXPECT_EQ(c[0], static_cast<Scalar>(0.1));
}

TYPED_TEST(Clip, InvalidClipValueThrowsAndChangesNothing) {
  using Scalar = TypeParam;
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> a = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>::Constant(5, 3);
  for (const double bad : {-1.0, std::numeric_limits<double>::quiet_NaN()}) {
    try {
      adamx::clip_grad_value<Scalar>({{a}}, bad);
      FAIL() << "no exception for clip_value " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("clip_value"), std::string::npos) << e.what();
    }
    EXPECT_TRUE((a.array() == Scalar(3)).all());
  }
}

}  // namespace
