// Learning-rate schedules (include/adamx/schedule.hpp, reduce_on_plateau.hpp):
// against sequences recorded from PyTorch 1.13's schedulers
// (tests/data/schedules.txt, written by tools/torch_golden.py), against the
// closed forms, and their validation and optimizer driving.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"

namespace {

constexpr double kU = std::numeric_limits<double>::epsilon() / 2;

// A schedule behind a uniform face, so one loop replays them all.
struct Sequence {
  std::function<double()> lr;
  std::function<void()> step;
};
template <class Schedule>
Sequence sequence_of(Schedule schedule) {
  auto shared = std::make_shared<Schedule>(std::move(schedule));
  return {[shared] { return shared->lr(); }, [shared] { shared->step(); }};
}

// The adamx construction of each recorded schedule, as its record's
// description in schedules.txt spells out, and whether its lr involves cos.
struct Recorded {
  std::function<Sequence()> make;
  bool uses_cos;
};
const std::map<std::string, Recorded>& recorded_schedules() {
  using adamx::LinearWarmup;
  static const std::map<std::string, Recorded> table{
      {"step", {[] { return sequence_of(adamx::StepLR(0.1, 7, 0.5)); }, false}},
      {"step_default_gamma", {[] { return sequence_of(adamx::StepLR(0.3, 3)); }, false}},
      {"exponential", {[] { return sequence_of(adamx::ExponentialLR(0.1, 0.95)); }, false}},
      {"cosine", {[] { return sequence_of(adamx::CosineAnnealingLR(0.1, 30, 0.001)); }, true}},
      {"cosine_no_floor", {[] { return sequence_of(adamx::CosineAnnealingLR(0.05, 17)); }, true}},
      {"warmup_constant",
       {[] { return sequence_of(LinearWarmup<adamx::FixedLR>(adamx::FixedLR(0.01), 10, 0.25)); }, false}},
      {"warmup_step",
       {[] { return sequence_of(LinearWarmup<adamx::StepLR>(adamx::StepLR(0.1, 10, 0.5), 5, 0.1)); }, false}},
      {"warmup_exponential",
       {[] { return sequence_of(LinearWarmup<adamx::ExponentialLR>(adamx::ExponentialLR(0.1, 0.9), 8, 0.5)); },
        false}},
      {"warmup_cosine",
       {[] {
          return sequence_of(
              LinearWarmup<adamx::CosineAnnealingLR>(adamx::CosineAnnealingLR(0.01, 280, 1e-4), 20, 0.1));
        },
        true}},
  };
  return table;
}

// Schedules without cos perform PyTorch's double operations in PyTorch's
// order (products and one quotient per epoch), so they must agree bit for
// bit. With cos the operations are the same too, but cos comes from the C
// library, which C++ and Python share here and which may differ by an ulp
// elsewhere; allow 8u of the largest lr per epoch (each recursive update
// evaluates two cosines and four other roundings; errors add up over epochs).
TEST(SchedulePyTorch, EveryRecordedScheduleMatches) {
  const auto records = golden::read_records(golden::data_path("schedules.txt"));
  std::size_t schedules = 0;
  for (std::size_t r = 0; r < records.size(); ++r) {
    if (records[r][0] != "schedule") continue;
    const std::string& name = records[r].at(1);
    const std::vector<double> torch = golden::numbers(records.at(r + 1), "lr");
    ASSERT_EQ(torch.size(), std::stoul(records[r].at(2))) << name;
    const auto found = recorded_schedules().find(name);
    ASSERT_NE(found, recorded_schedules().end()) << "no adamx construction for recorded schedule " << name;
    Sequence s = found->second.make();
    const double lr_scale = *std::max_element(torch.begin(), torch.end());
    double max_diff = 0;
    for (std::size_t e = 0; e < torch.size(); ++e) {
      if (e > 0) s.step();
      const double diff = std::fabs(s.lr() - torch[e]);
      max_diff = std::max(max_diff, diff);
      if (found->second.uses_cos) {
        EXPECT_LE(diff, 8 * kU * static_cast<double>(e + 1) * lr_scale) << name << " epoch " << e;
      } else {
        EXPECT_EQ(s.lr(), torch[e]) << name << " epoch " << e;
      }
    }
    std::printf("[schedule] %-20s %4zu epochs  max |adamx - torch| %.3e\n", name.c_str(), torch.size(), max_diff);
    ++schedules;
  }
  EXPECT_EQ(schedules, recorded_schedules().size());
}

adamx::PlateauMode mode_of(const std::string& s) {
  if (s == "min") return adamx::PlateauMode::min;
  if (s == "max") return adamx::PlateauMode::max;
  throw std::runtime_error("bad mode " + s);
}
adamx::ThresholdMode threshold_mode_of(const std::string& s) {
  if (s == "rel") return adamx::ThresholdMode::rel;
  if (s == "abs") return adamx::ThresholdMode::abs;
  throw std::runtime_error("bad threshold mode " + s);
}

// Comparisons, one product and a max: bit for bit.
TEST(SchedulePyTorch, ReduceLROnPlateauMatchesForEveryRecordedMetricSequence) {
  const auto records = golden::read_records(golden::data_path("schedules.txt"));
  std::size_t plateaus = 0;
  for (std::size_t r = 0; r < records.size(); ++r) {
    const auto& h = records[r];
    if (h[0] != "plateau") continue;
    ASSERT_EQ(h.size(), 12u);
    adamx::PlateauOptions o;
    o.mode = mode_of(h[4]);
    o.factor = golden::to_double(h[5]);
    o.patience = std::stoll(h[6]);
    o.threshold = golden::to_double(h[7]);
    o.threshold_mode = threshold_mode_of(h[8]);
    o.cooldown = std::stoll(h[9]);
    o.min_lr = golden::to_double(h[10]);
    o.eps = golden::to_double(h[11]);
    adamx::ReduceLROnPlateau plateau(golden::to_double(h[3]), o);
    const std::vector<double> metrics = golden::numbers(records.at(r + 1), "metric");
    const std::vector<double> torch = golden::numbers(records.at(r + 2), "lr");
    ASSERT_EQ(metrics.size(), torch.size());
    int reductions = 0;
    for (std::size_t e = 0; e < metrics.size(); ++e) {
      reductions += plateau.step(metrics[e]);
      EXPECT_EQ(plateau.lr(), torch[e]) << h[1] << " epoch " << e;
    }
    std::printf("[schedule] %-26s %zu epochs, %d reductions, final lr %g\n", h[1].c_str(), metrics.size(),
                reductions, plateau.lr());
    EXPECT_GT(reductions, 0) << h[1] << " never reduced: the recorded case tests nothing";
    ++plateaus;
  }
  EXPECT_EQ(plateaus, 5u);
}

// PyTorch's recursive updates against their closed forms, evaluated here in
// long double as an independent reference. Each recursive epoch rounds a few
// times (≤ 6u relative), and relative errors add up: ≤ 6u·(e + 1) of the lr's
// scale. The cosine's trough step, where PyTorch switches formula, is covered.
TEST(ScheduleClosedForm, RecursiveFormsStayWithinRoundingOfTheirFormulas) {
  const long double pi = 3.141592653589793238462643383279502884L;
  adamx::StepLR step(0.1, 7, 0.5);
  adamx::ExponentialLR exponential(0.1, 0.95);
  adamx::CosineAnnealingLR cosine(0.1, 30, 0.001);
  for (int e = 0; e <= 130; ++e) {
    if (e > 0) {
      step.step();
      exponential.step();
      cosine.step();
    }
    const double scale = 6 * kU * (e + 1);
    const long double step_ref = 0.1L * std::pow(0.5L, e / 7);
    const long double exp_ref = 0.1L * std::pow(static_cast<long double>(0.95), e);
    const long double cos_ref = 0.001L + (0.1L - 0.001L) * (1 + std::cos(pi * e / 30)) / 2;
    EXPECT_NEAR(step.lr(), static_cast<double>(step_ref), scale * 0.1) << "StepLR epoch " << e;
    EXPECT_NEAR(exponential.lr(), static_cast<double>(exp_ref), scale * 0.1) << "ExponentialLR epoch " << e;
    EXPECT_NEAR(cosine.lr(), static_cast<double>(cos_ref), scale * 0.1) << "CosineAnnealingLR epoch " << e;
    EXPECT_NEAR(step.closed_form(e), static_cast<double>(step_ref), 2 * kU * 0.1);
    EXPECT_NEAR(cosine.closed_form(e), static_cast<double>(cos_ref), 8 * kU * 0.1);
  }
}

TEST(LinearWarmup, RisesFromStartFactorThenRunsTheScheduleFromItsEpochZero) {
  adamx::LinearWarmup<adamx::ExponentialLR> warm(adamx::ExponentialLR(0.2, 0.9), 4, 0.25);
  adamx::ExponentialLR alone(0.2, 0.9);
  EXPECT_EQ(warm.lr(), 0.2 * 0.25);
  for (int e = 1; e < 4; ++e) {
    const double before = warm.lr();
    warm.step();
    EXPECT_GT(warm.lr(), before);
    EXPECT_LT(warm.lr(), 0.2);
    // LinearLR's closed form: base·(s + (1 − s)·e/W), within a few roundings per epoch.
    EXPECT_NEAR(warm.lr(), 0.2 * (0.25 + 0.75 * e / 4.0), 8 * kU * e * 0.2);
  }
  warm.step();  // epoch 4: the schedule's epoch 0, at exactly its initial lr
  EXPECT_EQ(warm.lr(), 0.2);
  for (int e = 5; e < 40; ++e) {
    warm.step();
    alone.step();
    EXPECT_EQ(warm.lr(), alone.lr()) << "epoch " << e;
  }
  EXPECT_EQ(warm.epoch(), 39);
  EXPECT_EQ(warm.after().epoch(), 35);
}

TEST(ScheduleDriving, ApplySetsOneGroupOrEveryGroup) {
  Eigen::VectorXf a = Eigen::VectorXf::Zero(3), b = Eigen::VectorXf::Zero(2);
  adamx::AdamW<float> opt;
  adamx::AdamW<float>::Options o;
  o.lr = 0.5;
  opt.add_group({a}, o, "weights");
  opt.add_group({b}, o, "biases");
  adamx::StepLR schedule(0.1, 2, 0.5);
  schedule.apply(opt, 1);
  EXPECT_EQ(opt.options(0).lr, 0.5);
  EXPECT_EQ(opt.options(1).lr, 0.1);
  schedule.step();
  schedule.step();
  schedule.apply(opt);
  EXPECT_EQ(opt.options(0).lr, 0.05);
  EXPECT_EQ(opt.options(1).lr, 0.05);
  EXPECT_THROW(schedule.apply(opt, 2), std::out_of_range);
  EXPECT_EQ(opt.options(1).lr, 0.05);
}

template <class Make>
void expect_invalid(Make make, const std::string& field) {
  try {
    make();
    ADD_FAILURE() << "no exception for a bad " << field;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("invalid " + field + " ="), std::string::npos) << e.what();
  }
}

TEST(ScheduleValidation, BadArgumentsThrowNamingTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  expect_invalid([] { adamx::FixedLR(-1.0); }, "lr");
  expect_invalid([&] { adamx::StepLR(nan, 3); }, "initial_lr");
  expect_invalid([] { adamx::StepLR(0.1, 0); }, "step_size");
  expect_invalid([&] { adamx::StepLR(0.1, 3, inf); }, "gamma");
  expect_invalid([] { adamx::ExponentialLR(0.1, -0.5); }, "gamma");
  expect_invalid([&] { adamx::ExponentialLR(inf, 0.5); }, "initial_lr");
  expect_invalid([] { adamx::CosineAnnealingLR(0.1, 0); }, "T_max");
  expect_invalid([] { adamx::CosineAnnealingLR(0.1, 10, -1e-3); }, "eta_min");
  expect_invalid([] { adamx::LinearWarmup<adamx::FixedLR>(adamx::FixedLR(0.1), 0); }, "epochs");
  expect_invalid([] { adamx::LinearWarmup<adamx::FixedLR>(adamx::FixedLR(0.1), 5, 0.0); }, "start_factor");
  expect_invalid([] { adamx::LinearWarmup<adamx::FixedLR>(adamx::FixedLR(0.1), 5, 1.5); }, "start_factor");
  const auto plateau = [](auto change) {
    return [change] {
      adamx::PlateauOptions o;
      change(o);
      adamx::ReduceLROnPlateau p(0.1, o);
    };
  };
  expect_invalid([] { adamx::ReduceLROnPlateau(-0.1); }, "initial_lr");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.factor = 1.0; }), "factor");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.factor = -0.1; }), "factor");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.patience = -1; }), "patience");
  expect_invalid(plateau([&](adamx::PlateauOptions& o) { o.threshold = nan; }), "threshold");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.cooldown = -2; }), "cooldown");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.min_lr = -1; }), "min_lr");
  expect_invalid(plateau([&](adamx::PlateauOptions& o) { o.eps = inf; }), "eps");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.mode = static_cast<adamx::PlateauMode>(7); }), "mode");
  expect_invalid(plateau([](adamx::PlateauOptions& o) { o.threshold_mode = static_cast<adamx::ThresholdMode>(7); }),
                 "threshold_mode");
}

TEST(ReduceLROnPlateau, NanMetricIsABadEpochAndTheFloorHolds) {
  adamx::PlateauOptions o;
  o.patience = 1;
  o.factor = 0.5;
  o.min_lr = 0.03;
  adamx::ReduceLROnPlateau p(0.1, o);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(p.step(1.0));
  EXPECT_FALSE(p.step(nan));
  EXPECT_EQ(p.num_bad_epochs(), 1);
  EXPECT_TRUE(p.step(nan));  // second bad epoch > patience 1
  EXPECT_EQ(p.lr(), 0.05);
  EXPECT_EQ(p.best(), 1.0);
  EXPECT_FALSE(p.step(2.0));
  EXPECT_TRUE(p.step(2.0));
  EXPECT_EQ(p.lr(), 0.03);  // max(0.025, min_lr)
  EXPECT_FALSE(p.step(2.0));
  EXPECT_FALSE(p.step(2.0));  // at the floor: lr − new = 0 ≤ eps, nothing changes
  EXPECT_EQ(p.lr(), 0.03);
}

}  // namespace
