// adamx::ScheduleFreeAdamW against a transcription of the authors' reference
// algorithm (github.com/facebookresearch/schedule_free,
// schedulefree/adamw_schedulefree.py, class AdamWScheduleFree), run in
// PyTorch 1.13: tools/torch_golden.py (class ScheduleFreeAdamWTranscription)
// wrote tests/data/schedule_free_parity.bin, the parameters (y) after each
// of 300 steps for two option sets × {float32, float64}; the gradients are
// regenerated here (tests/golden/golden_inputs.hpp) and replayed through
// adamx, and every element of every step is compared. The authors' package
// is not installable here; the transcription follows their code operation by
// operation, so this checks adamx against what its users run, independently
// of the long-double reference of tests/test_schedule_free.cpp.
//
// Tolerance. Both compute v with the same operations in the same order, so
// v agrees bit for bit; the averaging's scalars (lr_max, W, c_t) are doubles
// computed by the same formulas. They evaluate u differently: the authors
// as g/(sqrt(v/(1−β2^t)) + ε) (4 roundings), adamx as
// [sqrt(1−β2^t)·g]/(sqrt(v) + ε·sqrt(1−β2^t)) with constants rounded once
// (6): 10u·|u| between them, plus 2u·λ|y| for the decay. The differences
// then propagate as the equations carry them (y ← (1−c)y + cz + a·u,
// z ← z − lr·u, u reading y through the decay): per element and step,
//   err_z ← err_z + lr·err_u + 2u·|z|            (the product and the sum)
//   err_y ← (1−c)·err_y + c·err_z + |a|·err_u + 4u·|y| + 3u·|z − y|
// with err_u = 10u·|u| + λ·err_y, |u| taken from adamx's v after the step.
// Sensitivity: a relative change of lr by 1e-3 (float) or 1e-9 (double) must
// exceed the bound.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"
#include "golden/parity_cases.hpp"
#include "golden/parity_replay.hpp"

namespace {

const golden::AdamParityFile& parity_file() {
  static const golden::AdamParityFile file =
      golden::read_adam_parity(golden::data_path("schedule_free_parity.bin"));
  return file;
}

// The recursions of the top of the file, per element: err_z and err_y
// carried from step to step, err_y the bound (golden/parity_replay.hpp
// replays the run).
template <class Scalar>
class ScheduleFreeBound {
 public:
  template <class Options>
  static void set_options(Options& o, const golden::GroupSpec& spec) {
    o.set_betas(spec.beta1, spec.beta2);
    o.eps = spec.eps;
    o.weight_decay = spec.weight_decay;
    o.warmup_steps = spec.warmup_steps;
    o.r = spec.r;
    o.weight_lr_power = spec.weight_lr_power;
  }

  ScheduleFreeBound(const golden::Run& run, double lr_scale, double u, const std::vector<double>& /*theta0*/)
      : run_(run),
        lr_scale_(lr_scale),
        u_(u),
        err_y_(run.elements(), 0.0),
        err_z_(run.elements(), 0.0),
        lr_max_(run.groups.size(), -1.0),
        weight_sum_(run.groups.size(), 0.0),
        c_(run.groups.size()),
        a_(run.groups.size()),
        lr_(run.groups.size()),
        bias2_(run.groups.size()) {}

  // y before the step, for the decay's and the interpolation's terms.
  template <class Optimizer>
  void before_step(Optimizer& /*opt*/, std::size_t /*t*/, const std::vector<golden::ParityMatrix<Scalar>>& params) {
    before_ = params;
  }

  void after_step(std::size_t t) {
    for (std::size_t g = 0; g < run_.groups.size(); ++g) {
      const golden::GroupSpec& spec = run_.groups[g];
      const double td = static_cast<double>(t);
      const double base = run_.lr[t - 1][g] * lr_scale_;
      lr_[g] = spec.warmup_steps > 0 && td < spec.warmup_steps ? base * (td / spec.warmup_steps) : base;
      lr_max_[g] = std::max(lr_max_[g], lr_[g]);
      const double w = std::pow(td, spec.r) * std::pow(lr_max_[g], spec.weight_lr_power);
      weight_sum_[g] += w;
      c_[g] = weight_sum_[g] != 0 ? w / weight_sum_[g] : 0;
      a_[g] = lr_[g] * (spec.beta1 * (1 - c_[g]) - 1);
      bias2_[g] = 1 - std::pow(spec.beta2, td);
    }
  }

  template <class StateView>
  double element(const golden::ElementAt& at, const StateView& ts) {
    const std::size_t g = at.group, e = at.flat;
    const golden::GroupSpec& spec = run_.groups[g];
    const auto i = static_cast<Eigen::Index>(at.index);
    const double y_before = static_cast<double>(before_[at.tensor].data()[at.index]);
    const double z = static_cast<double>(ts.z[i]);
    const double normalised = std::fabs(at.grad) / (std::sqrt(static_cast<double>(ts.v[i]) / bias2_[g]) + spec.eps) +
                              spec.weight_decay * std::fabs(y_before);
    const double err_u =
        10 * u_ * normalised + 2 * u_ * spec.weight_decay * std::fabs(y_before) + spec.weight_decay * err_y_[e];
    err_z_[e] += lr_[g] * err_u + 2 * u_ * std::fabs(z);
    err_y_[e] = (1 - c_[g]) * err_y_[e] + c_[g] * err_z_[e] + std::fabs(a_[g]) * err_u + 4 * u_ * std::fabs(at.theirs) +
                3 * u_ * (std::fabs(z - y_before) + lr_[g] * normalised);  // ≥ |z − y| before the step
    return err_y_[e];
  }

 private:
  const golden::Run& run_;
  double lr_scale_;
  double u_;
  std::vector<double> err_y_, err_z_;
  // The averaging's running values, as both compute them (in double).
  std::vector<double> lr_max_, weight_sum_;
  // Per group, for the step just taken: c_t, lr_t·(β1·(1 − c_t) − 1), lr_t, 1 − β2^t.
  std::vector<double> c_, a_, lr_, bias2_;
  std::vector<golden::ParityMatrix<Scalar>> before_;
};

golden::Deviation replay_run(const golden::Run& run, double lr_scale = 1.0) {
  return run.width == 4
             ? golden::replay<adamx::ScheduleFreeAdamW<float>, ScheduleFreeBound<float>>(run, lr_scale, "authors'")
             : golden::replay<adamx::ScheduleFreeAdamW<double>, ScheduleFreeBound<double>>(run, lr_scale, "authors'");
}

const char* const kRunNames[] = {"schedule_free_default", "schedule_free_warmup_decay_groups"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

// The file's part of the case tests (golden/parity_replay.hpp).
struct ScheduleFreeParityRuns {
  static constexpr const char* kFile = "schedule_free_parity.bin";
  static constexpr int kOptimizer = 4;
  static constexpr const char* kRecorder = "the transcription";
  static constexpr int kNameWidth = 36;
  static constexpr double kNormwiseTarget = 0;  // not checked: the bound is the target
  static const golden::Run* find_run(const std::string& name, int width) {
    return golden::find_run(parity_file(), name, width);
  }
  static golden::Deviation replay_run(const golden::Run& run, double lr_scale) {
    return ::replay_run(run, lr_scale);
  }
};

class ScheduleFreeParity : public testing::TestWithParam<ParityCase> {};

TEST_P(ScheduleFreeParity, EveryStepMatchesTheAuthorsAlgorithmWithinTheRoundingBound) {
  golden::check_parity_case<ScheduleFreeParityRuns>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Runs, ScheduleFreeParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(ScheduleFreeParityFile, HoldsExactlyTheExpectedRuns) {
  const golden::AdamParityFile& file = parity_file();
  golden::expect_exactly_the_cases<ScheduleFreeParityRuns>(file.runs.size(), all_cases(), file.torch);
}

TEST(ScheduleFreeParitySensitivity, ASmallLearningRateChangeExceedsTheBound) {
  golden::expect_small_lr_change_caught<ScheduleFreeParityRuns>(kRunNames);
}

}  // namespace
