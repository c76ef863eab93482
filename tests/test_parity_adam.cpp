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

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include "golden/golden_data.hpp"
#include "golden/golden_inputs.hpp"
#include "golden/parity_cases.hpp"

namespace {

const golden::AdamParityFile& parity_file() {
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("adam_parity.bin"));
  return file;
}

const golden::AdamParityFile& radam_file() {
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("radam_parity.bin"));
  return file;
}

const golden::Run* find_run(const std::string& name, int width) {
  for (const golden::Run& run : radam_file().runs)
    if (run.name == name && run.width == width) return &run;
  for (const golden::Run& run : parity_file().runs)
    if (run.name == name && run.width == width) return &run;
  return nullptr;
}

struct Deviation {
  bool inputs_match = false;
  double max_ratio = 0;     // max over steps and elements of |adamx − torch| / bound
  double max_abs = 0;       // max |adamx − torch|
  double max_relative = 0;  // max over steps of max|adamx − torch| / max|torch θ|
  double max_ulps = 0;      // max |adamx − torch| in ulps of the torch value
  std::size_t bitwise_equal = 0, compared = 0;
  std::string worst;        // where max_ratio was reached
};

template <class Scalar, class Optimizer>
Deviation replay(const golden::Run& run, double lr_scale) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const double u = std::numeric_limits<Scalar>::epsilon() / 2;
  constexpr bool kRAdam = std::is_same<Optimizer, adamx::RAdam<Scalar>>::value;
  const double step_roundings = kRAdam ? 24 : 16;
  golden::SplitMix64 rng(run.seed);

  // Parameters in PyTorch's (row-major) element order.
  std::vector<Matrix> params, grads;
  const std::vector<double> theta0 = golden::uniform_values(rng, run.elements());
  std::uint64_t hash = golden::fnv1a64<Scalar>(theta0);
  std::size_t offset = 0;
  for (const golden::TensorSpec& t : run.tensors) {
    Matrix p(t.rows, t.cols);
    for (std::size_t i = 0; i < t.size(); ++i) p.data()[i] = static_cast<Scalar>(theta0[offset + i]);
    params.push_back(p);
    grads.emplace_back(t.rows, t.cols);
    offset += t.size();
  }

  Optimizer opt;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views(run.groups.size());
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views(run.groups.size());
  for (std::size_t g = 0; g < run.groups.size(); ++g) {
    const golden::GroupSpec& spec = run.groups[g];
    typename Optimizer::Options o;
    o.lr = run.lr[0][g] * lr_scale;
    o.set_betas(spec.beta1, spec.beta2);
    o.eps = spec.eps;
    o.weight_decay = spec.weight_decay;
    o.amsgrad = spec.amsgrad;
    o.maximize = spec.maximize;
    for (const std::uint32_t j : spec.tensors) {
      param_views[g].emplace_back(params[j]);
      grad_views[g].emplace_back(grads[j]);
    }
    opt.add_group(grad_views[g], o);
  }

  Deviation d;
  std::vector<double> bound(run.elements(), 0.0), previous(theta0.begin(), theta0.end());
  for (std::size_t t = 1; t <= run.steps; ++t) {
    std::vector<double> flat;
    for (std::size_t j = 0; j < run.tensors.size(); ++j)
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i) {
        const double value = golden::gradient_value(run.tensors[j].regime, rng.int21(),
                                                    static_cast<std::int64_t>(i),
                                                    static_cast<std::int64_t>(t));
        grads[j].data()[i] = static_cast<Scalar>(value);
        flat.push_back(value);
      }
    hash = golden::fnv1a64<Scalar>(flat, hash);
    for (std::size_t g = 0; g < run.groups.size(); ++g) {
      opt.set_lr(g, run.lr[t - 1][g] * lr_scale);
      if (kRAdam)  // PyTorch's ε placement, see the top of the file
        opt.set_eps(g, run.groups[g].eps /
                           std::sqrt(1.0 - std::pow(run.groups[g].beta2, static_cast<double>(t))));
    }
    opt.step(param_views, grad_views);

    const std::vector<double>& torch = run.theta[t - 1];
    double lr_max = 0;
    for (const double lr : run.lr[t - 1]) lr_max = std::max(lr_max, lr);
    double diff_max = 0, theta_max = 0;
    std::size_t e = 0;
    for (std::size_t j = 0; j < run.tensors.size(); ++j)
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i, ++e) {
        const double ours = static_cast<double>(params[j].data()[i]);
        const double theirs = torch[e];
        bound[e] += u * (4 * std::fabs(theirs) + step_roundings * std::fabs(theirs - previous[e]) +
                         32 * lr_max);
        const double diff = std::fabs(ours - theirs);
        const double ratio = diff / bound[e];
        if (ratio > d.max_ratio) {
          d.max_ratio = ratio;
          d.worst = "step " + std::to_string(t) + ", tensor " + std::to_string(j) + ", element " +
                    std::to_string(i) + ": adamx " + adamx::detail::format_value(ours) + ", torch " +
                    adamx::detail::format_value(theirs) + ", bound " + adamx::detail::format_value(bound[e]);
        }
        d.max_abs = std::max(d.max_abs, diff);
        const Scalar theirs_scalar = static_cast<Scalar>(theirs);
        const double ulp = static_cast<double>(
            std::nextafter(std::fabs(theirs_scalar), std::numeric_limits<Scalar>::infinity()) -
            std::fabs(theirs_scalar));
        d.max_ulps = std::max(d.max_ulps, diff / ulp);
        d.bitwise_equal += ours == theirs;
        ++d.compared;
        diff_max = std::max(diff_max, diff);
        theta_max = std::max(theta_max, std::fabs(theirs));
        previous[e] = theirs;
      }
    d.max_relative = std::max(d.max_relative, diff_max / theta_max);
  }
  d.inputs_match = hash == run.inputs_hash;
  return d;
}

Deviation replay_run(const golden::Run& run, double lr_scale = 1.0) {
  if (run.optimizer == 2)
    return run.width == 4 ? replay<float, adamx::RAdam<float>>(run, lr_scale)
                          : replay<double, adamx::RAdam<double>>(run, lr_scale);
  if (run.width == 4)
    return run.optimizer == 0 ? replay<float, adamx::Adam<float>>(run, lr_scale)
                              : replay<float, adamx::AdamW<float>>(run, lr_scale);
  return run.optimizer == 0 ? replay<double, adamx::Adam<double>>(run, lr_scale)
                            : replay<double, adamx::AdamW<double>>(run, lr_scale);
}

const char* const kRunNames[] = {"adam_default",       "adam_weight_decay", "adam_amsgrad",
                                  "adam_maximize",      "adam_warmup_cosine", "adamw_default",
                                  "adamw_groups_amsgrad_maximize_steplr", "radam_default",
                                  "radam_weight_decay_betas"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

class AdamParity : public testing::TestWithParam<ParityCase> {};

TEST_P(AdamParity, EveryStepMatchesPyTorchWithinTheRoundingBound) {
  const ParityCase& c = GetParam();
  const golden::Run* run = find_run(c.name, c.width);
  ASSERT_NE(run, nullptr) << c.name << " (" << c.width << "-byte) is missing from adam_parity.bin";
  ASSERT_EQ(run->steps, 300u);
  const Deviation d = replay_run(*run);
  ASSERT_TRUE(d.inputs_match) << "the regenerated gradients differ from those PyTorch saw: "
                                 "tests/golden/golden_inputs.hpp and tools/torch_golden.py disagree";
  std::printf("[parity] %-38s %s  max |diff| %.3e  max ulps %.1f  max normwise rel %.3e  "
              "max diff/bound %.4f  bitwise equal %zu/%zu\n",
              c.name.c_str(), c.width == 4 ? "float32" : "float64", d.max_abs, d.max_ulps,
              d.max_relative, d.max_ratio, d.bitwise_equal, d.compared);
  EXPECT_LE(d.max_ratio, 1.0) << "worst at " << d.worst;
  if (c.width == 8) {
    EXPECT_LE(d.max_relative, 1e-12);
  }
}

INSTANTIATE_TEST_SUITE_P(Runs, AdamParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(AdamParityFile, HoldsExactlyTheExpectedRunsAndRecordsTheTorchVersion) {
  const golden::AdamParityFile& file = parity_file();
  EXPECT_EQ(file.runs.size() + radam_file().runs.size(), all_cases().size());
  for (const ParityCase& c : all_cases()) EXPECT_NE(find_run(c.name, c.width), nullptr) << c.name;
  EXPECT_EQ(file.torch.rfind("torch 1.13", 0), 0u) << file.torch;
}

// The comparison has the power to fail: a small change of lr, far below what
// a reader would notice in a loss curve, is caught.
TEST(AdamParitySensitivity, ASmallLearningRateChangeExceedsTheBound) {
  const golden::Run* f32 = find_run("adam_default", 4);
  const golden::Run* f64 = find_run("adam_default", 8);
  ASSERT_NE(f32, nullptr);
  ASSERT_NE(f64, nullptr);
  EXPECT_GT(replay_run(*f32, 1.0 + 1e-3).max_ratio, 1.0);
  EXPECT_GT(replay_run(*f64, 1.0 + 1e-9).max_ratio, 1.0);
}

}  // namespace
