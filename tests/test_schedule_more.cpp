// The schedules of schedule_factor.hpp, schedule_cycle.hpp and
// schedule_compose.hpp: against sequences recorded from PyTorch 1.13's
// schedulers (tests/data/schedules_more.txt, written by
// tools/torch_golden.py) bit for bit, against their closed forms, their
// validation, the end of OneCycleLR's cycle, and state() / restore().
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"
#include "test_util.hpp"

namespace {

constexpr double kU = std::numeric_limits<double>::epsilon() / 2;

std::uint64_t bits(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// The callables of the recorded LambdaLR and CyclicLR schedules, as
// tools/torch_golden.py spells them in Python (the same double operations).
double power_095(std::int64_t e) { return std::pow(0.95, static_cast<double>(e)); }
double inverse_01(std::int64_t e) { return 1.0 / (1.0 + 0.1 * static_cast<double>(e)); }
double warmup_10(std::int64_t e) { return std::min(1.0, static_cast<double>(e + 1) / 10.0); }
double scale_cycle(std::int64_t c) { return 1.0 / (1.0 + 0.5 * static_cast<double>(c - 1)); }
double scale_iterations(std::int64_t n) { return 1.0 / (1.0 + 0.01 * static_cast<double>(n)); }

// A schedule behind a uniform face, so one loop replays them all.
struct Sequence {
  std::function<double()> lr;
  std::function<void()> step;
};
template <class Schedule>
std::function<Sequence()> make(Schedule schedule) {
  return [schedule] {
    auto shared = std::make_shared<Schedule>(schedule);
    return Sequence{[shared] { return shared->lr(); }, [shared] { shared->step(); }};
  };
}

adamx::OneCycleOptions one_cycle(double pct_start, adamx::OneCycleAnneal anneal, double div_factor,
                                 double final_div_factor, bool three_phase) {
  adamx::OneCycleOptions o;
  o.pct_start = pct_start;
  o.anneal_strategy = anneal;
  o.div_factor = div_factor;
  o.final_div_factor = final_div_factor;
  o.three_phase = three_phase;
  return o;
}
adamx::CyclicOptions cyclic(std::int64_t up, std::int64_t down, adamx::CyclicMode mode = adamx::CyclicMode::triangular,
                            double gamma = 1.0) {
  adamx::CyclicOptions o;
  o.step_size_up = up;
  if (down != 0) o.step_size_down = down;  // 0: unset, step_size_up
  o.mode = mode;
  o.gamma = gamma;
  return o;
}

// The adamx construction of each recorded schedule, as its record's
// description in schedules_more.txt spells out.
const std::map<std::string, std::function<Sequence()>>& recorded_schedules() {
  using namespace adamx;
  const auto cos = OneCycleAnneal::cos;
  const auto linear = OneCycleAnneal::linear;
  static const std::map<std::string, std::function<Sequence()>> table{
      {"multistep", make(MultiStepLR(0.1, {5, 12, 12, 30}, 0.5))},
      {"multistep_unsorted_zero", make(MultiStepLR(0.2, {20, 7, 0, 7, 7}))},
      {"constant", make(ConstantLR(0.1, 0.5, 4))},
      {"constant_default", make(ConstantLR(0.05))},
      {"linear", make(LinearLR(0.1, 0.25, 1.0, 10))},
      {"linear_down", make(LinearLR(0.1, 1.0, 0.05, 25))},
      {"linear_partial", make(LinearLR(0.3, 0.5, 0.2, 12))},
      {"linear_default", make(LinearLR(0.3))},
      {"polynomial", make(PolynomialLR(0.1, 20, 1.0))},
      {"polynomial_2.5", make(PolynomialLR(0.1, 33, 2.5))},
      {"polynomial_sqrt", make(PolynomialLR(0.02, 7, 0.5))},
      {"lambda_power", make(LambdaLR(0.1, power_095))},
      {"lambda_inverse", make(LambdaLR(0.05, inverse_01))},
      {"lambda_warmup", make(LambdaLR(0.3, warmup_10))},
      {"onecycle_cos", make(OneCycleLR(0.1, 100))},
      {"onecycle_linear", make(OneCycleLR(0.05, 80, one_cycle(0.25, linear, 10, 100, false)))},
      {"onecycle_three_phase_cos", make(OneCycleLR(0.1, 90, one_cycle(0.3, cos, 25, 1e4, true)))},
      {"onecycle_three_phase_linear", make(OneCycleLR(0.2, 75, one_cycle(0.4, linear, 5, 50, true)))},
      {"onecycle_epochs", make(OneCycleLR(0.01, 6 * 11, one_cycle(0.35, cos, 25, 1e4, false)))},
      {"onecycle_short", make(OneCycleLR(0.1, 7, one_cycle(0.5, cos, 25, 1e4, false)))},
      {"cyclic_triangular", make(CyclicLR(0.001, 0.01, cyclic(5, 8)))},
      {"cyclic_triangular_symmetric", make(CyclicLR(0.01, 0.05, cyclic(6, 0)))},
      {"cyclic_triangular2", make(CyclicLR(0.01, 0.1, cyclic(4, 7, CyclicMode::triangular2)))},
      {"cyclic_exp_range", make(CyclicLR(0.001, 0.1, cyclic(6, 3, CyclicMode::exp_range, 0.97)))},
      {"cyclic_scale_cycle", make(CyclicLR(0.002, 0.02, cyclic(3, 5), scale_cycle, CyclicScaleMode::cycle))},
      {"cyclic_scale_iterations",
       make(CyclicLR(0.002, 0.02, cyclic(4, 2), scale_iterations, CyclicScaleMode::iterations))},
      {"chained_constant_exponential", make(ChainedScheduler(ConstantLR(0.1, 0.5, 4), ExponentialLR(0.1, 0.9)))},
      {"chained_linear_multistep_exponential",
       make(ChainedScheduler(LinearLR(0.2, 0.2, 1.0, 6), MultiStepLR(0.2, {0, 10, 20}, 0.5),
                             ExponentialLR(0.2, 0.98)))},
      {"chained_step_polynomial", make(ChainedScheduler(StepLR(0.1, 5, 0.5), PolynomialLR(0.1, 30, 2.0)))},
      {"chained_cosine_constant",
       make(ChainedScheduler(CosineAnnealingLR(0.1, 20, 0.001), ConstantLR(0.1, 0.5, 6)))},
      {"sequential_linear_cosine",
       make(SequentialLR({10}, LinearLR(0.1, 0.1, 1.0, 10), CosineAnnealingLR(0.1, 50)))},
      {"sequential_constant_exponential_multistep",
       make(SequentialLR({8, 20}, ConstantLR(0.1, 0.5, 5), ExponentialLR(0.1, 0.9), MultiStepLR(0.1, {5, 10}, 0.3)))},
      {"sequential_linear_polynomial_lambda",
       make(SequentialLR({5, 25}, LinearLR(0.05, 0.2, 1.0, 5), PolynomialLR(0.05, 30, 2.0),
                         LambdaLR(0.05, power_095)))},
  };
  return table;
}

// Every schedule performs PyTorch's double operations in PyTorch's order, so
// every lr must be the same double. This includes the cosines, which C++ and
// Python take from the same C library (glibc's cos, correctly rounded in
// practice): on a platform whose libm differs from Python's this test would
// report it rather than hide it.
TEST(ScheduleMorePyTorch, EveryRecordedScheduleMatchesBitForBit) {
  const auto records = golden::schedule_records(golden::data_path("schedules_more.txt"));
  for (const golden::ScheduleRecord& torch : records) {
    const auto found = recorded_schedules().find(torch.name);
    ASSERT_NE(found, recorded_schedules().end()) << "no adamx construction for recorded schedule " << torch.name;
    Sequence s = found->second();
    std::size_t differing = 0;
    for (std::size_t e = 0; e < torch.lr.size(); ++e) {
      if (e > 0) s.step();
      differing += bits(s.lr()) != bits(torch.lr[e]);
      EXPECT_EQ(bits(s.lr()), bits(torch.lr[e])) << torch.name << " epoch " << e << ": " << s.lr() << " vs "
                                                  << torch.lr[e];
    }
    std::printf("[schedule] %-42s %4zu epochs, %zu lrs differ\n", torch.name.c_str(), torch.lr.size(), differing);
  }
  EXPECT_EQ(records.size(), recorded_schedules().size());
}

// After total_steps steps OneCycleLR refuses to go on (PyTorch raises
// ValueError), changing nothing; restart() runs the cycle again.
TEST(OneCycleLR, ThrowsAfterTotalStepsAndChangesNothing) {
  adamx::OneCycleLR s(0.1, 10);
  const double first = s.lr();
  for (int i = 0; i < 10; ++i) s.step();
  const double last = s.lr();
  EXPECT_EQ(s.epoch(), 10);
  EXPECT_THROW(s.step(), std::out_of_range);
  EXPECT_EQ(s.epoch(), 10);
  EXPECT_EQ(bits(s.lr()), bits(last));
  EXPECT_THROW(s.closed_form(11), std::out_of_range);
  EXPECT_THROW(s.closed_form(-1), std::out_of_range);
  // The final lr is min_lr = max_lr / div_factor / final_div_factor, up to the
  // cosine's rounding near its end (≤ a few u of max_lr).
  EXPECT_NEAR(s.closed_form(9), 0.1 / 25.0 / 1e4, 4 * kU * 0.1);
  s.restart();
  EXPECT_EQ(s.epoch(), 0);
  EXPECT_EQ(bits(s.lr()), bits(first));

  // In a chain, the throwing part leaves every part as it was.
  adamx::ChainedScheduler chain(adamx::LinearLR(0.1 / 25.0, 0.5, 1.0, 4), adamx::OneCycleLR(0.1, 3));
  for (int i = 0; i < 3; ++i) chain.step();
  const double chain_lr = chain.lr();
  EXPECT_THROW(chain.step(), std::out_of_range);
  EXPECT_EQ(chain.epoch(), 3);
  EXPECT_EQ(chain.schedule<0>().epoch(), 3);
  EXPECT_EQ(bits(chain.lr()), bits(chain_lr));
}

// Where PyTorch's update is recursive, it must stay within rounding of the
// closed form, computed here independently in long double: each epoch's
// update rounds a few times (≤ 6u relative) and relative errors add up, so
// ≤ 6u·(e + 1) of the initial lr. From-scratch schedules' closed_form is
// their step() and must be equal exactly.
TEST(ScheduleMoreClosedForm, RecursiveFormsStayWithinRoundingOfTheirFormulas) {
  const double lr0 = 0.1;
  adamx::MultiStepLR multistep(lr0, {3, 9, 9, 20}, 0.5);
  adamx::ConstantLR constant(lr0, 0.3, 6);
  adamx::LinearLR linear(lr0, 0.2, 0.9, 17);
  adamx::PolynomialLR polynomial(lr0, 25, 2.5);
  adamx::CyclicLR cyclic_lr(0.01, lr0, cyclic(4, 9, adamx::CyclicMode::exp_range, 0.99));
  adamx::OneCycleLR onecycle(lr0, 60, one_cycle(0.3, adamx::OneCycleAnneal::cos, 25, 1e4, true));
  for (int e = 0; e <= 60; ++e) {
    if (e > 0) {
      multistep.step();
      constant.step();
      linear.step();
      polynomial.step();
      cyclic_lr.step();
      onecycle.step();
    }
    const long double E = e;
    const int passed = (e >= 3) + 2 * (e >= 9) + (e >= 20);
    const long double multistep_ref = lr0 * std::pow(0.5L, passed);
    const long double constant_ref = e < 6 ? lr0 * 0.3L : static_cast<long double>(lr0);
    const long double linear_ref = lr0 * (0.2L + (0.9L - 0.2L) * std::min(E, 17.0L) / 17.0L);
    const long double polynomial_ref = lr0 * std::pow(1.0L - std::min(E, 25.0L) / 25.0L, 2.5L);
    const double tolerance = 6 * kU * (e + 1) * lr0;
    EXPECT_NEAR(multistep.lr(), static_cast<double>(multistep_ref), tolerance) << "epoch " << e;
    EXPECT_NEAR(constant.lr(), static_cast<double>(constant_ref), tolerance) << "epoch " << e;
    EXPECT_NEAR(linear.lr(), static_cast<double>(linear_ref), tolerance) << "epoch " << e;
    EXPECT_NEAR(polynomial.lr(), static_cast<double>(polynomial_ref), tolerance) << "epoch " << e;
    EXPECT_NEAR(multistep.closed_form(e), static_cast<double>(multistep_ref), 2 * kU * lr0);
    EXPECT_NEAR(constant.closed_form(e), static_cast<double>(constant_ref), 2 * kU * lr0);
    EXPECT_NEAR(linear.closed_form(e), static_cast<double>(linear_ref), 4 * kU * lr0);
    EXPECT_EQ(bits(cyclic_lr.closed_form(e)), bits(cyclic_lr.lr()));
    EXPECT_EQ(bits(onecycle.closed_form(e)), bits(onecycle.lr()));
  }
}

// CyclicLR's triangle against its definition, in long double: up from
// base_lr to max_lr in step_size_up steps, down in step_size_down, the
// height halved every cycle (triangular2). A few roundings: ≤ 8u of max_lr.
TEST(CyclicLR, Triangular2FollowsItsDefinition) {
  const double base = 0.01, top = 0.1;
  adamx::CyclicLR s(base, top, cyclic(4, 7, adamx::CyclicMode::triangular2));
  for (int n = 0; n < 60; ++n) {
    if (n > 0) s.step();
    const int cycle = n / 11, within = n % 11;
    const long double rise = within <= 4 ? within / 4.0L : (11 - within) / 7.0L;
    const long double ref = base + (top - base) * rise / std::pow(2.0L, cycle);
    EXPECT_NEAR(s.lr(), static_cast<double>(ref), 8 * kU * top) << "step " << n;
  }
}

TEST(ScheduleMoreDriving, ComposedSchedulesApplyLikeAnyOther) {
  Eigen::VectorXf a = Eigen::VectorXf::Zero(3);
  adamx::AdamW<float> opt;
  opt.add_group({a});
  adamx::SequentialLR s({2}, adamx::ConstantLR(0.1, 0.5, 5), adamx::ExponentialLR(0.1, 0.5));
  s.apply(opt);
  EXPECT_EQ(opt.options(0).lr, 0.05);
  s.step();
  s.step();  // the milestone: ExponentialLR from its epoch 0
  s.apply(opt, 0);
  EXPECT_EQ(s.active(), 1u);
  EXPECT_EQ(opt.options(0).lr, 0.1);
}

template <class Make>
void expect_invalid(Make make, const std::string& field) {
  EXPECT_TRUE(adamx_test::Contains(adamx_test::thrown_message<std::invalid_argument>(make), "invalid " + field + " ="))
      << "a bad " << field;
}

TEST(ScheduleMoreValidation, BadArgumentsThrowNamingTheField) {
  using namespace adamx;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  expect_invalid([] { MultiStepLR(-0.1, {1}); }, "initial_lr");
  expect_invalid([] { MultiStepLR(0.1, {3, -1}); }, "milestones");
  expect_invalid([&] { MultiStepLR(0.1, {3}, nan); }, "gamma");
  expect_invalid([] { ConstantLR(0.1, 0.0); }, "factor");
  expect_invalid([] { ConstantLR(0.1, 1.5); }, "factor");
  expect_invalid([] { ConstantLR(0.1, 0.5, 0); }, "total_iters");
  expect_invalid([] { LinearLR(0.1, 0.0); }, "start_factor");
  expect_invalid([&] { LinearLR(0.1, nan); }, "start_factor");
  expect_invalid([] { LinearLR(0.1, 0.5, -0.1); }, "end_factor");
  expect_invalid([] { LinearLR(0.1, 0.5, 1.0, 0); }, "total_iters");
  expect_invalid([] { PolynomialLR(0.1, 0); }, "total_iters");
  expect_invalid([] { PolynomialLR(0.1, 5, -1.0); }, "power");
  expect_invalid([&] { PolynomialLR(0.1, 5, inf); }, "power");
  expect_invalid([] { LambdaLR(0.1, LambdaLR::Lambda()); }, "lambda");
  expect_invalid([&] { LambdaLR(inf, power_095); }, "initial_lr");
  expect_invalid([] { OneCycleLR(-1.0, 10); }, "max_lr");
  expect_invalid([] { OneCycleLR(0.1, 0); }, "total_steps");
  const auto one_cycle_with = [](auto change) {
    return [change] {
      OneCycleOptions o;
      change(o);
      OneCycleLR(0.1, 10, o);
    };
  };
  expect_invalid(one_cycle_with([](OneCycleOptions& o) { o.pct_start = 1.5; }), "pct_start");
  expect_invalid(one_cycle_with([&](OneCycleOptions& o) { o.pct_start = nan; }), "pct_start");
  expect_invalid(one_cycle_with([](OneCycleOptions& o) { o.pct_start = 0.1; }), "pct_start");  // 0.1·10 = 1
  expect_invalid(one_cycle_with([](OneCycleOptions& o) { o.pct_start = 1.0; }), "pct_start");  // no descent
  expect_invalid(one_cycle_with([](OneCycleOptions& o) { o.div_factor = 0.0; }), "div_factor");
  expect_invalid(one_cycle_with([](OneCycleOptions& o) { o.div_factor = 1e-320; }), "div_factor");
  expect_invalid(one_cycle_with([&](OneCycleOptions& o) { o.final_div_factor = inf; }), "final_div_factor");
  expect_invalid(one_cycle_with([](OneCycleOptions& o) { o.anneal_strategy = static_cast<OneCycleAnneal>(5); }),
                 "anneal_strategy");
  expect_invalid([] { CyclicLR(-0.1, 0.1); }, "base_lr");
  expect_invalid([&] { CyclicLR(0.1, nan); }, "max_lr");
  expect_invalid([] { CyclicLR(0.01, 0.1, cyclic(0, 0)); }, "step_size_up");
  expect_invalid([] { CyclicLR(0.01, 0.1, cyclic(3, -2)); }, "step_size_down");
  expect_invalid([] { CyclicLR(0.01, 0.1, cyclic(3, 3, CyclicMode::exp_range, -1.0)); }, "gamma");
  expect_invalid([] { CyclicLR(0.01, 0.1, cyclic(3, 3, static_cast<CyclicMode>(9))); }, "mode");
  expect_invalid([] { CyclicLR(0.01, 0.1, cyclic(3, 3), CyclicLR::ScaleFn(), CyclicScaleMode::cycle); }, "scale_fn");
  expect_invalid([] { CyclicLR(0.01, 0.1, cyclic(3, 3), scale_cycle, static_cast<CyclicScaleMode>(4)); },
                 "scale_mode");
  expect_invalid([] { SequentialLR({}, ConstantLR(0.1), LinearLR(0.1)); }, "milestones");
  expect_invalid([] { SequentialLR({3, 5}, ConstantLR(0.1), LinearLR(0.1)); }, "milestones");
  expect_invalid([] { SequentialLR({0}, ConstantLR(0.1), LinearLR(0.1)); }, "milestones");
  expect_invalid([] { SequentialLR({4, 4}, ConstantLR(0.1), LinearLR(0.1), LinearLR(0.1)); }, "milestones");
  expect_invalid(
      [] {
        LinearLR stepped(0.1);
        stepped.step();
        SequentialLR({3}, ConstantLR(0.1), stepped);
      },
      "schedules[1]");
  expect_invalid([] { ChainedScheduler(ConstantLR(0.1), ExponentialLR(0.2, 0.9)); }, "schedules[1].initial_lr");
}

// A CyclicLR whose gamma > 1 or a LambdaLR whose callable leaves the valid
// lrs throws at the step that would reach it, changing nothing.
TEST(ScheduleMoreValidation, ACallableOrFactorLeavingTheValidLrsThrowsAndChangesNothing) {
  adamx::LambdaLR lambda(0.1, [](std::int64_t e) { return 1.0 - 0.25 * static_cast<double>(e); });
  for (int i = 0; i < 4; ++i) lambda.step();
  EXPECT_EQ(lambda.lr(), 0.0);
  EXPECT_THROW(lambda.step(), std::invalid_argument);
  EXPECT_EQ(lambda.epoch(), 4);
  EXPECT_EQ(lambda.lr(), 0.0);
  EXPECT_THROW(adamx::LambdaLR(0.1, [](std::int64_t) { return -1.0; }), std::invalid_argument);

  adamx::CyclicLR growing(0.1, 1.0, cyclic(1, 1, adamx::CyclicMode::exp_range, 1e300));
  growing.step();  // 0.1 + 0.9·1e300
  EXPECT_THROW(growing.step(), std::invalid_argument);  // even step: base_lr + 0·inf is NaN
  EXPECT_EQ(growing.epoch(), 1);
}

// ---- state() / restore() ------------------------------------------------------

// Steps `a` k times, saves its state, restores it into `b` (constructed with
// the same arguments), and checks both go on with the same bits.
template <class Schedule>
void expect_exact_resume(Schedule a, Schedule b, int k, int more, const std::string& what) {
  for (int i = 0; i < k; ++i) a.step();
  const adamx::ScheduleState saved = a.state();
  b.restore(saved);
  EXPECT_EQ(b.epoch(), a.epoch()) << what;
  EXPECT_EQ(bits(b.lr()), bits(a.lr())) << what;
  for (int i = 0; i < more; ++i) {
    a.step();
    b.step();
    ASSERT_EQ(bits(b.lr()), bits(a.lr())) << what << " step " << k + i + 1;
  }
}

TEST(ScheduleMoreState, RestoreMidSequenceContinuesBitForBit) {
  using namespace adamx;
  const MultiStepLR multistep(0.1, {3, 3, 8}, 0.5);
  expect_exact_resume(multistep, multistep, 5, 10, "MultiStepLR");
  const ConstantLR constant(0.1, 0.5, 6);
  expect_exact_resume(constant, constant, 3, 10, "ConstantLR");
  const LinearLR linear(0.1, 0.2, 0.8, 9);
  expect_exact_resume(linear, linear, 4, 10, "LinearLR");
  const PolynomialLR polynomial(0.1, 12, 2.5);
  expect_exact_resume(polynomial, polynomial, 5, 10, "PolynomialLR");
  const LambdaLR lambda(0.1, inverse_01);
  expect_exact_resume(lambda, lambda, 7, 10, "LambdaLR");
  const OneCycleLR onecycle(0.1, 30, one_cycle(0.3, OneCycleAnneal::cos, 25, 1e4, true));
  expect_exact_resume(onecycle, onecycle, 12, 18, "OneCycleLR");
  // After its last step a linear OneCycleLR's lr is below 0, as PyTorch's;
  // its state (the step alone) restores it all the same.
  const OneCycleLR onecycle_linear(0.05, 20, one_cycle(0.25, OneCycleAnneal::linear, 10, 100, false));
  expect_exact_resume(onecycle_linear, onecycle_linear, 20, 0, "OneCycleLR at its last step");
  OneCycleLR at_end = onecycle_linear;
  for (int i = 0; i < 20; ++i) at_end.step();
  EXPECT_LT(at_end.lr(), 0.0);
  const CyclicLR cyclic_lr(0.01, 0.1, cyclic(3, 5, CyclicMode::triangular2));
  expect_exact_resume(cyclic_lr, cyclic_lr, 11, 20, "CyclicLR");
  const SequentialLR<LinearLR, PolynomialLR, LambdaLR> sequential({4, 10}, LinearLR(0.1, 0.25, 1.0, 4),
                                                                   PolynomialLR(0.1, 8, 2.0), LambdaLR(0.1, power_095));
  expect_exact_resume(sequential, sequential, 7, 15, "SequentialLR");
  expect_exact_resume(sequential, sequential, 12, 5, "SequentialLR at its third part");
  const ChainedScheduler<ConstantLR, MultiStepLR, CyclicLR> chain(ConstantLR(0.1, 0.5, 4), MultiStepLR(0.1, {2, 6}),
                                                                  CyclicLR(0.1, 0.2, cyclic(3, 3)));
  expect_exact_resume(chain, chain, 5, 10, "ChainedScheduler");
}

// A refused state leaves the schedule exactly as it was: its next steps are
// those of an untouched copy.
template <class Schedule>
void expect_refused(Schedule& s, const adamx::ScheduleState& bad, const std::string& needle) {
  const Schedule untouched = s;
  EXPECT_TRUE(adamx_test::Contains(adamx_test::thrown_message<std::invalid_argument>([&] { s.restore(bad); }), needle));
  Schedule copy = untouched;
  EXPECT_EQ(s.epoch(), copy.epoch());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(bits(s.lr()), bits(copy.lr())) << needle;
    s.step();
    copy.step();
  }
}

TEST(ScheduleMoreState, MismatchingStatesAreRefusedAndChangeNothing) {
  using namespace adamx;
  LinearLR linear(0.1, 0.25, 1.0, 8);
  linear.step();
  expect_refused(linear, LinearLR(0.1, 0.25, 1.0, 9).state(), "setting total_iters = 9");
  expect_refused(linear, ConstantLR(0.1).state(), "the state is a ConstantLR's, this schedule is a LinearLR");
  ScheduleState bad = linear.state();
  bad.values[0].second = std::numeric_limits<double>::quiet_NaN();
  expect_refused(linear, bad, "invalid lr = ");
  bad = linear.state();
  bad.counters[0].second = -1;
  expect_refused(linear, bad, "invalid epoch = -1");
  bad = linear.state();
  bad.values[0].first = "learning_rate";
  expect_refused(linear, bad, "values {learning_rate} instead of {lr}");

  MultiStepLR multistep(0.1, {2, 5});
  expect_refused(multistep, MultiStepLR(0.1, {2, 5, 5}).state(), "settings");

  OneCycleLR onecycle(0.1, 20);
  bad = onecycle.state();
  bad.counters[0].second = 21;
  expect_refused(onecycle, bad, "must be <= total_steps = 20");

  CyclicLR cyclic_lr(0.01, 0.1, cyclic(3, 4));
  expect_refused(cyclic_lr, CyclicLR(0.01, 0.1, cyclic(3, 4), scale_cycle, CyclicScaleMode::cycle).state(),
                 "setting custom_scale_fn");

  using Sequential = SequentialLR<LinearLR, PolynomialLR>;
  Sequential sequential({4}, LinearLR(0.1, 0.5, 1.0, 4), PolynomialLR(0.1, 10, 2.0));
  for (int i = 0; i < 6; ++i) sequential.step();
  bad = sequential.state();
  bad.children[1].counters[0].second = 3;  // at epoch 6 PolynomialLR has run 6 − 4 = 2 epochs
  expect_refused(sequential, bad, "schedule 1 should be at its epoch 2");
  bad = sequential.state();
  bad.children[1].settings[2].second = 3.0;  // power
  expect_refused(sequential, bad, "SequentialLR[1]: setting power = 3");
  bad = sequential.state();
  bad.children[0].values[0].second = -1.0;  // the second child is fine: nothing may be half restored
  expect_refused(sequential, bad, "invalid lr = -1");
  expect_refused(sequential, Sequential({5}, LinearLR(0.1, 0.5, 1.0, 4), PolynomialLR(0.1, 10, 2.0)).state(),
                 "setting milestones[0] = 5");

  ChainedScheduler<ConstantLR, LinearLR> chain(ConstantLR(0.1, 0.5, 3), LinearLR(0.1, 0.5, 1.0, 6));
  chain.step();
  bad = chain.state();
  bad.children[1].counters[0].second = 2;
  expect_refused(chain, bad, "schedule 1 is at epoch 2, the chain at 1");
  bad = chain.state();
  bad.children.pop_back();
  expect_refused(chain, bad, "1 composed schedules instead of 2");
}

}  // namespace
