// adamx::Adam and adamx::AdamW against torch.optim.Adam and AdamW (PyTorch
// 1.13): tests/data/adam_parity.bin holds PyTorch's parameters after each of
// 300 steps for 7 option sets × {float32, float64}; the gradients are
// regenerated here (tests/golden/golden_inputs.hpp) and replayed through
// adamx, and every element of every step is compared.
//
// Tolerance. The two libraries perform the same operations on m and v, but
// evaluate the step differently: PyTorch as α/(1−β1^t) · m / (√v/√(1−β2^t) + ε),
// adamx in Kingma & Ba's folded form [α√(1−β2^t)/(1−β1^t)] · m / (√v + ε√(1−β2^t))
// (include/adamx/rules/adam.hpp). Algebraically equal, they round differently. With
// u the unit roundoff of the parameter type (2^-24 for float, 2^-53 for
// double), each step may add, per element:
//   4u·|θ_t|   each library rounds θ once per step, twice with AdamW's θ(1 − αλ):
//              results may differ by one rounding of each, 2 × 2u|θ_t|;
//   16u·|Δ_t|  each library computes the step Δ_t = θ_t − θ_{t−1} with at most
//              8 roundings (constants rounded to the parameter type, √, +, ÷, ×):
//              relative error ≤ 8u each, 16u between them;
//   32u·lr_t   m and v: the same operations in the same order, so equal unless a
//              compiler contracts a·b + c into one fused multiply-add (allowed,
//              and done by some PyTorch builds); that perturbs m by ≤ 2u/(1 − β1)
//              of its terms' size (≤ 20u for β1 = 0.9, 10u for 0.8), which
//              moves Δ by that fraction of lr times |m̂|/(√v̂ + ε), measured in
//              PyTorch's runs as ≤ 1.12 with β1 = 0.9 and ≤ 1.72 with β1 = 0.8:
//              ≤ 22u·lr and ≤ 18u·lr, inside 32u·lr.
// The bound is the running sum of these, taken on PyTorch's trajectory:
// errors are added, never assumed to cancel, which the random signs of real
// rounding make a safe overestimate (typically by √t). Differences in θ
// propagate with a factor ≤ 1 per step except through L2 decay, where the
// gradient λθ feeds θ back; at |θ| ≫ lr that factor is 1 + O(lr·λ/|g|).
// For float64 the target of docs/design.md section 8 is checked as well: the normwise
// relative difference max|Δθ| / max|θ| stays ≤ 1e-12 at every step.
// Sensitivity: a relative change of lr by 1e-3 (float) or 1e-9 (double) must
// exceed the bound, so the comparison has the power to fail.
//
// adamx::RAdam against torch.optim.RAdam (tests/data/radam_parity.bin, same
// layout). Both compute ρ_t and r_t in double by the same formula in the same
// order. PyTorch 1.13 adds ε to √v before bias correction, √(1−β2^t)/(√v + ε),
// where the RAdam paper (like Adam) adds it to √v̂; the replay emulates PyTorch by
// setting adamx's ε to ε/√(1−β2^t) before each step (docs/design.md,
// "Baselines"), so the comparison checks everything else to rounding. PyTorch's
// rectified step takes 11 roundings (four double constants cast to the tensor
// type, seven tensor operations) against adamx's 6: the Δ term is 24u·|Δ_t|
// (≥ 17u) for RAdam instead of 16u.
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
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("adam_parity.bin"));
  return file;
}

const golden::AdamParityFile& radam_file() {
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("radam_parity.bin"));
  return file;
}

// The bound of the top of the file, per element and step: 4u·|θ_t| +
// 16u·|Δ_t| (24u for RAdam) + 32u·lr_t, summed over the steps on PyTorch's
// trajectory (golden/parity_replay.hpp replays the run).
class AdamBound {
 public:
  template <class Options>
  static void set_options(Options& o, const golden::GroupSpec& spec) {
    o.set_betas(spec.beta1, spec.beta2);
    o.eps = spec.eps;
    o.weight_decay = spec.weight_decay;
    o.amsgrad = spec.amsgrad;
    o.maximize = spec.maximize;
  }

  AdamBound(const golden::Run& run, double /*lr_scale*/, double u, const std::vector<double>& theta0)
      : run_(run), u_(u), rectified_(run.optimizer == 2), bound_(run.elements(), 0.0), previous_(theta0) {}

  template <class Optimizer, class Params>
  void before_step(Optimizer& opt, std::size_t t, const Params& /*params*/) {
    if (rectified_)  // PyTorch's ε placement, see the top of the file
      for (std::size_t g = 0; g < run_.groups.size(); ++g)
        opt.set_eps(g, run_.groups[g].eps / std::sqrt(1.0 - std::pow(run_.groups[g].beta2, static_cast<double>(t))));
  }

  void after_step(std::size_t t) {
    lr_max_ = 0;
    for (const double lr : run_.lr[t - 1]) lr_max_ = std::max(lr_max_, lr);
  }

  template <class StateView>
  double element(const golden::ElementAt& at, const StateView& /*ts*/) {
    const double step_roundings = rectified_ ? 24 : 16;
    bound_[at.flat] += u_ * (4 * std::fabs(at.theirs) + step_roundings * std::fabs(at.theirs - previous_[at.flat]) +
                             32 * lr_max_);
    previous_[at.flat] = at.theirs;
    return bound_[at.flat];
  }

 private:
  const golden::Run& run_;
  double u_;
  bool rectified_;  // RAdam (the files' optimizer 2)
  std::vector<double> bound_, previous_;  // per element: the bound, PyTorch's θ after the last step
  double lr_max_ = 0;                     // the largest lr of the step's groups
};

template <class Optimizer>
golden::Deviation replay(const golden::Run& run, double lr_scale) {
  return golden::replay<Optimizer, AdamBound>(run, lr_scale, "torch");
}

golden::Deviation replay_run(const golden::Run& run, double lr_scale = 1.0) {
  if (run.optimizer == 2)
    return run.width == 4 ? replay<adamx::RAdam<float>>(run, lr_scale) : replay<adamx::RAdam<double>>(run, lr_scale);
  if (run.width == 4)
    return run.optimizer == 0 ? replay<adamx::Adam<float>>(run, lr_scale) : replay<adamx::AdamW<float>>(run, lr_scale);
  return run.optimizer == 0 ? replay<adamx::Adam<double>>(run, lr_scale) : replay<adamx::AdamW<double>>(run, lr_scale);
}

const char* const kRunNames[] = {"adam_default",       "adam_weight_decay", "adam_amsgrad",
                                  "adam_maximize",      "adam_warmup_cosine", "adamw_default",
                                  "adamw_groups_amsgrad_maximize_steplr", "radam_default",
                                  "radam_weight_decay_betas"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

// The file's part of the case tests (golden/parity_replay.hpp).
struct AdamParityRuns {
  static constexpr const char* kFile = "adam_parity.bin";
  static constexpr int kOptimizer = -1;  // Adam, AdamW and RAdam
  static constexpr const char* kRecorder = "PyTorch";
  static constexpr int kNameWidth = 38;
  static constexpr double kNormwiseTarget = 1e-12;  // design.md section 8, float64
  static const golden::Run* find_run(const std::string& name, int width) {
    if (const golden::Run* run = golden::find_run(radam_file(), name, width)) return run;
    return golden::find_run(parity_file(), name, width);
  }
  static golden::Deviation replay_run(const golden::Run& run, double lr_scale) {
    return ::replay_run(run, lr_scale);
  }
};

class AdamParity : public testing::TestWithParam<ParityCase> {};

TEST_P(AdamParity, EveryStepMatchesPyTorchWithinTheRoundingBound) {
  golden::check_parity_case<AdamParityRuns>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Runs, AdamParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(AdamParityFile, HoldsExactlyTheExpectedRunsAndRecordsTheTorchVersion) {
  golden::expect_exactly_the_cases<AdamParityRuns>(parity_file().runs.size() + radam_file().runs.size(),
                                                   all_cases(), parity_file().torch);
}

// The comparison has the power to fail: a small change of lr, far below what
// a reader would notice in a loss curve, is caught.
TEST(AdamParitySensitivity, ASmallLearningRateChangeExceedsTheBound) {
  const char* const names[] = {"adam_default"};
  golden::expect_small_lr_change_caught<AdamParityRuns>(names);
}

}  // namespace
