// The library against the independent long-double reference
// (tests/reference/naive_adamx.hpp) over 1000 steps, for float and double,
// for every option, in six gradient regimes. Every step, every element of θ,
// m, v (and v_max) and the group's γ, h and t are compared.
//
// Tolerance: |library − reference| ≤ kSlack × bound, where `bound` is the
// running first-order rounding-error bound that the reference computes for
// each quantity from the operations the library performs (see the header).
// kSlack = 2 absorbs what a first-order bound leaves out: second-order terms
// (relative size ~u, i.e. ≤ 1e-7) and the use of the reference's magnitudes
// in place of the library's (which differ by the bound itself). A second
// check keeps the bounds meaningful: they must stay far below the quantities'
// scale (kMaxThetaBound), so the comparison can fail.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "reference/naive_adamx.hpp"
#include "reference/regimes.hpp"
#include "test_util.hpp"

namespace {

using naive::Real;
constexpr Real kSlack = 2;
constexpr int kSteps = 1000;

using reference::name;
using reference::Regime;
enum class Variant {
  adamx, adam, adamw, amsgrad, maximize, l2, decoupled, lr_schedule, custom, skip,
  radam, radam_l2, adabound, adabound_amsgrad, adamod, adamod_decoupled
};
enum class Type { f32, f64, bf16, f16 };

const char* name(Variant v) {
  switch (v) {
    case Variant::adamx: return "adamx";
    case Variant::adam: return "adam";
    case Variant::adamw: return "adamw";
    case Variant::amsgrad: return "amsgrad";
    case Variant::maximize: return "maximize";
    case Variant::l2: return "l2";
    case Variant::decoupled: return "decoupled";
    case Variant::lr_schedule: return "lr_schedule";
    case Variant::custom: return "custom";
    case Variant::skip: return "skip";
    case Variant::radam: return "radam";
    case Variant::radam_l2: return "radam_l2";
    case Variant::adabound: return "adabound";
    case Variant::adabound_amsgrad: return "adabound_amsgrad";
    case Variant::adamod: return "adamod";
    case Variant::adamod_decoupled: return "adamod_decoupled";
  }
  return "?";
}

const char* type_name(Type t) {
  switch (t) {
    case Type::f32: return "float";
    case Type::f64: return "double";
    case Type::bf16: return "bfloat16";
    case Type::f16: return "half";
  }
  return "?";
}

// Parameter values as the reference's reals (exact for every type).
Real to_real(float x) { return x; }
Real to_real(double x) { return x; }
Real to_real(Eigen::bfloat16 x) { return static_cast<float>(x); }
Real to_real(Eigen::half x) { return static_cast<float>(x); }

// The library's precision for parameter type Param: its arithmetic and state
// type, plus the rounding of θ on store when Param is narrower.
template <class Param>
naive::Precision precision_for() {
  using State = typename adamx::AdamX<Param>::state_scalar_type;
  naive::Precision p = naive::Precision::of<State>();
  if (!std::is_same<Param, State>::value) {
    // 2^-digits: half has an 11-bit significand, bfloat16 an 8-bit one.
    p.u_store = std::ldexp(Real{1}, -std::numeric_limits<Param>::digits);
    p.eta_store = static_cast<Real>(static_cast<float>(std::numeric_limits<Param>::denorm_min())) / 2;
  }
  return p;
}

struct Case {
  Regime regime;
  Variant variant;
  Type type;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return std::string(name(info.param.regime)) + "_" + name(info.param.variant) + "_" +
         type_name(info.param.type);
}

// The group: a column-major matrix, a row-major matrix and a vector
// (552 elements), so both storage orders and several tensors feed one s.
constexpr int kRows0 = 24, kCols0 = 20, kRows1 = 5, kCols1 = 7, kLen2 = 37;

// Per-tensor gradient scales: equal, except in the mixed-scales regime.
double tensor_scale(Regime r, std::size_t tensor) {
  if (r != Regime::mixed_scales) return 1.0;
  const double scales[] = {1e-3, 1.0, 1e3};
  return scales[tensor];
}

// Noise level at step k (1-based).
double noise_scale(Regime r, int k) {
  switch (r) {
    case Regime::burst: return (k >= 300 && k < 600) ? 100.0 : 1.0;  // ×100 and back
    case Regime::decaying: return std::exp(-k / 250.0);              // e^-4 by the end
    default: return 1.0;
  }
}

// Deterministic gradients: g = scale·(μ + σ_k z), μ fixed per element.
class Gradients {
 public:
  Gradients(Regime regime, const std::vector<std::size_t>& sizes) : regime_(regime), rng_(12345) {
    std::normal_distribution<double> normal(0.0, 0.5);
    for (std::size_t n : sizes) {
      std::vector<double> mean(n);
      for (double& x : mean) x = normal(rng_);
      means_.push_back(mean);
    }
  }
  // Fills `out[j][i]` for step k.
  void next(int k, std::vector<std::vector<double>>& out) {
    std::normal_distribution<double> normal(0.0, 1.0);
    out.resize(means_.size());
    for (std::size_t j = 0; j < means_.size(); ++j) {
      out[j].resize(means_[j].size());
      for (std::size_t i = 0; i < means_[j].size(); ++i) {
        double g = tensor_scale(regime_, j) * noise_scale(regime_, k) * (means_[j][i] + normal(rng_));
        if (regime_ == Regime::zero_stretches && (k <= 50 || (k >= 400 && k < 700))) g = 0.0;
        out[j][i] = g;
      }
    }
    if (regime_ == Regime::nonfinite_bursts) {
      if (k == 100 || k == 101) out[0][7] = std::nan("");
      if (k == 500) out[1][3] = HUGE_VAL;
      if (k == 700) out[2][36] = -HUGE_VAL;
    }
  }

 private:
  Regime regime_;
  std::mt19937_64 rng_;
  std::vector<std::vector<double>> means_;
};

// lr at step k for the schedule variant: warm-up, plateau, two decays.
double scheduled_lr(int k) {
  if (k <= 100) return 1e-3 * k / 100.0;
  if (k < 500) return 1e-3;
  if (k < 800) return 3e-4;
  return 1e-4;
}

template <class Options>
Options options_for(Variant v) {
  Options o;
  switch (v) {
    case Variant::amsgrad: o.amsgrad = true; break;
    case Variant::maximize: o.maximize = true; break;
    case Variant::l2:
      o.weight_decay = 1e-2;
      o.decay_mode = adamx::WeightDecayMode::l2;
      break;
    case Variant::decoupled:
      o.weight_decay = 0.1;
      o.decay_mode = adamx::WeightDecayMode::decoupled;
      break;
    case Variant::custom:
      o.set_betas(0.8, 0.99);
      o.beta3 = 0.9;
      o.beta_norm = 0.95;
      o.eps = 1e-6;
      o.lr = 3e-3;
      break;
    case Variant::skip: o.nonfinite = adamx::NonFinitePolicy::skip; break;
    case Variant::radam_l2: o.weight_decay = 1e-2; break;
    // Bounds that bite: the lower one from t ≈ 10, the upper one on the
    // 1e-3-scaled tensor and in stretches of zero gradient.
    case Variant::adabound:
      EXPECT_TRUE(adamx_test::set_option(o, "final_lr", 1e-2));
      EXPECT_TRUE(adamx_test::set_option(o, "bound_speed", 1e-2));
      break;
    case Variant::adabound_amsgrad:
      EXPECT_TRUE(adamx_test::set_option(o, "final_lr", 1e-2));
      EXPECT_TRUE(adamx_test::set_option(o, "bound_speed", 1e-2));
      o.amsgrad = true;
      break;
    // A short horizon for η's average, so that the cap moves within the run.
    case Variant::adamod: EXPECT_TRUE(adamx_test::set_option(o, "beta_step", 0.99)); break;
    case Variant::adamod_decoupled:
      o.weight_decay = 0.1;
      o.decay_mode = adamx::WeightDecayMode::decoupled;
      break;
    default: break;
  }
  return o;
}

template <class Flavour>
naive::Hyper hyper_from(const adamx::BasicOptions<Flavour>& o) {
  // The reference receives the same double values the library was given.
  naive::Hyper h;
  if (adamx_test::kStepsWith<Flavour, adamx::rules::Adam>) h.rule = naive::Rule::adam;
  if (adamx_test::kStepsWith<Flavour, adamx::rules::RAdam>) h.rule = naive::Rule::radam;
  if (adamx_test::kStepsWith<Flavour, adamx::rules::AdaBound>) h.rule = naive::Rule::adabound;
  if (adamx_test::kStepsWith<Flavour, adamx::rules::AdaMod>) h.rule = naive::Rule::adamod;
  // AdaBound's and AdaMod's own options; the reference reads them only for their rule.
  h.final_lr = adamx_test::option_or(o, "final_lr", h.final_lr);
  h.bound_speed = adamx_test::option_or(o, "bound_speed", h.bound_speed);
  h.beta_step = adamx_test::option_or(o, "beta_step", h.beta_step);
  h.lr = o.lr;
  h.beta1 = o.beta1;
  h.beta2 = o.beta2;
  h.beta3 = o.beta3;
  h.beta_norm = o.beta_norm;
  h.eps = o.eps;
  h.weight_decay = o.weight_decay;
  h.decoupled = o.decay_mode == adamx::WeightDecayMode::decoupled;
  h.amsgrad = o.amsgrad;
  h.maximize = o.maximize;
  h.skip_nonfinite = o.nonfinite == adamx::NonFinitePolicy::skip;
  return h;
}

struct Worst {
  Real ratio = 0;        // max |lib − ref| / bound seen
  Real theta_bound = 0;  // max bound on θ
  Real theta_scale = 0;  // max |θ| of the reference
};

// Compares one quantity; returns an empty string or a description of the violation.
std::string compare(const char* what, std::size_t j, std::size_t i, Real lib, Real ref, Real bound,
                    Worst& worst) {
  const Real diff = std::fabs(lib - ref);
  if (std::isnan(ref) && std::isnan(lib)) return {};
  if (bound > 0) worst.ratio = std::fmax(worst.ratio, diff / bound);
  if (diff <= kSlack * bound) return {};
  std::ostringstream out;
  out.precision(10);
  out << what << "[tensor " << j << "][" << i << "]: library " << static_cast<double>(lib)
      << ", reference " << static_cast<double>(ref) << ", |diff| " << static_cast<double>(diff)
      << " > " << static_cast<double>(kSlack) << " x bound " << static_cast<double>(bound);
  return out.str();
}

// Compares the library's state and parameters with a reference group; θ is
// left out when compare_theta is false (see run_case).
template <class State, class Scalar>
std::string compare_all(const State& state, Scalar* const* params, const naive::Group& ref,
                        const std::vector<std::size_t>& sizes, bool amsgrad, bool step_avg,
                        Worst& worst, bool compare_theta = true) {
  // γ and h: double in the library, so their bounds are in units of double's ulp.
  std::string problem = compare("gamma", 0, 0, state.gamma, ref.gamma, ref.err_gamma, worst);
  if (problem.empty()) problem = compare("h", 0, 0, state.h, ref.h, ref.err_h, worst);
  for (std::size_t j = 0; j < sizes.size() && problem.empty(); ++j) {
    const auto& ts = state.tensors[j];
    for (std::size_t i = 0; i < sizes[j] && problem.empty(); ++i) {
      const naive::Element& e = ref.tensors[j][i];
      const auto at = static_cast<Eigen::Index>(i);
      if (compare_theta) {
        worst.theta_bound = std::fmax(worst.theta_bound, e.err_theta);
        if (std::isfinite(e.theta)) worst.theta_scale = std::fmax(worst.theta_scale, std::fabs(e.theta));
        problem = compare("theta", j, i, to_real(params[j][i]), e.theta, e.err_theta, worst);
      }
      if (problem.empty()) problem = compare("m", j, i, ts.m[at], e.m, e.err_m, worst);
      if (problem.empty()) problem = compare("v", j, i, ts.v[at], e.v, e.err_v, worst);
      if (problem.empty() && amsgrad)
        problem = compare("v_max", j, i, ts.v_max[at], e.v_max, e.err_v_max, worst);
      if (problem.empty() && step_avg)
        problem = compare("step_avg", j, i, (*adamx_test::slot_named(ts, "step_avg"))[at], e.step_avg,
                          e.err_step_avg, worst);
    }
  }
  return problem;
}

template <class Scalar, class Flavour>
void run_case(const Case& c) {
  using Opt = adamx::Optimizer<Scalar, Flavour>;
  using Options = typename Opt::Options;
  using MatrixC = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using MatrixR = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  std::mt19937_64 init_rng(777);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  MatrixC w0(kRows0, kCols0);
  MatrixR w1(kRows1, kCols1);
  Vector w2(kLen2);
  MatrixC g0(kRows0, kCols0);
  MatrixR g1(kRows1, kCols1);
  Vector g2(kLen2);
  Scalar* params[] = {w0.data(), w1.data(), w2.data()};
  Scalar* grads[] = {g0.data(), g1.data(), g2.data()};
  const std::vector<std::size_t> sizes = {static_cast<std::size_t>(w0.size()),
                                          static_cast<std::size_t>(w1.size()),
                                          static_cast<std::size_t>(w2.size())};

  naive::Group ref;
  for (std::size_t j = 0; j < 3; ++j) {
    ref.tensors.emplace_back(sizes[j]);
    for (std::size_t i = 0; i < sizes[j]; ++i) {
      params[j][i] = static_cast<Scalar>(uniform(init_rng));
      ref.tensors[j][i].theta = to_real(params[j][i]);
    }
  }

  Options options = options_for<Options>(c.variant);
  Opt opt;
  opt.add_group({w0, w1, w2}, options, "layer", {"w0", "w1", "w2"});
  naive::Hyper hyper = hyper_from(options);
  const naive::Precision precision = precision_for<Scalar>();

  // bfloat16/half parameters: θ is stored narrower than the float arithmetic.
  const bool narrow_parameters = !std::is_same<Scalar, typename Opt::state_scalar_type>::value;
  const bool modulated = adamx_test::kStepsWith<Flavour, adamx::rules::AdaMod>;
  Gradients source(c.regime, sizes);
  std::vector<std::vector<double>> g;
  std::vector<std::vector<Real>> g_ref(3);
  Worst trajectory, one_step;
  for (int k = 1; k <= kSteps; ++k) {
    if (c.variant == Variant::lr_schedule) {
      opt.set_lr(0, scheduled_lr(k));
      hyper.lr = scheduled_lr(k);
    }
    source.next(k, g);
    for (std::size_t j = 0; j < 3; ++j) {
      g_ref[j].resize(sizes[j]);
      for (std::size_t i = 0; i < sizes[j]; ++i) {
        grads[j][i] = static_cast<Scalar>(g[j][i]);
        g_ref[j][i] = to_real(grads[j][i]);  // the reference sees exactly what the library sees
      }
    }
    // The one-step check restarts the reference from the library's own state
    // (errors zero): each step's arithmetic is then held to a few ulps however
    // far the two trajectories have drifted.
    naive::Group restart;
    {
      const auto& before = opt.state(0);
      restart.t = before.t;
      restart.gamma = before.gamma;
      restart.h = before.h;
      for (std::size_t j = 0; j < 3; ++j) {
        restart.tensors.emplace_back(sizes[j]);
        for (std::size_t i = 0; i < sizes[j]; ++i) {
          naive::Element& e = restart.tensors[j][i];
          e.theta = to_real(params[j][i]);
          e.m = before.tensors[j].m[static_cast<Eigen::Index>(i)];
          e.v = before.tensors[j].v[static_cast<Eigen::Index>(i)];
          if (options.amsgrad) e.v_max = before.tensors[j].v_max[static_cast<Eigen::Index>(i)];
          if (modulated)
            e.step_avg = (*adamx_test::slot_named(before.tensors[j], "step_avg"))[static_cast<Eigen::Index>(i)];
        }
      }
    }

    const adamx::StepReport report = opt.step({{w0, w1, w2}}, {{g0, g1, g2}})[0];
    const bool applied = naive::step(ref, hyper, g_ref, precision);
    const bool restart_applied = naive::step(restart, hyper, g_ref, precision);

    ASSERT_EQ(report.applied, applied) << "step " << k;
    ASSERT_EQ(report.applied, restart_applied) << "step " << k;
    ASSERT_EQ(opt.state(0).t, ref.t) << "step " << k;
    // With bfloat16/half parameters θ is rounded to a few bits on every
    // store, so two trajectories that differ by an ulp of float round apart
    // and θ's trajectory is not comparable; m, v, γ and h, which (without L2
    // decay) do not depend on θ, still are, and the one-step check below holds
    // θ to its bound at every step.
    std::string problem;
    if (!(narrow_parameters && c.variant == Variant::l2))
      problem = compare_all(opt.state(0), params, ref, sizes, options.amsgrad, modulated, trajectory,
                            !narrow_parameters);
    ASSERT_TRUE(problem.empty()) << "step " << k << ", trajectory: " << problem;
    problem = compare_all(opt.state(0), params, restart, sizes, options.amsgrad, modulated, one_step);
    ASSERT_TRUE(problem.empty()) << "step " << k << ", one step from the library's state: " << problem;
  }
  // The bounds must stay small next to θ's scale (|θ| ~ 1, about 1 moved over
  // the run), or the comparisons could never fail. One step: a few ulps of
  // |θ| ≤ 2 (64u: 4e-6 float, 7e-15 double). Whole trajectory: 1e-3 for float
  // (≈ 2^14 ulps of 1) and 1e-11 for double (still 10^5 times below float's),
  // except where the only gradient is the L2 term λθ (zero stretches; the
  // 1e-3-scaled tensor): there Adam is a sign descent towards θ = 0, whose
  // sensitivity grows like α/|θ|, and a worst-case bound legitimately grows
  // with it; the one-step check keeps those cases sharp.
  // AdaBound's lower bound turns it into SGD with step final_lr·m, which under
  // ×100 bursts and on the 1e3-scaled tensor carries θ to hundreds: the
  // bounds are then held to the same ulps relative to the largest |θ| reached.
  const Real scale = std::fmax(Real{1}, one_step.theta_scale / 2);
  const bool float_type = !std::is_same<Scalar, double>::value;
  const Real u = std::fmax(precision.u, precision.u_store);
  EXPECT_LT(one_step.theta_bound, 64 * u * 2 * scale);
  const bool sign_descent = c.variant == Variant::l2 &&
                            (c.regime == Regime::zero_stretches || c.regime == Regime::mixed_scales);
  if (!sign_descent && !narrow_parameters) {
    EXPECT_LT(trajectory.theta_bound, (float_type ? 1e-3L : 1e-11L) * scale);
  }
  std::cout << "[ reference ] |lib-ref|/bound: trajectory " << static_cast<double>(trajectory.ratio)
            << ", one step " << static_cast<double>(one_step.ratio) << "; largest theta bound: trajectory "
            << static_cast<double>(trajectory.theta_bound) << ", one step "
            << static_cast<double>(one_step.theta_bound) << "; largest |theta| "
            << static_cast<double>(one_step.theta_scale) << "\n";
}

template <class Scalar>
void run_typed(const Case& c) {
  switch (c.variant) {
    case Variant::adam: run_case<Scalar, adamx::flavour::Adam>(c); break;
    case Variant::adamw: run_case<Scalar, adamx::flavour::AdamW>(c); break;
    case Variant::radam:
    case Variant::radam_l2: run_case<Scalar, adamx::flavour::RAdam>(c); break;
    case Variant::adabound:
    case Variant::adabound_amsgrad: run_case<Scalar, adamx::flavour::AdaBound>(c); break;
    case Variant::adamod:
    case Variant::adamod_decoupled: run_case<Scalar, adamx::flavour::AdaMod>(c); break;
    default: run_case<Scalar, adamx::flavour::AdamX>(c); break;
  }
}

class Reference : public testing::TestWithParam<Case> {};

TEST_P(Reference, MatchesLongDoubleReferenceWithinRoundingBound) {
  switch (GetParam().type) {
    case Type::f32: run_typed<float>(GetParam()); break;
    case Type::f64: run_typed<double>(GetParam()); break;
    case Type::bf16: run_typed<Eigen::bfloat16>(GetParam()); break;
    case Type::f16: run_typed<Eigen::half>(GetParam()); break;
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const Regime finite_regimes[] = {Regime::stationary, Regime::burst, Regime::decaying,
                                   Regime::mixed_scales, Regime::zero_stretches};
  const Variant variants[] = {Variant::adamx, Variant::adam, Variant::adamw, Variant::amsgrad,
                              Variant::maximize, Variant::l2, Variant::decoupled,
                              Variant::lr_schedule, Variant::custom, Variant::skip,
                              Variant::radam, Variant::radam_l2, Variant::adabound,
                              Variant::adabound_amsgrad, Variant::adamod, Variant::adamod_decoupled};
  for (Type type : {Type::f32, Type::f64}) {
    for (Regime r : finite_regimes)
      for (Variant v : variants) cases.push_back({r, v, type});
    // NaN/Inf gradients can only be followed exactly when the step is skipped.
    cases.push_back({Regime::nonfinite_bursts, Variant::skip, type});
  }
  // bfloat16 and half parameters with float state: fewer combinations (the
  // arithmetic is float's, covered above); what is new is the conversion on
  // load and the rounding of θ on store.
  for (Type type : {Type::bf16, Type::f16})
    for (Regime r : {Regime::stationary, Regime::burst, Regime::zero_stretches})
      for (Variant v : {Variant::adamx, Variant::adam, Variant::amsgrad, Variant::maximize,
                        Variant::l2, Variant::decoupled, Variant::radam, Variant::adabound,
                        Variant::adamod})
        cases.push_back({r, v, type});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllRegimesAndOptions, Reference, testing::ValuesIn(all_cases()), case_name);

}  // namespace
