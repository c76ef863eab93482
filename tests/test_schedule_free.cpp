// Schedule-Free AdamW against the independent long-double reference
// (tests/reference/naive_schedule_free.hpp) over 600 steps, float and
// double, in five gradient regimes and with every option; and its exact
// behaviours: the defaults are the authors', z starts as θ, the averaging's
// scalars follow every step taken (a non-finite gradient's too, under
// propagate), eval() and train() switch the parameters to x and back bit for
// bit, and step() and restore() refuse to run in eval mode.
//
// Tolerance: |library − reference| ≤ kSlack × bound, the bound being the
// reference's first-order rounding-error bound for each quantity (see the
// header); kSlack = 2 absorbs the second-order terms and the use of the
// reference's magnitudes for the library's, as in test_reference.cpp.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "reference/naive_schedule_free.hpp"
#include "reference/reference_run.hpp"

namespace {

using naive_schedule_free::Real;

using reference::name;
enum class Variant { defaults, decay, warmup, averaging_powers, maximize, betas, skip_nonfinite };

const char* name(Variant v) {
  switch (v) {
    case Variant::defaults: return "defaults";
    case Variant::decay: return "decay";
    case Variant::warmup: return "warmup";
    case Variant::averaging_powers: return "averaging_powers";
    case Variant::maximize: return "maximize";
    case Variant::betas: return "betas";
    case Variant::skip_nonfinite: return "skip_nonfinite";
  }
  return "?";
}

// Schedule-Free AdamW's part of the reference run
// (reference/reference_run.hpp). The parameters hold y. A restarted
// reference takes z from the library's slot even before step 1, where the
// library holds no z yet: the reference, like the library, starts z at θ
// when it takes step 1.
struct ScheduleFreeRun : reference::RunDefaults {
  using Variant = ::Variant;
  using Options = adamx::ScheduleFreeAdamWOptions;
  template <class Scalar>
  using Optimizer = adamx::ScheduleFreeAdamW<Scalar>;
  using Group = naive_schedule_free::Group;
  using Element = naive_schedule_free::Element;
  using Hyper = naive_schedule_free::Hyper;
  using Rule = adamx::rules::ScheduleFreeAdamW;
  static constexpr const char* kLabel = "schedule-free";
  static constexpr reference::Quantity<Element> kParam{"y", &Element::y, &Element::err_y, -1};
  static constexpr reference::Quantity<Element> kSlots[] = {{"z", &Element::z, &Element::err_z, Rule::z},
                                                            {"v", &Element::v, &Element::err_v, Rule::v}};
  // Each step adds a few roundings of |θ| ≤ 2 and of the update (≤ α times
  // a few), so 16 ulps of 1 per step is a ceiling the bounds reach only if
  // they are wrong.
  static constexpr int kThetaBoundUlpsPerStep = 16;

  static Options options(Variant v) {
    adamx::ScheduleFreeAdamWOptions o;
    switch (v) {
      case Variant::defaults: break;
      case Variant::decay: o.weight_decay = 0.05; break;
      case Variant::warmup: o.warmup_steps = 50; break;
      case Variant::averaging_powers:
        o.r = 1.0;
        o.weight_lr_power = 1.0;
        o.warmup_steps = 20;
        break;
      case Variant::maximize: o.maximize = true; break;
      case Variant::betas:
        o.set_betas(0.95, 0.99);
        o.eps = 1e-6;
        break;
      case Variant::skip_nonfinite: o.nonfinite = adamx::NonFinitePolicy::skip; break;
    }
    return o;
  }

  static Hyper hyper(const Options& o) {
    naive_schedule_free::Hyper h;
    h.lr = o.lr;
    h.beta1 = o.beta1;
    h.beta2 = o.beta2;
    h.eps = o.eps;
    h.weight_decay = o.weight_decay;
    h.warmup_steps = o.warmup_steps;
    h.r = o.r;
    h.weight_lr_power = o.weight_lr_power;
    h.maximize = o.maximize;
    h.skip_nonfinite = o.nonfinite != adamx::NonFinitePolicy::propagate;
    return h;
  }

  // The averaging's running values, which step t's weight depends on.
  template <class GroupState>
  static void restart_scalars(Group& restart, const GroupState& before) {
    restart.lr_max = adamx::group_scalar_or(before.scalars(), "lr_max", 0.0);
    restart.weight_sum = adamx::group_scalar_or(before.scalars(), "weight_sum", 0.0);
  }

  static bool step(Group& group, const Hyper& hp, const std::vector<std::vector<Real>>& grads,
                   const reference::Precision& p, const std::vector<std::vector<Real>>& /*library_theta*/) {
    return naive_schedule_free::step(group, hp, grads, p);
  }
};

using Case = reference::Case<Variant>;

class ScheduleFreeReference : public testing::TestWithParam<Case> {};

TEST_P(ScheduleFreeReference, MatchesLongDoubleReferenceWithinRoundingBound) {
  reference::run_case<ScheduleFreeRun>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(AllRegimesAndOptions, ScheduleFreeReference,
                         testing::ValuesIn(reference::all_cases({Variant::decay, Variant::warmup,
                                                                 Variant::averaging_powers, Variant::maximize,
                                                                 Variant::betas, Variant::skip_nonfinite})),
                         reference::case_name<Variant>);

TEST(ScheduleFreeAdamW, DefaultsAreTheAuthors) {
  const adamx::ScheduleFreeAdamWOptions o;
  EXPECT_EQ(o.lr, 0.0025);
  EXPECT_EQ(o.beta1, 0.9);
  EXPECT_EQ(o.beta2, 0.999);
  EXPECT_EQ(o.eps, 1e-8);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_EQ(o.warmup_steps, 0.0);
  EXPECT_EQ(o.r, 0.0);
  EXPECT_EQ(o.weight_lr_power, 2.0);
  EXPECT_STREQ(adamx::ScheduleFreeAdamW<float>::name(), "ScheduleFreeAdamW");
}

using Groups = std::vector<std::vector<adamx::TensorRef<float>>>;

// Step 1: z starts as θ and c_1 = 1, so y becomes z − lr·u exactly as z
// does (1 − c = 0 leaves z − 0·(z − y) = z), and the averaging has lr_max =
// lr and W = lr².
TEST(ScheduleFreeAdamW, FirstStepStartsZAtTheta) {
  Eigen::VectorXf x(4), g(4);
  x << 0.5f, -0.25f, 1.0f, 0.0f;
  g << 3.0f, -1e-3f, -7.5f, 2.0f;
  adamx::ScheduleFreeAdamW<float> opt;
  opt.add_group({x});
  opt.step({{x}}, {{g}});
  const auto state = opt.state(0);
  for (Eigen::Index i = 0; i < 4; ++i) EXPECT_EQ(x[i], state.tensors[0].z[i]) << i;
  EXPECT_EQ(adamx::group_scalar_or(state.scalars(), "lr_max", 0.0), 0.0025);
  EXPECT_EQ(adamx::group_scalar_or(state.scalars(), "weight_sum", 0.0), 0.0025 * 0.0025);
}

// eval() writes x = y + (1 − 1/β1)(z − y) and train() puts y back bit for
// bit; in between, step() and restore() refuse and change nothing.
TEST(ScheduleFreeAdamW, EvalAndTrainSwitchToXAndBackExactly) {
  Eigen::VectorXf w(5), g(5);
  w << 0.5f, -1.0f, 2.0f, 0.25f, 0.0f;
  adamx::ScheduleFreeAdamW<float> opt;
  opt.add_group({w});
  for (int k = 0; k < 7; ++k) {
    g = w * 2.0f + Eigen::VectorXf::Constant(5, 0.1f * static_cast<float>(k));
    opt.step({{w}}, {{g}});
  }
  const Eigen::VectorXf y = w;
  const auto state = opt.state();
  opt.eval(Groups{{w}});
  EXPECT_TRUE(opt.in_eval_mode());
  for (Eigen::Index i = 0; i < 5; ++i) {
    const double z = state[0].tensors[0].z[i];
    const double expected = y[i] + (1.0 - 1.0 / 0.9) * (z - y[i]);
    EXPECT_NEAR(w[i], expected, 4e-7 * (std::fabs(expected) + std::fabs(z))) << i;
  }
  EXPECT_NE(w, y);
  opt.eval(Groups{{w}});  // already in eval mode: nothing changes
  const Eigen::VectorXf x = w;
  EXPECT_THROW(opt.step({{w}}, {{g}}), std::logic_error);
  EXPECT_THROW(opt.restore(state), std::logic_error);
  EXPECT_EQ(opt.state(), state);
  EXPECT_EQ(w, x);
  opt.train(Groups{{w}});
  EXPECT_FALSE(opt.in_eval_mode());
  EXPECT_EQ(std::memcmp(w.data(), y.data(), sizeof(float) * 5), 0);
  opt.train(Groups{{w}});  // already training: nothing changes
  EXPECT_EQ(std::memcmp(w.data(), y.data(), sizeof(float) * 5), 0);
  EXPECT_NO_THROW(opt.step({{w}}, {{g}}));
}

// A checkpoint in eval mode could not resume exactly (the parameters hold
// x, the state continues from y): saving and loading are refused, and
// nothing changes, on disk or in memory.
TEST(ScheduleFreeAdamW, CheckpointsAreRefusedInEvalMode) {
  Eigen::VectorXf w = Eigen::VectorXf::LinSpaced(6, -1.0f, 1.0f), g = Eigen::VectorXf::Ones(6);
  adamx::ScheduleFreeAdamW<float> opt;
  opt.add_group({w});
  opt.step({{w}}, {{g}});
  std::stringstream saved;
  adamx::save_checkpoint(opt, saved);
  const auto state = opt.state();
  opt.eval(Groups{{w}});
  const Eigen::VectorXf x = w;
  std::stringstream out;
  EXPECT_THROW(adamx::save_checkpoint(opt, out), std::logic_error);
  EXPECT_TRUE(out.str().empty());
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("adamx_sf_eval_" + std::to_string(::getpid()) + ".ckpt");
  EXPECT_THROW(adamx::save_checkpoint(opt, path), std::logic_error);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_THROW(adamx::load_checkpoint(opt, saved), std::logic_error);
  EXPECT_EQ(opt.state(), state);
  EXPECT_EQ(w, x);
  EXPECT_TRUE(opt.in_eval_mode());
  opt.train(Groups{{w}});
  std::stringstream again;
  adamx::save_checkpoint(opt, again);
  EXPECT_EQ(again.str(), saved.str());
}

// Before any step there is no z: eval() leaves the parameters as they are.
TEST(ScheduleFreeAdamW, EvalBeforeTheFirstStepChangesNothing) {
  Eigen::VectorXf w = Eigen::VectorXf::LinSpaced(6, -1.0f, 1.0f);
  const Eigen::VectorXf before = w;
  adamx::ScheduleFreeAdamW<float> opt;
  opt.add_group({w});
  opt.eval(Groups{{w}});
  EXPECT_EQ(w, before);
  opt.train(Groups{{w}});
  EXPECT_EQ(w, before);
}

TEST(ScheduleFreeAdamW, EvalWithWrongShapesThrowsAndChangesNothing) {
  Eigen::VectorXf w = Eigen::VectorXf::Ones(4), g = Eigen::VectorXf::Ones(4), other = Eigen::VectorXf::Ones(3);
  adamx::ScheduleFreeAdamW<float> opt;
  opt.add_group({w});
  opt.step({{w}}, {{g}});
  const Eigen::VectorXf y = w;
  EXPECT_THROW(opt.eval(Groups{{other}}), std::invalid_argument);
  EXPECT_FALSE(opt.in_eval_mode());
  EXPECT_THROW(opt.eval(Groups{}), std::invalid_argument);
  EXPECT_EQ(w, y);
}

// A NaN gradient under propagate reaches y, z and v, and the averaging's
// scalars still advance (the authors' do, whatever the gradient); under
// skip the step is not taken at all.
TEST(ScheduleFreeAdamW, NaNPropagatesOrSkipsTheGroup) {
  Eigen::VectorXf x = Eigen::VectorXf::Constant(3, 1.0f);
  Eigen::VectorXf g = Eigen::VectorXf::Constant(3, 0.5f);
  g[1] = std::nanf("");
  adamx::ScheduleFreeAdamW<float> propagate;
  propagate.add_group({x});
  propagate.step({{x}}, {{g}});
  EXPECT_TRUE(std::isnan(x[1]));
  const auto state = propagate.state(0);
  EXPECT_TRUE(std::isnan(state.tensors[0].z[1]));
  EXPECT_TRUE(std::isnan(state.tensors[0].v[1]));
  EXPECT_FALSE(std::isnan(x[0]));
  EXPECT_EQ(adamx::group_scalar_or(state.scalars(), "weight_sum", 0.0), 0.0025 * 0.0025);

  Eigen::VectorXf y = Eigen::VectorXf::Constant(3, 1.0f);
  adamx::ScheduleFreeAdamWOptions o;
  o.nonfinite = adamx::NonFinitePolicy::skip;
  adamx::ScheduleFreeAdamW<float> skip;
  skip.add_group({y}, o);
  const auto before = skip.state();
  const adamx::StepReport report = skip.step({{y}}, {{g}})[0];
  EXPECT_FALSE(report.applied);
  EXPECT_EQ(skip.state(), before);
  EXPECT_EQ(y, Eigen::VectorXf::Constant(3, 1.0f));
}

}  // namespace
