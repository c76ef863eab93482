// Stepping a subset of the tensors (step(params, grads, subset);
// docs/design.md, "Stepping a subset"): only the listed tensors change, each
// bias-corrected with its own step count, while t, γ and h stay per group.
//
// - Against a naive long-double reference written here from the equations
//   of docs/design.md sections 2 and 3 (a loop per element, nothing shared
//   with the library), for Adam and AdamX in float and double: θ, m, v, γ, h
//   and t after every step, with tolerances derived below.
// - Exact invariants, exactly: tensors not listed keep θ, m and v bit for
//   bit; t advances by one in a group with a listed tensor and not at all in
//   a group without; listing every tensor at its group's t is the ordinary
//   step, bit for bit, for every optimizer.
// - Bad subsets and arguments throw std::invalid_argument and change
//   nothing; the nonfinite policies act on the listed tensors; one and two
//   threads give the same bits.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using adamx_test::BitwiseEqual;
using adamx_test::fill;
using Real = long double;

template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// ---- the reference ------------------------------------------------------------

// One group as the equations describe it: per tensor θ, m, v and its own
// step count; per group t, γ, h. Everything in long double.
struct ReferenceTensor {
  std::vector<Real> theta, m, v;
  std::int64_t steps = 0;
};
struct ReferenceGroup {
  std::vector<ReferenceTensor> tensors;
  std::int64_t t = 0;
  Real gamma = 1, h = 0;
};
struct ReferenceOptions {
  Real lr, beta1, beta2, eps, beta3, beta_norm;
};

// One step of the tensors j with stepped[j]: each with its own count c
// (m, v bias-corrected with c), then, if any stepped, t, h and γ of the group
// from s over the stepped tensors only, h bias-corrected with the group's t.
void reference_step(ReferenceGroup& g, const ReferenceOptions& o, const std::vector<std::vector<Real>>& grads,
                    const std::vector<bool>& stepped) {
  Real s = 0;
  bool any = false;
  for (std::size_t j = 0; j < g.tensors.size(); ++j) {
    if (!stepped[j]) continue;
    any = true;
    ReferenceTensor& x = g.tensors[j];
    const Real c = static_cast<Real>(++x.steps);
    const Real bias1 = 1 - std::pow(o.beta1, c);
    const Real bias2 = 1 - std::pow(o.beta2, c);
    for (std::size_t i = 0; i < x.theta.size(); ++i) {
      const Real gi = grads[j][i];
      x.m[i] = o.beta1 * x.m[i] + (1 - o.beta1) * gi;
      x.v[i] = o.beta2 * x.v[i] + (1 - o.beta2) * g.gamma * gi * gi;
      x.theta[i] -= o.lr / bias1 * x.m[i] / (std::sqrt(x.v[i]) / std::sqrt(bias2) + o.eps);
      s += gi * gi;
    }
  }
  if (!any) return;
  ++g.t;
  g.h = o.beta_norm * g.h + (1 - o.beta_norm) * s;
  const Real h_hat = g.h / (1 - std::pow(o.beta_norm, static_cast<Real>(g.t)));
  const Real r = h_hat > 0 ? s / h_hat : 1;
  g.gamma = o.beta3 * g.gamma + (1 - o.beta3) * r;
}

// ---- the model ----------------------------------------------------------------

// Two groups: group 0 of three tensors (the middle one spans two s-blocks of
// 4096), group 1 of two. `pattern(step, group, tensor)` says which step.
const std::vector<std::vector<Eigen::Index>> kSizes = {{5, 4100, 37}, {6000, 3}};
constexpr int kSteps = 24;

bool listed(int step, std::size_t group, std::size_t tensor) {
  if (group == 1) return step % 4 != 1 && !(tensor == 1 && step < 9);  // steps 1, 5, … list nothing
  if (tensor == 0) return step < 6 || step >= 12;
  if (tensor == 1) return step >= 3;  // trained later: its count trails the group's t
  return step % 3 != 2;
}

template <class Opt>
struct Model {
  using Scalar = typename Opt::scalar_type;
  std::vector<std::vector<Vector<Scalar>>> params, grads;
  Opt opt;

  explicit Model(const typename Opt::Options& options, std::uint64_t seed = 1) {
    params.resize(kSizes.size());
    grads.resize(kSizes.size());
    for (std::size_t g = 0; g < kSizes.size(); ++g) {
      for (std::size_t j = 0; j < kSizes[g].size(); ++j) {
        params[g].emplace_back(kSizes[g][j]);
        grads[g].emplace_back(kSizes[g][j]);
        fill(params[g][j], seed * 100 + g * 10 + j);
      }
      std::vector<adamx::ConstTensorRef<Scalar>> shapes(params[g].begin(), params[g].end());
      opt.add_group(shapes, options);
    }
  }
  // This step's gradients: a different scale per step so that γ moves.
  void make_gradients(int step) {
    const double scale = 0.5 + 0.4 * std::sin(0.7 * step) + (step % 5 == 0 ? 2.0 : 0.0);
    for (std::size_t g = 0; g < grads.size(); ++g)
      for (std::size_t j = 0; j < grads[g].size(); ++j)
        fill(grads[g][j], 7000 + static_cast<std::uint64_t>(step) * 31 + g * 10 + j, scale);
  }
  // The subset of `pattern` at `step`, with the counts kept in `counts`, and
  // the views of its tensors.
  template <class Pattern>
  adamx::StepSubset subset(int step, const std::vector<std::vector<std::int64_t>>& counts, Pattern pattern,
                           std::vector<std::vector<adamx::TensorRef<Scalar>>>& p,
                           std::vector<std::vector<adamx::ConstTensorRef<Scalar>>>& q) {
    adamx::StepSubset chosen;
    chosen.groups.resize(params.size());
    p.assign(params.size(), {});
    q.assign(params.size(), {});
    for (std::size_t g = 0; g < params.size(); ++g)
      for (std::size_t j = 0; j < params[g].size(); ++j) {
        if (!pattern(step, g, j)) continue;
        chosen.groups[g].add(j, counts[g][j]);
        p[g].emplace_back(params[g][j]);
        q[g].emplace_back(grads[g][j]);
      }
    return chosen;
  }
  std::vector<std::vector<adamx::TensorRef<Scalar>>> all_params() {
    std::vector<std::vector<adamx::TensorRef<Scalar>>> p(params.size());
    for (std::size_t g = 0; g < params.size(); ++g)
      for (auto& x : params[g]) p[g].emplace_back(x);
    return p;
  }
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> all_grads() const {
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> q(grads.size());
    for (std::size_t g = 0; g < grads.size(); ++g)
      for (const auto& x : grads[g]) q[g].emplace_back(x);
    return q;
  }
};

// ---- against the reference ------------------------------------------------------

template <class Opt>
class StepSubsetReference : public testing::Test {};
using ReferenceOptimizers =
    testing::Types<adamx::Adam<float>, adamx::Adam<double>, adamx::AdamX<float>, adamx::AdamX<double>>;
TYPED_TEST_SUITE(StepSubsetReference, ReferenceOptimizers, adamx_test::OptimizerName);

// Tolerances, per quantity, from first-order rounding analysis of the
// library's arithmetic in the parameter type (unit roundoff u: 2^-24 for
// float, 2^-53 for double; the reference's own rounding, 2^-64, is
// negligible) over n ≤ kSteps steps of a tensor:
//  - v is a sum of non-negative terms: each step's update β2·v + c·g²
//    (c = (1 − β2)γ rounded once) adds at most 3u of relative error to what
//    it carries, so |Δv| ≤ 3 n u v; we allow 8 n u v.
//  - m mixes signs, so its error is bounded by the terms' magnitudes: each
//    step adds at most 3u·(β1|m| + (1 − β1)|g|) ≤ 3u·max|g| (|m| ≤ max|g|),
//    so |Δm| ≤ 3 n u max|g|; we allow 8 n u max|g|.
//  - θ's step is α·√(1 − β2^c)/(1 − β1^c)·m/(√v + ε√(1 − β2^c)), at most
//    α·3.2 in magnitude here (|m|/√v ≤ (1 − β1)/√(1 − β2)·… for these
//    gradients); its relative error is the carried errors of m (relative to
//    max|g|, scaled by the same factor) and half of v's, plus ~6u for the
//    constants, the square root, the sum, the division and the product; θ
//    then rounds once more. Summed over n steps: |Δθ| ≤ n·(α·4·(8 n u) + u|θ|),
//    which we apply as 32 n² u α + 2 n u max|θ|.
//  - γ and h are double in the library for every parameter type; s differs
//    from the reference's only by the order and rounding of the additions
//    (relative ≤ N u_double for N ≤ 2^14 elements, ~2e-12), and float
//    gradients square exactly. γ and h are compared to 1e-10 relative.
// Measured, the largest error is 0.2 to 0.45 of its bound for every
// quantity and type. A mistake in a tensor's count (bias-correcting with the
// group's t) moves θ by ~α = 1e-2 at the steps where they differ, far beyond
// these bounds (≤ 3e-5 for float, ≤ 2e-13 for double): it fails all four.
TYPED_TEST(StepSubsetReference, MatchesNaiveLongDoubleReference) {
  using Opt = TypeParam;
  using Scalar = typename Opt::scalar_type;
  constexpr bool kAdamX = std::is_same<adamx_test::FlavourOf_t<Opt>, adamx::flavour::AdamX>::value;
  typename Opt::Options options;
  options.lr = 1e-2;
  if (kAdamX) {
    options.beta3 = 0.8;  // fast, so that γ really moves
    options.beta_norm = 0.9;
  }
  Model<Opt> model(options);
  const ReferenceOptions ro{options.lr, options.beta1, options.beta2, options.eps, options.beta3, options.beta_norm};
  std::vector<ReferenceGroup> ref(kSizes.size());
  std::vector<std::vector<std::int64_t>> counts(kSizes.size());
  for (std::size_t g = 0; g < kSizes.size(); ++g) {
    counts[g].assign(kSizes[g].size(), 0);
    for (std::size_t j = 0; j < kSizes[g].size(); ++j) {
      ReferenceTensor x;
      for (Eigen::Index i = 0; i < kSizes[g][j]; ++i) x.theta.push_back(model.params[g][j][i]);
      x.m.assign(x.theta.size(), 0);
      x.v.assign(x.theta.size(), 0);
      ref[g].tensors.push_back(x);
    }
  }
  const Real u = std::numeric_limits<Scalar>::epsilon() / 2;
  bool counts_differed = false;  // the test must exercise counts that trail t
  for (int step = 0; step < kSteps; ++step) {
    model.make_gradients(step);
    std::vector<std::vector<adamx::TensorRef<Scalar>>> p;
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> q;
    const adamx::StepSubset chosen = model.subset(step, counts, listed, p, q);
    const auto before = model.opt.state();
    const auto params_before = model.params;
    const std::vector<adamx::StepReport>& reports = model.opt.step(p, q, chosen);

    for (std::size_t g = 0; g < kSizes.size(); ++g) {
      std::vector<std::vector<Real>> grads(kSizes[g].size());
      std::vector<bool> stepped(kSizes[g].size());
      bool any = false;
      for (std::size_t j = 0; j < kSizes[g].size(); ++j) {
        stepped[j] = listed(step, g, j);
        any = any || stepped[j];
        if (stepped[j] && counts[g][j] != model.opt.state(g).t - 1) counts_differed = true;
        for (Eigen::Index i = 0; i < kSizes[g][j]; ++i) grads[j].push_back(model.grads[g][j][i]);
      }
      reference_step(ref[g], ro, grads, stepped);
      const auto& state = model.opt.state(g);
      // t: exact rules.
      ASSERT_EQ(state.t, before[g].t + (any ? 1 : 0)) << "group " << g << ", step " << step;
      ASSERT_EQ(state.t, ref[g].t);
      EXPECT_EQ(reports[g].applied, any);
      EXPECT_EQ(reports[g].step, state.t);
      if (!any) {
        EXPECT_TRUE(state == before[g]) << "an idle group changed, step " << step;
        continue;
      }
      EXPECT_NEAR(state.gamma, static_cast<double>(ref[g].gamma), 1e-10 * static_cast<double>(ref[g].gamma));
      EXPECT_NEAR(state.h, static_cast<double>(ref[g].h), 1e-10 * static_cast<double>(ref[g].h));
      if (!kAdamX) {
        EXPECT_EQ(state.gamma, 1.0);
      }
      for (std::size_t j = 0; j < kSizes[g].size(); ++j) {
        const auto& ts = state.tensors[j];
        if (!stepped[j]) {  // exact invariant: nothing of it moved
          EXPECT_TRUE(ts == before[g].tensors[j]) << "unlisted tensor " << j << " of group " << g;
          EXPECT_TRUE(BitwiseEqual(model.params[g][j], params_before[g][j]));
          continue;
        }
        ++counts[g][j];
        const ReferenceTensor& x = ref[g].tensors[j];
        const Real n = static_cast<Real>(x.steps);
        Real max_g = 0, max_theta = 0;
        for (std::size_t i = 0; i < x.theta.size(); ++i) {
          max_g = std::max(max_g, std::fabs(grads[j][i]));
          max_theta = std::max(max_theta, std::fabs(x.theta[i]));
        }
        const Real theta_tol = 32 * n * n * u * ro.lr + 2 * n * u * max_theta;
        for (std::size_t i = 0; i < x.theta.size(); ++i) {
          const Real v_tol = 8 * n * u * x.v[i] + std::numeric_limits<Real>::min();
          ASSERT_LE(std::fabs(static_cast<Real>(model.params[g][j][static_cast<Eigen::Index>(i)]) - x.theta[i]),
                    theta_tol)
              << "theta, group " << g << " tensor " << j << " element " << i << ", step " << step;
          ASSERT_LE(std::fabs(static_cast<Real>(ts.m[static_cast<Eigen::Index>(i)]) - x.m[i]), 8 * n * u * max_g)
              << "m, group " << g << " tensor " << j << " element " << i << ", step " << step;
          ASSERT_LE(std::fabs(static_cast<Real>(ts.v[static_cast<Eigen::Index>(i)]) - x.v[i]), v_tol)
              << "v, group " << g << " tensor " << j << " element " << i << ", step " << step;
        }
      }
    }
  }
  EXPECT_TRUE(counts_differed);
  EXPECT_LT(counts[0][1], model.opt.state(0).t);  // the tensor trained later trails its group
  if (kAdamX) {
    EXPECT_GT(std::fabs(model.opt.state(0).gamma - 1.0), 1e-3);  // γ really moved
  }
}

// ---- exact invariants -------------------------------------------------------------

template <class Opt>
class StepSubsetExact : public testing::Test {};
TYPED_TEST_SUITE(StepSubsetExact, adamx_test::AllOptimizers, adamx_test::OptimizerName);

// Listing every tensor at its group's t is the ordinary step, bit for bit
// (θ, m, v, v_max, step_avg, t, γ, h), with amsgrad and the skip policy on
// so that every slot and the checking pass run.
TYPED_TEST(StepSubsetExact, EveryTensorAtTheGroupsCountIsTheOrdinaryStep) {
  using Opt = TypeParam;
  using Scalar = typename Opt::scalar_type;
  typename Opt::Options options;
  // AMSGrad where the optimizer has it; a rule without (Lion) keeps no v_max.
  EXPECT_EQ(adamx_test::set_option(options, "amsgrad", 1), adamx_test::rule_has_slot<Opt>("v_max"));
  options.nonfinite = adamx::NonFinitePolicy::skip;
  Model<Opt> ordinary(options), through_subset(options);
  const auto every = [](int, std::size_t, std::size_t) { return true; };
  for (int step = 0; step < 6; ++step) {
    ordinary.make_gradients(step);
    through_subset.make_gradients(step);
    ordinary.opt.step(ordinary.all_params(), ordinary.all_grads());
    std::vector<std::vector<std::int64_t>> counts(kSizes.size());
    for (std::size_t g = 0; g < kSizes.size(); ++g)
      counts[g].assign(kSizes[g].size(), through_subset.opt.state(g).t);
    std::vector<std::vector<adamx::TensorRef<Scalar>>> p;
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> q;
    through_subset.opt.step(p, q, through_subset.subset(step, counts, every, p, q));
    ASSERT_TRUE(ordinary.opt.state() == through_subset.opt.state()) << "step " << step;
    for (std::size_t g = 0; g < kSizes.size(); ++g)
      for (std::size_t j = 0; j < kSizes[g].size(); ++j)
        ASSERT_TRUE(BitwiseEqual(ordinary.params[g][j], through_subset.params[g][j]));
  }
}

// ---- bad input ----------------------------------------------------------------------

// Every malformed subset or argument list throws std::invalid_argument with
// the step's message prefix and a message naming the problem, changing
// nothing (θ and the whole state bitwise).
TEST(StepSubsetBadInput, RefusedBeforeAnythingChanges) {
  using Opt = adamx::AdamX<float>;
  Model<Opt> model(Opt::Options{});
  model.make_gradients(0);
  model.opt.step(model.all_params(), model.all_grads());  // t = 1 in both groups
  model.make_gradients(1);
  using P = std::vector<std::vector<adamx::TensorRef<float>>>;
  using Q = std::vector<std::vector<adamx::ConstTensorRef<float>>>;
  auto& x = model.params;
  auto& d = model.grads;
  // A valid subset: tensors 0 and 2 of group 0 (counts 1 and 0), tensor 1 of group 1.
  const auto valid = [] {
    adamx::StepSubset s;
    s.groups.resize(2);
    s.groups[0].add(0, 1);
    s.groups[0].add(2, 0);
    s.groups[1].add(1, 1);
    return s;
  };
  const P p{{x[0][0], x[0][2]}, {x[1][1]}};
  const Q q{{d[0][0], d[0][2]}, {d[1][1]}};
  Vector<float> wrong_shape = Vector<float>::Zero(6);
  struct Case {
    const char* what;
    adamx::StepSubset subset;
    P params;
    Q grads;
    const char* expected;
  };
  std::vector<Case> cases;
  {
    adamx::StepSubset s = valid();
    s.groups.pop_back();
    cases.push_back({"one group short", s, p, q, "the subset lists 1 groups, but the optimizer has 2 groups"});
  }
  {
    adamx::StepSubset s = valid();
    s.groups[1].tensors[0] = 2;
    cases.push_back({"index out of range", s, p, q, "tensor index 2 is out of range (the group has 2 tensors)"});
  }
  {
    adamx::StepSubset s = valid();
    s.groups[0].tensors[1] = 0;
    cases.push_back({"repeated index", s, p, q, "indices must increase, but 0 follows 0"});
  }
  {
    adamx::StepSubset s = valid();
    s.groups[0].tensors = {2, 0};
    cases.push_back({"unordered", s, {{x[0][2], x[0][0]}, {x[1][1]}}, {{d[0][2], d[0][0]}, {d[1][1]}},
                     "indices must increase, but 0 follows 2"});
  }
  {
    adamx::StepSubset s = valid();
    s.groups[0].steps_taken[0] = -1;
    cases.push_back({"negative count", s, p, q, "'group0.tensor0': the subset says it has taken -1 steps"});
  }
  {
    adamx::StepSubset s = valid();
    s.groups[1].steps_taken[0] = 2;
    cases.push_back({"count above t", s, p, q, "must be between 0 and its group's t = 1"});
  }
  {
    adamx::StepSubset s = valid();
    s.groups[0].steps_taken.pop_back();
    cases.push_back({"counts missing", s, p, q, "the subset lists 2 tensors but 1 step counts"});
  }
  cases.push_back({"a parameter too many", valid(), {{x[0][0], x[0][1], x[0][2]}, {x[1][1]}}, q,
                   "group 'group0': the subset lists 2 tensors but got 3 parameters and 2 gradients"});
  cases.push_back({"a group of views short", valid(), {{x[0][0], x[0][2]}}, {{d[0][0], d[0][2]}},
                   "got 1 parameter groups and 1 gradient groups"});
  cases.push_back({"another tensor's shape", valid(), {{x[0][0], x[0][2]}, {wrong_shape}}, q,
                   "tensor 'group1.tensor1': the parameter has shape"});
  // Tensor 0's gradient inside tensor 2's parameter: the memory check names
  // the tensors by their place in the group, not in the lists.
  cases.push_back({"a gradient inside another parameter", valid(), p,
                   {{adamx::ConstTensorRef<float>(x[0][2].data(), 5, 1), d[0][2]}, {d[1][1]}},
                   "'group0.tensor2'"});
  for (const Case& c : cases) {
    const auto state = model.opt.state();
    const auto params = model.params;
    try {
      model.opt.step(c.params, c.grads, c.subset);
      ADD_FAILURE() << c.what << ": accepted";
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.rfind("adamx::AdamX::step: ", 0), 0u) << c.what << ": " << message;
      EXPECT_NE(message.find(c.expected), std::string::npos) << c.what << ": " << message;
    }
    EXPECT_TRUE(model.opt.state() == state) << c.what;
    for (std::size_t g = 0; g < kSizes.size(); ++g)
      for (std::size_t j = 0; j < kSizes[g].size(); ++j)
        EXPECT_TRUE(BitwiseEqual(model.params[g][j], params[g][j])) << c.what;
  }
  // The valid subset is accepted (so the cases above failed for their fault).
  EXPECT_NO_THROW(model.opt.step(p, q, valid()));
  EXPECT_EQ(model.opt.state(0).t, 2);
}

// ---- nonfinite policies ---------------------------------------------------------------

// skip: a non-finite gradient in a listed tensor skips its group (nothing
// changes, t stays); one in an unlisted tensor is never read. error: the
// exception names the first non-finite listed tensor, by its index in the
// group, and no group changes.
TEST(StepSubsetNonFinite, PoliciesActOnTheListedTensors) {
  using Opt = adamx::AdamX<float>;
  for (const auto policy : {adamx::NonFinitePolicy::skip, adamx::NonFinitePolicy::error}) {
    Opt::Options options;
    options.nonfinite = policy;
    Model<Opt> model(options);
    model.make_gradients(0);
    model.opt.step(model.all_params(), model.all_grads());
    model.make_gradients(1);
    auto& x = model.params;
    auto& d = model.grads;
    adamx::StepSubset s;
    s.groups.resize(2);
    s.groups[0].add(0, 1);
    s.groups[0].add(2, 1);
    s.groups[1].add(0, 1);
    const std::vector<std::vector<adamx::TensorRef<float>>> p{{x[0][0], x[0][2]}, {x[1][0]}};
    const std::vector<std::vector<adamx::ConstTensorRef<float>>> q{{d[0][0], d[0][2]}, {d[1][0]}};
    d[0][1][7] = std::numeric_limits<float>::quiet_NaN();  // unlisted: never read
    d[0][2][3] = std::numeric_limits<float>::infinity();   // listed
    const auto state = model.opt.state();
    const auto params = model.params;
    if (policy == adamx::NonFinitePolicy::skip) {
      const auto& reports = model.opt.step(p, q, s);
      EXPECT_FALSE(reports[0].applied);
      EXPECT_FALSE(reports[0].finite);
      EXPECT_TRUE(reports[1].applied);
      EXPECT_TRUE(model.opt.state(0) == state[0]);
      EXPECT_EQ(model.opt.state(1).t, 2);
      for (std::size_t j = 0; j < 3; ++j) EXPECT_TRUE(BitwiseEqual(x[0][j], params[0][j]));
      continue;
    }
    try {
      model.opt.step(p, q, s);
      ADD_FAILURE() << "a non-finite gradient was accepted";
    } catch (const adamx::NonFiniteGradientError& e) {
      EXPECT_EQ(e.group(), 0u);
      EXPECT_EQ(e.tensor(), 2u);
      EXPECT_NE(std::string(e.what()).find("'group0.tensor2'"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(model.opt.state() == state);
    for (std::size_t g = 0; g < kSizes.size(); ++g)
      for (std::size_t j = 0; j < kSizes[g].size(); ++j) EXPECT_TRUE(BitwiseEqual(x[g][j], params[g][j]));
    // The NaN in the unlisted tensor alone does not trouble the step.
    d[0][2][3] = 0.5f;
    EXPECT_TRUE(model.opt.step(p, q, s)[0].applied);
  }
}

// ---- threads --------------------------------------------------------------------------

// One and two threads give the same bits (the test is built with OpenMP):
// tensors large enough for threads to be used, subsets that skip some of
// their blocks' tensors, counts that differ.
TEST(StepSubsetThreads, OneAndTwoThreadsAgreeBitwise) {
  ASSERT_TRUE(adamx::detail::kOpenMP) << "this test must be built with ADAMX_OPENMP";
  using Scalar = float;
  const std::vector<Eigen::Index> sizes = {70001, 3, 40000, 9000};
  std::vector<Vector<Scalar>> results[2];
  std::vector<adamx::AdamX<Scalar>::State> states[2];
  for (int run = 0; run < 2; ++run) {
    std::vector<Vector<Scalar>> x, d;
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      x.emplace_back(sizes[j]);
      d.emplace_back(sizes[j]);
      fill(x[j], 40 + j);
    }
    adamx::AdamX<Scalar> opt;
    opt.set_threads(run + 1);
    opt.add_group(x);
    std::vector<std::int64_t> counts(sizes.size(), 0);
    for (int step = 0; step < 8; ++step) {
      adamx::StepSubset s;
      s.groups.resize(1);
      std::vector<std::vector<adamx::TensorRef<Scalar>>> p(1);
      std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> q(1);
      for (std::size_t j = 0; j < sizes.size(); ++j) {
        fill(d[j], 900 + static_cast<std::uint64_t>(step) * 10 + j, 1.0 + step);
        if ((step + static_cast<int>(j)) % 3 == 0) continue;
        s.groups[0].add(j, counts[j]++);
        p[0].emplace_back(x[j]);
        q[0].emplace_back(d[j]);
      }
      opt.step(p, q, s);
    }
    results[run] = x;
    states[run] = opt.state();
  }
  EXPECT_TRUE(states[0] == states[1]);
  for (std::size_t j = 0; j < sizes.size(); ++j) EXPECT_TRUE(BitwiseEqual(results[0][j], results[1][j]));
}

}  // namespace
