// adamx::Adan against a transcription of the authors' reference algorithm
// (github.com/sail-sg/Adan, adan.py), run in PyTorch 1.13: tools/torch_golden.py
// (class AdanTranscription) wrote tests/data/adan_parity.bin, the
// parameters after each of 300 steps for two option sets × {float32,
// float64}; the gradients are regenerated here (tests/golden/golden_inputs.hpp)
// and replayed through adamx, and every element of every step is compared.
// The authors' package is not installable here; the transcription follows
// their code operation by operation, so this checks adamx against what
// Adan's users run, independently of the long-double reference of
// tests/test_adan.cpp (which checks it against the equations).
//
// Tolerance. Both compute d, m, v, g + β2·d and n with the same operations
// in the same order (constants cast to the tensor type, one rounding each),
// so the moments agree bit for bit. They evaluate the step differently: the
// authors as two quotients by den = √n/√(1−β3^t) + ε, each scaled and added
// to θ, then a division by 1 + αλ; adamx as one quotient
// [a·m + b·v]/(√n + ε·√(1−β3^t)) with folded constants, and a product with
// 1/(1 + αλ) (include/adamx/rules/adan.hpp). With u the unit roundoff of the
// parameter type, each step may add, per element:
//   6u·|θ_t|            the authors round θ up to three times per step (two
//                       additions, the decay), adamx twice: 3u + 2u < 6u;
//   20u·(|T1| + |T2|)   the step's two terms T1 = α/(1−β1^t)·m/den and
//                       T2 = α·β2/(1−β2^t)·v/den: at most 9 roundings in the
//                       authors' order (3 in den, 3 in each term, its
//                       constant's cast) and 8 in adamx's, relative to the
//                       terms (which may cancel in Δθ, so |Δθ| would not do).
// T1 and T2 are taken from adamx's own m, v and n after the step (equal to
// the authors'), the bound is the running sum over steps (errors added,
// never assumed to cancel), and θ's differences do not feed back (Adan's
// gradient never reads θ). Sensitivity: a relative change of lr by 1e-3
// (float) or 1e-9 (double) must exceed the bound.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"
#include "golden/parity_cases.hpp"
#include "golden/parity_replay.hpp"

namespace {

const golden::AdamParityFile& adan_file() {
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("adan_parity.bin"));
  return file;
}

// The bound of the top of the file, per element and step: 6u·|θ_t| +
// 20u·(|T1| + |T2|), T1 and T2 from adamx's m, v and n after the step,
// summed over the steps (golden/parity_replay.hpp replays the run).
class AdanBound {
 public:
  template <class Options>
  static void set_options(Options& o, const golden::GroupSpec& spec) {
    o.beta1 = spec.beta1;
    o.beta2 = spec.beta2;
    o.beta3 = spec.beta3;
    o.eps = spec.eps;
    o.weight_decay = spec.weight_decay;
    o.no_prox = spec.no_prox;
  }

  AdanBound(const golden::Run& run, double lr_scale, double u, const std::vector<double>& /*theta0*/)
      : run_(run),
        lr_scale_(lr_scale),
        u_(u),
        bound_(run.elements(), 0.0),
        lr_(run.groups.size()),
        bias1_(run.groups.size()),
        bias2_(run.groups.size()),
        sqrt_bias3_(run.groups.size()) {}

  template <class Optimizer, class Params>
  void before_step(Optimizer& /*opt*/, std::size_t /*t*/, const Params& /*params*/) {}

  void after_step(std::size_t t) {
    for (std::size_t g = 0; g < run_.groups.size(); ++g) {
      const golden::GroupSpec& spec = run_.groups[g];
      const double td = static_cast<double>(t);
      lr_[g] = run_.lr[t - 1][g] * lr_scale_;
      bias1_[g] = 1 - std::pow(spec.beta1, td);
      bias2_[g] = 1 - std::pow(spec.beta2, td);
      sqrt_bias3_[g] = std::sqrt(1 - std::pow(spec.beta3, td));
    }
  }

  template <class StateView>
  double element(const golden::ElementAt& at, const StateView& ts) {
    const std::size_t g = at.group;
    const golden::GroupSpec& spec = run_.groups[g];
    const auto i = static_cast<Eigen::Index>(at.index);
    const double den = std::sqrt(static_cast<double>(ts.n[i])) / sqrt_bias3_[g] + spec.eps;
    const double terms = lr_[g] / bias1_[g] * std::fabs(static_cast<double>(ts.m[i])) / den +
                         lr_[g] * spec.beta2 / bias2_[g] * std::fabs(static_cast<double>(ts.v[i])) / den;
    bound_[at.flat] += u_ * (6 * std::fabs(at.theirs) + 20 * terms);
    return bound_[at.flat];
  }

 private:
  const golden::Run& run_;
  double lr_scale_;
  double u_;
  std::vector<double> bound_;
  // Per group, for the step just taken: lr, 1 − β1^t, 1 − β2^t, sqrt(1 − β3^t).
  std::vector<double> lr_, bias1_, bias2_, sqrt_bias3_;
};

golden::Deviation replay_run(const golden::Run& run, double lr_scale = 1.0) {
  return run.width == 4 ? golden::replay<adamx::Adan<float>, AdanBound>(run, lr_scale, "authors'")
                        : golden::replay<adamx::Adan<double>, AdanBound>(run, lr_scale, "authors'");
}

const char* const kRunNames[] = {"adan_default", "adan_decay_groups_prox_no_prox"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

// The file's part of the case tests (golden/parity_replay.hpp).
struct AdanParityRuns {
  static constexpr const char* kFile = "adan_parity.bin";
  static constexpr int kOptimizer = 3;
  static constexpr const char* kRecorder = "the transcription";
  static constexpr int kNameWidth = 32;
  static constexpr double kNormwiseTarget = 0;  // not checked: the bound is the target
  static const golden::Run* find_run(const std::string& name, int width) {
    return golden::find_run(adan_file(), name, width);
  }
  static golden::Deviation replay_run(const golden::Run& run, double lr_scale) {
    return ::replay_run(run, lr_scale);
  }
};

class AdanParity : public testing::TestWithParam<ParityCase> {};

TEST_P(AdanParity, EveryStepMatchesTheAuthorsAlgorithmWithinTheRoundingBound) {
  golden::check_parity_case<AdanParityRuns>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Runs, AdanParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(AdanParityFile, HoldsExactlyTheExpectedRuns) {
  const golden::AdamParityFile& file = adan_file();
  golden::expect_exactly_the_cases<AdanParityRuns>(file.runs.size(), all_cases(), file.torch);
  // The second run's groups decay both ways.
  const golden::Run* run = AdanParityRuns::find_run("adan_decay_groups_prox_no_prox", 4);
  ASSERT_NE(run, nullptr);
  ASSERT_EQ(run->groups.size(), 2u);
  EXPECT_FALSE(run->groups[0].no_prox);
  EXPECT_TRUE(run->groups[1].no_prox);
  EXPECT_GT(run->groups[0].weight_decay, 0.0);
  EXPECT_GT(run->groups[1].weight_decay, 0.0);
}

// The comparison has the power to fail: a relative change of lr far below
// what a loss curve would show is caught.
TEST(AdanParitySensitivity, ASmallLearningRateChangeExceedsTheBound) {
  golden::expect_small_lr_change_caught<AdanParityRuns>(kRunNames);
}

}  // namespace
