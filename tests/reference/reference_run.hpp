// The run of the rule reference tests (tests/test_lion.cpp, test_adan.cpp,
// test_schedule_free.cpp): one rule stepped over three tensors for 600
// steps, float or double, beside its long-double reference, in one gradient
// regime with one set of options. After every step the library's parameter
// and slots are compared with the reference's twice: along the reference's
// own trajectory, and after one step of a reference restarted from the
// library's state before it (which keeps every step sharp where the two
// trajectories may legitimately drift apart).
//
// What differs from rule to rule is passed in as a small struct `Run` (each
// test defines one, deriving from RunDefaults):
//   Variant                 the test's enumeration of option sets (with
//                           `defaults` and `skip_nonfinite` among them)
//   Options, Optimizer<S>   the library's options and optimizer
//   Group, Element, Hyper   the reference's
//   options(v), hyper(o)    the options of a variant, the reference's copy
//   kParam, kSlots          the quantities compared: the parameter, then the
//                           slots, each with its reference value, its bound
//                           (none: compared exactly) and the library's slot
//   step(group, hyper, gradients, precision, library_theta)
//                           one reference step; library_theta holds the
//                           library's parameters after the same step
//   kThetaBoundUlpsPerStep  the ceiling on the parameter's bound, in ulps of
//                           1 per step (why that number: at its definition)
//   kLabel                  the name the printed summary starts with
// and, where the rule needs them, restart_scalars (the group scalars a
// restarted reference takes from the library) and after_run (checks of the
// whole run, and what they add to the summary).
#pragma once

#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iostream>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "regime_gradients.hpp"
#include "regimes.hpp"
#include "rounding.hpp"

namespace reference {

// Tolerance: |library − reference| ≤ kSlack × bound, the bound being the
// reference's first-order rounding-error bound for each quantity; kSlack = 2
// absorbs the second-order terms and the use of the reference's magnitudes
// for the library's, as in test_reference.cpp.
constexpr Real kSlack = 2;
constexpr int kSteps = 600;

/// One case: a gradient regime, a variant of the options, the parameters'
/// type.
template <class Variant>
struct Case {
  Regime regime;
  Variant variant;
  bool is_double;
};

// Without a printer GoogleTest prints a parameter byte by byte, padding
// included (golden/parity_cases.hpp says why that matters). `name` of the
// variant is the test's own, found by argument-dependent lookup.
template <class Variant>
void PrintTo(const Case<Variant>& c, std::ostream* out) {
  *out << name(c.regime) << " " << name(c.variant) << (c.is_double ? " double" : " float");
}

/// Every regime but nonfinite_bursts (non-finite gradients are the skip
/// variant's) with the default options, then each of `variants` on the
/// stationary regime; in float, then in double.
template <class Variant>
std::vector<Case<Variant>> all_cases(std::initializer_list<Variant> variants) {
  std::vector<Case<Variant>> cases;
  for (bool is_double : {false, true}) {
    for (Regime r : {Regime::stationary, Regime::burst, Regime::decaying, Regime::mixed_scales,
                     Regime::zero_stretches})
      cases.push_back({r, Variant::defaults, is_double});
    for (Variant v : variants) cases.push_back({Regime::stationary, v, is_double});
  }
  return cases;
}

template <class Variant>
std::string case_name(const testing::TestParamInfo<Case<Variant>>& info) {
  return std::string(name(info.param.regime)) + "_" + name(info.param.variant) +
         (info.param.is_double ? "_double" : "_float");
}

/// A quantity the run compares: its name in messages, the reference
/// element's value and bound (nullptr: held exactly by both), and the
/// library's slot holding it (ignored for the parameter).
template <class Element>
struct Quantity {
  const char* name;
  Real Element::*value;
  Real Element::*bound;
  int slot;
};

/// The hooks most rules do without.
struct RunDefaults {
  /// A rule with group scalars copies the library's into a restarted reference.
  template <class Group, class GroupState>
  static void restart_scalars(Group& /*restart*/, const GroupState& /*before*/) {}
  /// Checks of the whole run (`ref` after the last step, `element_steps`
  /// element updates made); returns what they add to the printed summary.
  template <class Group>
  static std::string after_run(const Group& /*ref*/, double /*element_steps*/) {
    return {};
  }
};

template <class Run, class Scalar>
void run_case(Regime regime, typename Run::Variant variant) {
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Group = typename Run::Group;
  using Element = typename Run::Element;
  constexpr const Quantity<Element>& param = Run::kParam;
  const std::vector<std::size_t> sizes = {37, 300, 64};
  std::vector<Vector> params, grads;
  Group ref;
  std::mt19937_64 init(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (std::size_t n : sizes) {
    params.emplace_back(static_cast<Eigen::Index>(n));
    grads.emplace_back(static_cast<Eigen::Index>(n));
    ref.tensors.emplace_back(n);
    for (std::size_t i = 0; i < n; ++i) {
      params.back()[static_cast<Eigen::Index>(i)] = static_cast<Scalar>(uniform(init));
      ref.tensors.back()[i].*param.value = params.back()[static_cast<Eigen::Index>(i)];
    }
  }
  const typename Run::Options options = Run::options(variant);
  typename Run::template Optimizer<Scalar> opt;
  opt.add_group({params[0], params[1], params[2]}, options, "layer", {"w0", "w1", "w2"});
  const typename Run::Hyper hyper = Run::hyper(options);
  const auto precision = Precision::of<Scalar>();

  RegimeGradients source(regime, variant == Run::Variant::skip_nonfinite, sizes);
  std::vector<std::vector<double>> g;
  std::vector<std::vector<Real>> g_ref(sizes.size()), theta_after(sizes.size());
  Real worst_trajectory = 0, worst_one_step = 0;
  for (int k = 1; k <= kSteps; ++k) {
    source.next(k, g);
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      g_ref[j].resize(sizes[j]);
      for (std::size_t i = 0; i < sizes[j]; ++i) {
        grads[j][static_cast<Eigen::Index>(i)] = static_cast<Scalar>(g[j][i]);
        g_ref[j][i] = grads[j][static_cast<Eigen::Index>(i)];  // exactly what the library sees
      }
    }
    // The one-step check restarts the reference from the library's state.
    Group restart;
    {
      const auto before = opt.state(0);
      restart.t = before.t;
      Run::restart_scalars(restart, before);
      for (std::size_t j = 0; j < sizes.size(); ++j) {
        restart.tensors.emplace_back(sizes[j]);
        for (std::size_t i = 0; i < sizes[j]; ++i) {
          const auto at = static_cast<Eigen::Index>(i);
          Element& e = restart.tensors[j][i];
          e.*param.value = params[j][at];
          for (const Quantity<Element>& q : Run::kSlots) e.*q.value = before.tensors[j].slot(q.slot)[at];
        }
      }
    }
    const adamx::StepReport report = opt.step({{params[0], params[1], params[2]}},
                                              {{grads[0], grads[1], grads[2]}})[0];
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      theta_after[j].resize(sizes[j]);
      for (std::size_t i = 0; i < sizes[j]; ++i) theta_after[j][i] = params[j][static_cast<Eigen::Index>(i)];
    }
    const bool applied = Run::step(ref, hyper, g_ref, precision, theta_after);
    ASSERT_EQ(Run::step(restart, hyper, g_ref, precision, theta_after), applied) << "step " << k;
    ASSERT_EQ(report.applied, applied) << "step " << k;
    const auto state = opt.state(0);
    ASSERT_EQ(state.t, ref.t) << "step " << k;
    for (std::size_t j = 0; j < sizes.size(); ++j) {
      for (std::size_t i = 0; i < sizes[j]; ++i) {
        const auto at = static_cast<Eigen::Index>(i);
        for (const Group* r : {&ref, &restart}) {
          Real& worst = r == &ref ? worst_trajectory : worst_one_step;
          const Element& e = r->tensors[j][i];
          const auto compare = [&](const Quantity<Element>& q, Real library) {
            const Real bound = q.bound != nullptr ? e.*q.bound : Real{0};
            return compare_within_bound(q.name, library, e.*q.value, bound, kSlack, worst);
          };
          std::string problem = compare(param, params[j][at]);
          for (const Quantity<Element>& q : Run::kSlots)
            if (problem.empty()) problem = compare(q, state.tensors[j].slot(q.slot)[at]);
          ASSERT_TRUE(problem.empty()) << "step " << k << (r == &ref ? ", trajectory" : ", one step")
                                       << ", tensor " << j << " element " << i << ": " << problem;
        }
      }
    }
  }
  std::size_t elements = 0;
  for (std::size_t n : sizes) elements += n;
  const std::string more = Run::after_run(ref, static_cast<double>(kSteps) * static_cast<double>(elements));
  // The bounds stay far below θ's scale, or the comparison could not fail
  // (Run::kThetaBoundUlpsPerStep says how far for the rule).
  Real largest_bound = 0;
  for (const auto& tensor : ref.tensors)
    for (const auto& e : tensor) largest_bound = std::fmax(largest_bound, e.*param.bound);
  EXPECT_LT(largest_bound, Run::kThetaBoundUlpsPerStep * kSteps * precision.u);
  std::cout << "[ " << Run::kLabel << " ] |lib-ref|/bound: trajectory " << static_cast<double>(worst_trajectory)
            << ", one step " << static_cast<double>(worst_one_step) << "; largest theta bound "
            << static_cast<double>(largest_bound) << more << "\n";
}

/// The case in its parameters' type.
template <class Run>
void run_case(const Case<typename Run::Variant>& c) {
  if (c.is_double) {
    run_case<Run, double>(c.regime, c.variant);
  } else {
    run_case<Run, float>(c.regime, c.variant);
  }
}

}  // namespace reference
