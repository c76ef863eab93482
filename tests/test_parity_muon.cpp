// adamx::Muon against a transcription of the authors' reference algorithm
// (github.com/KellerJordan/Muon, muon.py: SingleDeviceMuonWithAuxAdam,
// muon_update, zeropower_via_newtonschulz5; plus torch.optim.Muon's nesterov
// and match_rms_adamw), run in PyTorch 1.13: tools/torch_golden.py (class
// MuonTranscription) wrote tests/data/muon_parity.bin, the parameters after
// each of 300 steps for two option sets x {float32, float64}; the gradients
// are regenerated here (tests/golden/golden_inputs.hpp) and replayed through
// adamx, and every matrix (Frobenius norm) and every vector element of every
// step is compared. The authors' package is not installable here; the
// transcription follows their code operation by operation (running
// Newton-Schulz in the parameter's dtype, not bfloat16), so this checks
// adamx against what its users run, independently of the long-double
// reference of tests/test_muon.cpp.
//
// Tolerance. Both are within the first-order rounding bound of
// tests/reference/naive_muon.hpp (MatrixBound, adamw_element_bound) of the
// exact trajectory, which the long-double reference replays here: the
// difference is at most twice that bound, plus for the matrices one more
// rounding the authors make (X·s rounded before the product by lr: eps of
// lr·s·‖X‖_F per step). Sensitivity: a relative change of lr by 1e-9 must
// exceed the bound in float64, where the bound is tight enough to see it;
// in float32 the Newton-Schulz bound (its amplification of 3.88 per step,
// a worst case) is far above the actual differences, and a change of 1e-2
// must exceed it.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "golden/golden_data.hpp"
#include "golden/golden_inputs.hpp"
#include "golden/parity_cases.hpp"
#include "reference/naive_muon.hpp"

namespace {

using naive_muon::Real;

const golden::AdamParityFile& parity_file() {
  static const golden::AdamParityFile file = golden::read_adam_parity(golden::data_path("muon_parity.bin"));
  return file;
}

const golden::Run* find_run(const std::string& name, int width) {
  for (const golden::Run& run : parity_file().runs)
    if (run.name == name && run.width == width) return &run;
  return nullptr;
}

struct Deviation {
  bool inputs_match = false;
  double max_ratio = 0;  // max |adamx - authors| / bound, matrices and vector elements
  double max_abs = 0;
  std::string worst;
};

template <class Scalar>
Deviation replay(const golden::Run& run, double lr_scale) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Real eps = static_cast<Real>(std::numeric_limits<Scalar>::epsilon()) / 2;
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

  // adamx, and the long-double reference the bounds are taken along.
  adamx::Muon<Scalar> opt;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views(run.groups.size());
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views(run.groups.size());
  std::vector<std::size_t> group_of(run.tensors.size());
  std::vector<naive_muon::Hyper> muon(run.groups.size());
  std::vector<naive_muon::AdamWHyper> adamw(run.groups.size());
  std::vector<naive_muon::MuonMatrix> matrices(run.tensors.size());
  std::vector<naive_muon::MatrixBound> bounds(run.tensors.size());
  std::vector<naive_muon::AdamWVector> vectors(run.tensors.size());
  for (std::size_t g = 0; g < run.groups.size(); ++g) {
    const golden::GroupSpec& spec = run.groups[g];
    adamx::MuonOptions o = spec.use_muon ? adamx::MuonOptions{} : adamx::muon_adamw_options();
    o.lr = run.lr[0][g] * lr_scale;
    o.weight_decay = spec.weight_decay;
    if (spec.use_muon) {
      o.momentum = spec.momentum;
      o.nesterov = spec.nesterov;
      o.adjust_lr = spec.adjust_lr == 1 ? adamx::MuonAdjustLr::match_rms_adamw : adamx::MuonAdjustLr::original;
      o.ns_steps = spec.ns_steps;
      muon[g].lr = static_cast<Real>(run.lr[0][g]);
      muon[g].momentum = static_cast<Real>(spec.momentum);
      muon[g].nesterov = spec.nesterov;
      muon[g].weight_decay = static_cast<Real>(spec.weight_decay);
      muon[g].match_rms_adamw = spec.adjust_lr == 1;
      muon[g].ns_steps = static_cast<int>(spec.ns_steps);
    } else {
      o.set_betas(spec.beta1, spec.beta2);
      o.eps = spec.eps;
      adamw[g].lr = static_cast<Real>(run.lr[0][g]);
      adamw[g].beta1 = static_cast<Real>(spec.beta1);
      adamw[g].beta2 = static_cast<Real>(spec.beta2);
      adamw[g].eps = static_cast<Real>(spec.eps);
      adamw[g].weight_decay = static_cast<Real>(spec.weight_decay);
    }
    for (const std::uint32_t j : spec.tensors) {
      group_of[j] = g;
      param_views[g].emplace_back(params[j]);
      grad_views[g].emplace_back(grads[j]);
      const golden::TensorSpec& t = run.tensors[j];
      if (spec.use_muon) {
        matrices[j].w = naive_muon::Matrix(static_cast<long>(t.rows), static_cast<long>(t.cols));
        for (std::size_t i = 0; i < t.size(); ++i) matrices[j].w.a[i] = static_cast<Real>(params[j].data()[i]);
      } else {
        for (std::size_t i = 0; i < t.size(); ++i) vectors[j].theta.push_back(static_cast<Real>(params[j].data()[i]));
      }
    }
    opt.add_group(param_views[g], o);
  }

  Deviation d;
  for (std::size_t t = 1; t <= run.steps; ++t) {
    std::vector<double> flat;
    std::vector<naive_muon::Matrix> exact(run.tensors.size());
    for (std::size_t j = 0; j < run.tensors.size(); ++j) {
      exact[j] = naive_muon::Matrix(static_cast<long>(run.tensors[j].rows), static_cast<long>(run.tensors[j].cols));
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i) {
        const double value = golden::gradient_value(run.tensors[j].regime, rng.int21(), static_cast<std::int64_t>(i),
                                                    static_cast<std::int64_t>(t));
        grads[j].data()[i] = static_cast<Scalar>(value);
        exact[j].a[i] = static_cast<Real>(grads[j].data()[i]);
        flat.push_back(value);
      }
    }
    hash = golden::fnv1a64<Scalar>(flat, hash);
    opt.step(param_views, grad_views);

    const std::vector<double>& theirs_all = run.theta[t - 1];
    std::size_t e = 0;
    for (std::size_t j = 0; j < run.tensors.size(); ++j) {
      const std::size_t g = group_of[j];
      const std::size_t n = run.tensors[j].size();
      if (run.groups[g].use_muon) {
        matrices[j].step(muon[g], exact[j]);
        bounds[j].advance(muon[g], matrices[j], exact[j], eps);
        Real difference = 0, direction = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const Real diff = static_cast<Real>(params[j].data()[i]) - static_cast<Real>(theirs_all[e + i]);
          difference += diff * diff;
          direction += matrices[j].last_direction.a[i] * matrices[j].last_direction.a[i];
          d.max_abs = std::max(d.max_abs, static_cast<double>(std::abs(diff)));
        }
        const Real extra = static_cast<Real>(t) * eps * muon[g].lr *
                           naive_muon::MatrixBound::scale(muon[g], matrices[j].w.rows, matrices[j].w.cols) *
                           std::sqrt(direction);
        const double ratio = static_cast<double>(std::sqrt(difference) / (2 * bounds[j].w_error + extra));
        if (ratio > d.max_ratio) {
          d.max_ratio = ratio;
          d.worst = "step " + std::to_string(t) + ", matrix " + std::to_string(j);
        }
      } else {
        vectors[j].step(adamw[g], std::vector<Real>(exact[j].a.begin(), exact[j].a.end()));
        for (std::size_t i = 0; i < n; ++i) {
          const double ours = static_cast<double>(params[j].data()[i]), theirs = theirs_all[e + i];
          const double bound = 2 * static_cast<double>(naive_muon::adamw_element_bound(adamw[g], vectors[j], i, eps));
          const double diff = std::fabs(ours - theirs);
          const double ratio = bound > 0 ? diff / bound : (diff > 0 ? INFINITY : 0.0);
          d.max_abs = std::max(d.max_abs, diff);
          if (ratio > d.max_ratio) {
            d.max_ratio = ratio;
            d.worst = "step " + std::to_string(t) + ", vector " + std::to_string(j) + ", element " + std::to_string(i);
          }
        }
      }
      e += n;
    }
  }
  d.inputs_match = hash == run.inputs_hash;
  return d;
}

Deviation replay_run(const golden::Run& run, double lr_scale = 1.0) {
  return run.width == 4 ? replay<float>(run, lr_scale) : replay<double>(run, lr_scale);
}

const char* const kRunNames[] = {"muon_default", "muon_options_decay"};

using golden::ParityCase;
std::vector<ParityCase> all_cases() { return golden::parity_cases(kRunNames); }

class MuonParity : public testing::TestWithParam<ParityCase> {};

TEST_P(MuonParity, EveryStepMatchesTheAuthorsAlgorithmWithinTheRoundingBound) {
  const ParityCase& c = GetParam();
  const golden::Run* run = find_run(c.name, c.width);
  ASSERT_NE(run, nullptr) << c.name << " (" << c.width << "-byte) is missing from muon_parity.bin";
  ASSERT_EQ(run->optimizer, 5);
  ASSERT_EQ(run->steps, 300u);
  const Deviation d = replay_run(*run);
  ASSERT_TRUE(d.inputs_match) << "the regenerated gradients differ from those the transcription saw: "
                                 "tests/golden/golden_inputs.hpp and tools/torch_golden.py disagree";
  std::printf("[parity] %-36s %s  max |diff| %.3e  max diff/bound %.4f\n", c.name.c_str(),
              c.width == 4 ? "float32" : "float64", d.max_abs, d.max_ratio);
  EXPECT_LE(d.max_ratio, 1.0) << "worst at " << d.worst;
}

INSTANTIATE_TEST_SUITE_P(Runs, MuonParity, testing::ValuesIn(all_cases()), golden::parity_case_name);

TEST(MuonParityFile, HoldsExactlyTheExpectedRuns) {
  const golden::AdamParityFile& file = parity_file();
  EXPECT_EQ(file.runs.size(), all_cases().size());
  for (const ParityCase& c : all_cases()) EXPECT_NE(find_run(c.name, c.width), nullptr) << c.name;
  EXPECT_EQ(file.torch.rfind("torch 1.13", 0), 0u) << file.torch;
}

TEST(MuonParitySensitivity, ASmallLearningRateChangeExceedsTheBound) {
  for (const char* name : kRunNames) {
    const golden::Run* f32 = find_run(name, 4);
    const golden::Run* f64 = find_run(name, 8);
    ASSERT_NE(f32, nullptr);
    ASSERT_NE(f64, nullptr);
    EXPECT_GT(replay_run(*f32, 1 + 1e-2).max_ratio, 1.0) << name;
    EXPECT_GT(replay_run(*f64, 1 + 1e-9).max_ratio, 1.0) << name;
  }
}

}  // namespace
