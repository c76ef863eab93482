// The replay of a parity file's trajectories (test_parity_adam.cpp,
// test_parity_adan.cpp, test_parity_schedule_free.cpp): a run's parameters
// and gradients regenerated from its seed (golden_inputs.hpp) and hashed as
// the recording side hashed them, its groups built with their options, and
// every element of every step compared with the recorded parameters within
// a running bound; then the test of one case, and the check that a small
// change of lr exceeds the bound.
//
// What differs from rule to rule is the bound, the one thing each test
// derives (at the top of its file), passed in as a class `Bound` built per
// replay from (run, lr_scale, u, θ_0), u the unit roundoff of the
// parameters' type and θ_0 the initial parameters as generated (in double):
//   static set_options(options, spec)   a group's options but lr, from the run
//   before_step(opt, t, params)         what to set or keep before step t (lr
//                                       is already set)
//   after_step(t)                       step t's constants, after it
//   element(at, state_view)             the bound on element `at` after step
//                                       t, updated from its running value
// and the test's cases as a class `Parity` (see check_parity_case).
#pragma once

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "golden_data.hpp"
#include "golden_inputs.hpp"
#include "parity_cases.hpp"

namespace golden {

/// How far the library's trajectory was from the recorded one.
struct Deviation {
  bool inputs_match = false;
  double max_ratio = 0;     // max over steps and elements of |adamx − recorded| / bound
  double max_abs = 0;       // max |adamx − recorded|
  double max_relative = 0;  // max over steps of max|adamx − recorded| / max|recorded θ|
  double max_ulps = 0;      // max |adamx − recorded| in ulps of the recorded value
  std::size_t bitwise_equal = 0, compared = 0;
  std::string worst;        // where max_ratio was reached
};

/// The run named `name` in `width`-byte elements, or nullptr.
inline const Run* find_run(const AdamParityFile& file, const std::string& name, int width) {
  for (const Run& run : file.runs)
    if (run.name == name && run.width == width) return &run;
  return nullptr;
}

/// A parameter or gradient tensor, in PyTorch's (row-major) element order.
template <class Scalar>
using ParityMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Where an element is, and what both sides saw of it, after step t.
struct ElementAt {
  std::size_t t;       // the step (1, 2, …)
  std::size_t group;   // the group of its tensor
  std::size_t tensor;  // its tensor, in the run's order
  std::size_t index;   // its place in the tensor
  std::size_t flat;    // its place among all the run's elements
  double grad;         // the gradient the library received (in its type)
  double theirs;       // the recorded parameter after the step
};

/// Replays `run` through an `Optimizer` with every lr scaled by `lr_scale`;
/// `theirs` names the recorded side in the worst element's description.
template <class Optimizer, class Bound>
Deviation replay(const Run& run, double lr_scale, const char* theirs) {
  using Scalar = typename Optimizer::scalar_type;
  using Matrix = ParityMatrix<Scalar>;
  const double u = std::numeric_limits<Scalar>::epsilon() / 2;
  SplitMix64 rng(run.seed);

  std::vector<Matrix> params, grads;
  const std::vector<double> theta0 = uniform_values(rng, run.elements());
  std::uint64_t hash = fnv1a64<Scalar>(theta0);
  std::size_t offset = 0;
  for (const TensorSpec& t : run.tensors) {
    Matrix p(t.rows, t.cols);
    for (std::size_t i = 0; i < t.size(); ++i) p.data()[i] = static_cast<Scalar>(theta0[offset + i]);
    params.push_back(p);
    grads.emplace_back(t.rows, t.cols);
    offset += t.size();
  }

  Optimizer opt;
  std::vector<std::vector<adamx::TensorRef<Scalar>>> param_views(run.groups.size());
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views(run.groups.size());
  std::vector<std::size_t> group_of(run.tensors.size()), index_in_group(run.tensors.size());
  for (std::size_t g = 0; g < run.groups.size(); ++g) {
    const GroupSpec& spec = run.groups[g];
    typename Optimizer::Options o;
    o.lr = run.lr[0][g] * lr_scale;
    Bound::set_options(o, spec);
    for (const std::uint32_t j : spec.tensors) {
      group_of[j] = g;
      index_in_group[j] = param_views[g].size();
      param_views[g].emplace_back(params[j]);
      grad_views[g].emplace_back(grads[j]);
    }
    opt.add_group(grad_views[g], o);
  }

  Bound bound(run, lr_scale, u, theta0);
  Deviation d;
  for (std::size_t t = 1; t <= run.steps; ++t) {
    std::vector<double> flat;
    for (std::size_t j = 0; j < run.tensors.size(); ++j)
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i) {
        const double value = gradient_value(run.tensors[j].regime, rng.int21(), static_cast<std::int64_t>(i),
                                            static_cast<std::int64_t>(t));
        grads[j].data()[i] = static_cast<Scalar>(value);
        flat.push_back(value);
      }
    hash = fnv1a64<Scalar>(flat, hash);
    for (std::size_t g = 0; g < run.groups.size(); ++g) opt.set_lr(g, run.lr[t - 1][g] * lr_scale);
    bound.before_step(opt, t, params);
    opt.step(param_views, grad_views);
    bound.after_step(t);

    const std::vector<double>& recorded = run.theta[t - 1];
    double diff_max = 0, theta_max = 0;
    std::size_t e = 0;
    for (std::size_t j = 0; j < run.tensors.size(); ++j) {
      const std::size_t g = group_of[j];
      const auto ts = opt.state_view(g, index_in_group[j]);
      for (std::size_t i = 0; i < run.tensors[j].size(); ++i, ++e) {
        const double ours = static_cast<double>(params[j].data()[i]);
        const ElementAt at{t, g, j, i, e, static_cast<double>(grads[j].data()[i]), recorded[e]};
        const double b = bound.element(at, ts);
        const double diff = std::fabs(ours - at.theirs);
        const double ratio = b > 0 ? diff / b : (diff > 0 ? INFINITY : 0.0);
        if (ratio > d.max_ratio) {
          d.max_ratio = ratio;
          d.worst = "step " + std::to_string(t) + ", tensor " + std::to_string(j) + ", element " +
                    std::to_string(i) + ": adamx " + adamx::detail::format_value(ours) + ", " + theirs + " " +
                    adamx::detail::format_value(at.theirs) + ", bound " + adamx::detail::format_value(b);
        }
        d.max_abs = std::max(d.max_abs, diff);
        const Scalar theirs_scalar = static_cast<Scalar>(at.theirs);
        const double ulp = static_cast<double>(
            std::nextafter(std::fabs(theirs_scalar), std::numeric_limits<Scalar>::infinity()) -
            std::fabs(theirs_scalar));
        d.max_ulps = std::max(d.max_ulps, diff / ulp);
        d.bitwise_equal += ours == at.theirs;
        ++d.compared;
        diff_max = std::max(diff_max, diff);
        theta_max = std::max(theta_max, std::fabs(at.theirs));
      }
    }
    d.max_relative = std::max(d.max_relative, diff_max / theta_max);
  }
  d.inputs_match = hash == run.inputs_hash;
  return d;
}

/// The test of one case. `Parity` names the file (kFile), the optimizer
/// code its runs must have (kOptimizer, or −1 for any), who recorded them
/// (kRecorder, for the message when the inputs differ), the width of the
/// run's name in the printed summary (kNameWidth), and whether to print
/// and check the normwise relative difference (kNormwiseTarget > 0: float64
/// must stay within it), and has find_run(name, width) and replay_run(run,
/// lr_scale).
template <class Parity>
void check_parity_case(const ParityCase& c) {
  const Run* run = Parity::find_run(c.name, c.width);
  ASSERT_NE(run, nullptr) << c.name << " (" << c.width << "-byte) is missing from " << Parity::kFile;
  if (Parity::kOptimizer >= 0) {
    ASSERT_EQ(run->optimizer, Parity::kOptimizer);
  }
  ASSERT_EQ(run->steps, 300u);
  const Deviation d = Parity::replay_run(*run, 1.0);
  ASSERT_TRUE(d.inputs_match) << "the regenerated gradients differ from those " << Parity::kRecorder
                              << " saw: tests/golden/golden_inputs.hpp and tools/torch_golden.py disagree";
  const char* type = c.width == 4 ? "float32" : "float64";
  if (Parity::kNormwiseTarget > 0) {
    std::printf("[parity] %-*s %s  max |diff| %.3e  max ulps %.1f  max normwise rel %.3e  "
                "max diff/bound %.4f  bitwise equal %zu/%zu\n",
                Parity::kNameWidth, c.name.c_str(), type, d.max_abs, d.max_ulps, d.max_relative, d.max_ratio,
                d.bitwise_equal, d.compared);
  } else {
    std::printf("[parity] %-*s %s  max |diff| %.3e  max diff/bound %.4f  bitwise equal %zu/%zu\n",
                Parity::kNameWidth, c.name.c_str(), type, d.max_abs, d.max_ratio, d.bitwise_equal, d.compared);
  }
  EXPECT_LE(d.max_ratio, 1.0) << "worst at " << d.worst;
  if (Parity::kNormwiseTarget > 0 && c.width == 8) {
    EXPECT_LE(d.max_relative, Parity::kNormwiseTarget);
  }
}

/// The files hold a run for every case (`runs` of them in all) and were
/// written by PyTorch 1.13 (`torch`, the version line of one of them).
template <class Parity>
void expect_exactly_the_cases(std::size_t runs, const std::vector<ParityCase>& cases, const std::string& torch) {
  EXPECT_EQ(runs, cases.size());
  for (const ParityCase& c : cases) EXPECT_NE(Parity::find_run(c.name, c.width), nullptr) << c.name;
  EXPECT_EQ(torch.rfind("torch 1.13", 0), 0u) << torch;
}

/// The comparison has the power to fail: for each run named, a relative
/// change of lr by 1e-3 (float32) or 1e-9 (float64), far below what a loss
/// curve would show, exceeds the bound.
template <class Parity, std::size_t N>
void expect_small_lr_change_caught(const char* const (&names)[N]) {
  for (const char* name : names) {
    const Run* f32 = Parity::find_run(name, 4);
    const Run* f64 = Parity::find_run(name, 8);
    ASSERT_NE(f32, nullptr);
    ASSERT_NE(f64, nullptr);
    EXPECT_GT(Parity::replay_run(*f32, 1 + 1e-3).max_ratio, 1.0) << name;
    EXPECT_GT(Parity::replay_run(*f64, 1 + 1e-9).max_ratio, 1.0) << name;
  }
}

}  // namespace golden
