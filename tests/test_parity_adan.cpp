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

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"
#include "golden/golden_inputs.hpp"
#include "golden/parity_cases.hpp"

namespace {

const golden::AdamParityFile& adan_file() {
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("adan_parity.bin"));
  return file;
}

const golden::Run* find_run(const std::string& name, int width) {
  for (const golden::Run& run : adan_file().runs)
    if (run.name == name && run.width == width) return &run;
  return nullptr;
}

struct Deviation {
  bool inputs_match = false;
  double max_ratio = 0;  // max |adamx − authors| / bound
  double max_abs = 0;
  std::size_t bitwise_equal = 0, compared = 0;
  std::string worst;
};

template <class Scalar>
Deviation replay(const golden::Run& run, double lr_scale) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const double u = std::numeric_limits<Scalar>::epsilon() / 2;
  golden::SplitMix64 rng(run.seed);

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

  adamx::Adan<Scalar> opt;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views(run.groups.size());
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views(run.groups.size());
  std::vector<std::size_t> group_of(run.tensors.size()), index_in_group(run.tensors.size());
  for (std::size_t g = 0; g < run.groups.size(); ++g) {
    const golden::GroupSpec& spec = run.groups[g];
    adamx::AdanOptions o;
    o.lr = run.lr[0][g] * lr_scale;
    o.beta1 = spec.beta1;
    o.beta2 = spec.beta2;
    o.beta3 = spec.beta3;
    o.eps = spec.eps;
    o.weight_decay = spec.weight_decay;
    o.no_prox = spec.no_prox;
    for (const std::uint32_t j : spec.tensors) {
      group_of[j] = g;
      index_in_group[j] = param_views[g].size();
      param_views[g].emplace_back(params[j]);
      grad_views[g].emplace_back(grads[j]);
    }
    opt.add_group(grad_views[g], o);
  }

  Deviation d;
  std::vector<double> bound(run.elements(), 0.0);
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
    for (std::size_t g = 0; g < run.groups.size(); ++g) opt.set_lr(g, run.lr[t - 1][g] * lr_scale);
    opt.step(param_views, grad_views);

    const std::vector<double>& theirs_all = run.theta[t - 1];
    std::size_t e = 0;
    for (std::size_t j = 0; j < run.tensors.size(); ++j) {
      const std::size_t g = group_of[j];
      const golden::GroupSpec& spec = run.groups[g];
      const double lr = run.lr[t - 1][g] * lr_scale;
      const double td = static_cast<double>(t);
      const double bias1 = 1 - std::pow(spec.beta1, td), bias2 = 1 - std::pow(spec.beta2, td);
      const double sqrt_bias3 = std::sqrt(1 - std::pow(spec.beta3, td));
      const auto ts = opt.state_view(g, index_in_group[j]);
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i, ++e) {
        const auto at = static_cast<Eigen::Index>(i);
        const double den = std::sqrt(static_cast<double>(ts.n[at])) / sqrt_bias3 + spec.eps;
        const double terms = lr / bias1 * std::fabs(static_cast<double>(ts.m[at])) / den +
                             lr * spec.beta2 / bias2 * std::fabs(static_cast<double>(ts.v[at])) / den;
        const double ours = static_cast<double>(params[j].data()[i]);
        const double theirs = theirs_all[e];
        bound[e] += u * (6 * std::fabs(theirs) + 20 * terms);
        const double diff = std::fabs(ours - theirs);
        const double ratio = diff / bound[e];
        if (ratio > d.max_ratio) {
          d.max_ratio = ratio;
          d.worst = "step " + std::to_string(t) + ", tensor " + std::to_string(j) + ", element " +
                    std::to_string(i) + ": adamx " + adamx::detail::format_value(ours) + ", authors' " +
                    adamx::detail::format_value(theirs) + ", bound " + adamx::detail::format_value(bound[e]);
        }
        d.max_abs = std::max(d.max_abs, diff);
        d.bitwise_equal += ours == theirs;
        ++d.compared;
      }
    }
  }
  d.inputs_match = hash == run.inputs_hash;
  return d;
}

Deviation replay_run(const golden::Run& run, double lr_scale = 1.0) {
  return run.width == 4 ? replay<float>(run, lr_scale) : replay<double>(run, lr_scale);
}

const char* const kRunNames[] = {"adan_default", "adan_decay_groups_prox_no_prox"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

class AdanParity : public testing::TestWithParam<ParityCase> {};

TEST_P(AdanParity, EveryStepMatchesTheAuthorsAlgorithmWithinTheRoundingBound) {
  const ParityCase& c = GetParam();
  const golden::Run* run = find_run(c.name, c.width);
  ASSERT_NE(run, nullptr) << c.name << " (" << c.width << "-byte) is missing from adan_parity.bin";
  ASSERT_EQ(run->optimizer, 3);
  ASSERT_EQ(run->steps, 300u);
  const Deviation d = replay_run(*run);
  ASSERT_TRUE(d.inputs_match) << "the regenerated gradients differ from those the transcription saw: "
                                 "tests/golden/golden_inputs.hpp and tools/torch_golden.py disagree";
  std::printf("[parity] %-32s %s  max |diff| %.3e  max diff/bound %.4f  bitwise equal %zu/%zu\n", c.name.c_str(),
              c.width == 4 ? "float32" : "float64", d.max_abs, d.max_ratio, d.bitwise_equal, d.compared);
  EXPECT_LE(d.max_ratio, 1.0) << "worst at " << d.worst;
}

INSTANTIATE_TEST_SUITE_P(Runs, AdanParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(AdanParityFile, HoldsExactlyTheExpectedRuns) {
  const golden::AdamParityFile& file = adan_file();
  EXPECT_EQ(file.runs.size(), all_cases().size());
  for (const ParityCase& c : all_cases()) EXPECT_NE(find_run(c.name, c.width), nullptr) << c.name;
  EXPECT_EQ(file.torch.rfind("torch 1.13", 0), 0u) << file.torch;
  // The second run's groups decay both ways.
  const golden::Run* run = find_run("adan_decay_groups_prox_no_prox", 4);
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
  for (const char* name : kRunNames) {
    const golden::Run* f32 = find_run(name, 4);
    const golden::Run* f64 = find_run(name, 8);
    ASSERT_NE(f32, nullptr);
    ASSERT_NE(f64, nullptr);
    EXPECT_GT(replay_run(*f32, 1 + 1e-3).max_ratio, 1.0) << name;
    EXPECT_GT(replay_run(*f64, 1 + 1e-9).max_ratio, 1.0) << name;
  }
}

}  // namespace
