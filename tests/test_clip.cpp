// Global gradient-norm clipping (include/adamx/clip.hpp).
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

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

}  // namespace
