// Optimizer::step(params, grads, ClipGradNorm): clip_grad_norm then step in
// one call, bit for bit, with the gradients scaled in place; and the order
// clip_grad_norm sums in (clip.hpp), which the sharded form reproduces. (The
// model here is its own; shard_model.hpp lends only its types and helpers.)
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "shard_model.hpp"

namespace {

using shard_model::Index;
using shard_model::same_bits;
using shard_model::same_tensors;
using shard_model::Tensors;
using shard_model::Vec;
constexpr Index B = adamx::detail::kNormBlock;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Two groups; tensors spanning several blocks, and one shorter than a chunk.
const std::vector<std::vector<Index>> kSizes = {{2 * B + 5, 7}, {B + 3}};

template <class Scalar>
Tensors<Scalar> filled(int step) {
  Tensors<Scalar> out;
  for (std::size_t g = 0; g < kSizes.size(); ++g) {
    out.emplace_back();
    for (std::size_t t = 0; t < kSizes[g].size(); ++t) {
      Vec<Scalar> x(kSizes[g][t]);
      const double scale = std::pow(10.0, static_cast<double>(g + t) - 1.0);
      for (Index i = 0; i < x.size(); ++i)
        x[i] = static_cast<Scalar>(scale * std::sin(0.31 * static_cast<double>(i) + 1.7 * step + static_cast<double>(t)));
      out.back().push_back(std::move(x));
    }
  }
  return out;
}

using shard_model::const_views;
using shard_model::mutable_views;

template <class Opt>
void add_groups(Opt& opt, Tensors<typename Opt::scalar_type>& params) {
  typename Opt::Options skip;
  skip.nonfinite = adamx::NonFinitePolicy::skip;
  opt.add_group(mutable_views(params)[0], skip);
  opt.add_group(mutable_views(params)[1]);
}

template <class Array>
bool same_array(const Array& a, const Array& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(typename Array::Scalar)) == 0;
}

template <class State>
bool same_state(const std::vector<State>& a, const std::vector<State>& b) {
  for (std::size_t g = 0; g < a.size(); ++g) {
    if (a[g].t != b[g].t || !same_bits(a[g].gamma, b[g].gamma) || !same_bits(a[g].h, b[g].h)) return false;
    for (std::size_t t = 0; t < a[g].tensors.size(); ++t)
      if (!same_array(a[g].tensors[t].m, b[g].tensors[t].m) || !same_array(a[g].tensors[t].v, b[g].tensors[t].v))
        return false;
  }
  return true;
}

// Σ|g|^p in long double, in element order (max|g| for p = ∞), to the 1/p.
template <class Scalar>
long double naive_norm(const Tensors<Scalar>& grads, double p) {
  long double total = 0;
  for (const auto& group : grads)
    for (const auto& tensor : group)
      for (Index i = 0; i < tensor.size(); ++i) {
        const long double a = std::fabs(static_cast<long double>(static_cast<double>(tensor[i])));
        total = std::isinf(p) ? std::max(total, a) : total + std::pow(a, static_cast<long double>(p));
      }
  return std::isinf(p) ? total : std::pow(total, 1.0L / static_cast<long double>(p));
}

template <class Scalar>
class ClipStep : public ::testing::Test {};
using Scalars = ::testing::Types<float, double, Eigen::bfloat16, Eigen::half>;
TYPED_TEST_SUITE(ClipStep, Scalars);

// Against clip_grad_norm then step on a second optimizer: the norm, θ, the
// state and the (clipped in place) gradients bit for bit, over several steps.
TYPED_TEST(ClipStep, EqualsClipGradNormThenStepBitwise) {
  using Scalar = TypeParam;
  for (const double p : {1.0, 2.0, 3.0, kInf})
    for (const double max_norm : {1e-3, 1e6}) {
      SCOPED_TRACE("p = " + std::to_string(p) + ", max_norm = " + std::to_string(max_norm));
      Tensors<Scalar> pa = filled<Scalar>(0), pb = pa;
      adamx::AdamX<Scalar> a, b;
      add_groups(a, pa);
      add_groups(b, pb);
      EXPECT_TRUE(std::isnan(b.last_grad_norm()));
      for (int k = 1; k <= 4; ++k) {
        Tensors<Scalar> ga = filled<Scalar>(k), gb = ga;
        const Tensors<Scalar> original = ga;
        const double norm = adamx::clip_grad_norm(mutable_views(ga), max_norm, p);
        a.step(mutable_views(pa), const_views(ga));
        b.step(mutable_views(pb), mutable_views(gb), adamx::ClipGradNorm{max_norm, p});
        EXPECT_TRUE(same_bits(b.last_grad_norm(), norm)) << b.last_grad_norm() << " vs " << norm;
        // The sum of at most 12 300 terms in double: each addition errs by at
        // most 2^-53 relative, so n·2^-53 < 1.4e-12 bounds it; 1e-11 leaves
        // room for pow's rounding.
        const long double naive = naive_norm(original, p);
        EXPECT_NEAR(norm, static_cast<double>(naive), 1e-11 * static_cast<double>(naive));
        EXPECT_EQ(norm > max_norm, max_norm < 1.0) << "the clip binds only with the small limit";
        EXPECT_TRUE(same_tensors(gb, ga)) << "gradients scaled in place as clip_grad_norm scales them";
        EXPECT_EQ(same_tensors(gb, original), max_norm > 1.0);
        EXPECT_TRUE(same_tensors(pb, pa));
        EXPECT_TRUE(same_state(b.state(), a.state()));
      }
    }
}

// The braced-list form is the container form.
TYPED_TEST(ClipStep, BracedListsAsContainers) {
  using Scalar = TypeParam;
  Tensors<Scalar> pa = filled<Scalar>(0), pb = pa;
  adamx::AdamX<Scalar> a, b;
  add_groups(a, pa);
  add_groups(b, pb);
  Tensors<Scalar> ga = filled<Scalar>(1), gb = ga;
  a.step(mutable_views(pa), mutable_views(ga), adamx::ClipGradNorm{0.5, kInf});
  b.step({{pb[0][0], pb[0][1]}, {pb[1][0]}}, {{gb[0][0], gb[0][1]}, {gb[1][0]}}, adamx::ClipGradNorm{0.5, kInf});
  EXPECT_TRUE(same_bits(a.last_grad_norm(), b.last_grad_norm()));
  EXPECT_TRUE(same_tensors(pb, pa));
  EXPECT_TRUE(same_tensors(gb, ga));
  EXPECT_TRUE(same_state(b.state(), a.state()));
}

// Everything a refused step must leave as it was.
template <class Scalar>
struct Model {
  Tensors<Scalar> params = filled<Scalar>(0);
  Tensors<Scalar> grads = filled<Scalar>(2);
  adamx::AdamX<Scalar> opt;
  Model() {
    add_groups(opt, params);
    Tensors<Scalar> first = filled<Scalar>(1);
    opt.step(mutable_views(params), mutable_views(first), adamx::ClipGradNorm{1.0});
  }
  void expect_unchanged_after(const std::function<void()>& refused) {
    const Tensors<Scalar> params_before = params, grads_before = grads;
    const auto state_before = opt.state();
    const double norm_before = opt.last_grad_norm();
    refused();
    EXPECT_TRUE(same_tensors(params, params_before));
    EXPECT_TRUE(same_tensors(grads, grads_before));
    EXPECT_TRUE(same_state(opt.state(), state_before));
    EXPECT_TRUE(same_bits(opt.last_grad_norm(), norm_before));
  }
};

TYPED_TEST(ClipStep, InvalidArgumentsThrowClipGradNormsErrorAndChangeNothing) {
  using Scalar = TypeParam;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Model<Scalar> model;
  for (const adamx::ClipGradNorm clip : {adamx::ClipGradNorm{-1.0}, adamx::ClipGradNorm{nan},
                                         adamx::ClipGradNorm{1.0, 0.0}, adamx::ClipGradNorm{1.0, nan}}) {
    std::string want;
    Tensors<Scalar> copy = model.grads;
    try {
      adamx::clip_grad_norm(mutable_views(copy), clip.max_norm, clip.norm_type);
    } catch (const std::invalid_argument& e) {
      want = e.what();
    }
    ASSERT_FALSE(want.empty());
    model.expect_unchanged_after([&] {
      try {
        model.opt.step(mutable_views(model.params), mutable_views(model.grads), clip);
        ADD_FAILURE() << "no exception";
      } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()), want);
      }
    });
  }
}

// A bad step (one group missing) is refused before the gradients are scaled.
TYPED_TEST(ClipStep, BadStructureThrowsBeforeScalingTheGradients) {
  using Scalar = TypeParam;
  Model<Scalar> model;
  model.expect_unchanged_after([&] {
    auto g = mutable_views(model.grads);
    g.pop_back();
    auto p = mutable_views(model.params);
    p.pop_back();
    EXPECT_THROW(model.opt.step(p, g, adamx::ClipGradNorm{1e-3}), std::invalid_argument);
  });
}

// A non-finite norm: with error_if_nonfinite, clip_grad_norm's error naming
// the first group whose contribution is not finite, nothing changed;
// without, nothing is scaled and the groups' policies decide (group 0 skips).
TYPED_TEST(ClipStep, NonFiniteNorm) {
  using Scalar = TypeParam;
  for (const double p : {1.0, 2.0, kInf}) {
    Model<Scalar> model;
    model.grads[1][0][3] = std::numeric_limits<Scalar>::infinity();
    model.expect_unchanged_after([&] {
      try {
        model.opt.step(mutable_views(model.params), mutable_views(model.grads), adamx::ClipGradNorm{1.0, p, true});
        ADD_FAILURE() << "no exception";
      } catch (const adamx::NonFiniteGradientError& e) {
        EXPECT_EQ(e.group(), 1u);
        EXPECT_NE(std::string(e.what()).find("first non-finite in group 1"), std::string::npos) << e.what();
      }
    });
    model.grads[1][0][3] = Scalar(0);
    model.grads[0][1][2] = std::numeric_limits<Scalar>::quiet_NaN();
    const Tensors<Scalar> before = model.grads;
    model.opt.step(mutable_views(model.params), mutable_views(model.grads), adamx::ClipGradNorm{1e-3, p});
    EXPECT_TRUE(std::isnan(model.opt.last_grad_norm()));
    EXPECT_TRUE(same_tensors(model.grads, before)) << "nothing scaled";
    EXPECT_EQ(model.opt.state(0).t, 1) << "group 0 (skip) skipped";
    EXPECT_EQ(model.opt.state(1).t, 2);
  }
}

// The norm is one running total over blocks, whatever the grouping: moving
// tensors between groups changes no bit (clip.hpp).
TYPED_TEST(ClipStep, NormDoesNotDependOnTheGrouping) {
  using Scalar = TypeParam;
  for (const double p : {1.0, 2.0, 3.0, kInf}) {
    Tensors<Scalar> g = filled<Scalar>(3);
    const double split = adamx::clip_grad_norm(mutable_views(g), 1e9, p);
    Tensors<Scalar> together{{g[0][0], g[0][1], g[1][0]}};
    const double joined = adamx::clip_grad_norm(mutable_views(together), 1e9, p);
    EXPECT_TRUE(same_bits(split, joined)) << "p = " << p << ": " << split << " vs " << joined;
  }
}

}  // namespace
