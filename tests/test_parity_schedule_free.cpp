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

const golden::AdamParityFile& parity_file() {
  static const golden::AdamParityFile file =
      golden::read_adam_parity(golden::data_path("schedule_free_parity.bin"));
  return file;
}

const golden::Run* find_run(const std::string& name, int width) {
  for (const golden::Run& run : parity_file().runs)
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

  adamx::ScheduleFreeAdamW<Scalar> opt;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views(run.groups.size());
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views(run.groups.size());
  std::vector<std::size_t> group_of(run.tensors.size()), index_in_group(run.tensors.size());
  for (std::size_t g = 0; g < run.groups.size(); ++g) {
    const golden::GroupSpec& spec = run.groups[g];
    adamx::ScheduleFreeAdamWOptions o;
    o.lr = run.lr[0][g] * lr_scale;
    o.set_betas(spec.beta1, spec.beta2);
    o.eps = spec.eps;
    o.weight_decay = spec.weight_decay;
    o.warmup_steps = spec.warmup_steps;
    o.r = spec.r;
    o.weight_lr_power = spec.weight_lr_power;
    for (const std::uint32_t j : spec.tensors) {
      group_of[j] = g;
      index_in_group[j] = param_views[g].size();
      param_views[g].emplace_back(params[j]);
      grad_views[g].emplace_back(grads[j]);
    }
    opt.add_group(grad_views[g], o);
  }

  Deviation d;
  std::vector<double> err_y(run.elements(), 0.0), err_z(run.elements(), 0.0);
  // The averaging's running values, as both compute them (in double).
  std::vector<double> lr_max(run.groups.size(), -1.0), weight_sum(run.groups.size(), 0.0);
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
    // y before the step, for the decay's and the interpolation's terms.
    std::vector<Matrix> before = params;
    opt.step(param_views, grad_views);

    const std::vector<double>& theirs_all = run.theta[t - 1];
    std::vector<double> c(run.groups.size()), a(run.groups.size()), lr(run.groups.size());
    for (std::size_t g = 0; g < run.groups.size(); ++g) {
      const golden::GroupSpec& spec = run.groups[g];
      const double td = static_cast<double>(t);
      const double base = run.lr[t - 1][g] * lr_scale;
      lr[g] = spec.warmup_steps > 0 && td < spec.warmup_steps ? base * (td / spec.warmup_steps) : base;
      lr_max[g] = std::max(lr_max[g], lr[g]);
      const double w = std::pow(td, spec.r) * std::pow(lr_max[g], spec.weight_lr_power);
      weight_sum[g] += w;
      c[g] = weight_sum[g] != 0 ? w / weight_sum[g] : 0;
      a[g] = lr[g] * (spec.beta1 * (1 - c[g]) - 1);
    }
    std::size_t e = 0;
    for (std::size_t j = 0; j < run.tensors.size(); ++j) {
      const std::size_t g = group_of[j];
      const golden::GroupSpec& spec = run.groups[g];
      const double bias2 = 1 - std::pow(spec.beta2, static_cast<double>(t));
      const auto ts = opt.state_view(g, index_in_group[j]);
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i, ++e) {
        const auto at = static_cast<Eigen::Index>(i);
        const double y_before = static_cast<double>(before[j].data()[i]);
        const double z = static_cast<double>(ts.z[at]);
        const double g_value = static_cast<double>(grads[j].data()[i]);
        const double normalised =
            std::fabs(g_value) / (std::sqrt(static_cast<double>(ts.v[at]) / bias2) + spec.eps) +
            spec.weight_decay * std::fabs(y_before);
        const double err_u = 10 * u * normalised + 2 * u * spec.weight_decay * std::fabs(y_before) +
                             spec.weight_decay * err_y[e];
        err_z[e] += lr[g] * err_u + 2 * u * std::fabs(z);
        const double ours = static_cast<double>(params[j].data()[i]);
        const double theirs = theirs_all[e];
        err_y[e] = (1 - c[g]) * err_y[e] + c[g] * err_z[e] + std::fabs(a[g]) * err_u + 4 * u * std::fabs(theirs) +
                   3 * u * (std::fabs(z - y_before) + lr[g] * normalised);  // ≥ |z − y| before the step
        const double diff = std::fabs(ours - theirs);
        const double ratio = err_y[e] > 0 ? diff / err_y[e] : (diff > 0 ? INFINITY : 0.0);
        if (ratio > d.max_ratio) {
          d.max_ratio = ratio;
          d.worst = "step " + std::to_string(t) + ", tensor " + std::to_string(j) + ", element " +
                    std::to_string(i) + ": adamx " + adamx::detail::format_value(ours) + ", authors' " +
                    adamx::detail::format_value(theirs) + ", bound " + adamx::detail::format_value(err_y[e]);
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

const char* const kRunNames[] = {"schedule_free_default", "schedule_free_warmup_decay_groups"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

class ScheduleFreeParity : public testing::TestWithParam<ParityCase> {};

TEST_P(ScheduleFreeParity, EveryStepMatchesTheAuthorsAlgorithmWithinTheRoundingBound) {
  const ParityCase& c = GetParam();
  const golden::Run* run = find_run(c.name, c.width);
  ASSERT_NE(run, nullptr) << c.name << " (" << c.width << "-byte) is missing from schedule_free_parity.bin";
  ASSERT_EQ(run->optimizer, 4);
  ASSERT_EQ(run->steps, 300u);
  const Deviation d = replay_run(*run);
  ASSERT_TRUE(d.inputs_match) << "the regenerated gradients differ from those the transcription saw: "
                                 "tests/golden/golden_inputs.hpp and tools/torch_golden.py disagree";
  std::printf("[parity] %-36s %s  max |diff| %.3e  max diff/bound %.4f  bitwise equal %zu/%zu\n", c.name.c_str(),
              c.width == 4 ? "float32" : "float64", d.max_abs, d.max_ratio, d.bitwise_equal, d.compared);
  EXPECT_LE(d.max_ratio, 1.0) << "worst at " << d.worst;
}

INSTANTIATE_TEST_SUITE_P(Runs, ScheduleFreeParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(ScheduleFreeParityFile, HoldsExactlyTheExpectedRuns) {
  const golden::AdamParityFile& file = parity_file();
  EXPECT_EQ(file.runs.size(), all_cases().size());
  for (const ParityCase& c : all_cases()) EXPECT_NE(find_run(c.name, c.width), nullptr) << c.name;
  EXPECT_EQ(file.torch.rfind("torch 1.13", 0), 0u) << file.torch;
}

TEST(ScheduleFreeParitySensitivity, ASmallLearningRateChangeExceedsTheBound) {
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
