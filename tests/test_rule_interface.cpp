// An update rule the library does not ship, declared here as a rule file
// would declare it (docs/design.md, "Update rules"): SignMomentum, a toy with
// Lion's equations (the library's own Lion is rules/lion.hpp, tested in
// test_lion.cpp; this one is named apart so that neither is taken for the
// other, in code or in a checkpoint's optimizer name), with one state slot
// (m), no group scalars and options of its own (no beta3, eps or amsgrad).
// The generic driver, plain-data state, restore and checkpoints must take it
// with nothing but these declarations; its steps are checked against a naive
// loop.
#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <vector>

namespace toy {

// The toy's options: one part, none of the Adam family's.
struct SignMomentumOptions {
  double lr = 1e-4;
  double beta1 = 0.9;   // the rate of the interpolation the sign is taken of
  double beta2 = 0.99;  // the EMA rate of m
  double weight_decay = 0.0;  // decoupled: θ ← θ(1 − αλ)
  bool maximize = false;
  adamx::NonFinitePolicy nonfinite = adamx::NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = SignMomentumOptions;
    return std::make_tuple(adamx::option_field("lr", &O::lr, adamx::option_range::non_negative),
                           adamx::option_field("beta1", &O::beta1, adamx::option_range::rate),
                           adamx::option_field("beta2", &O::beta2, adamx::option_range::rate),
                           adamx::option_field("weight_decay", &O::weight_decay, adamx::option_range::non_negative),
                           adamx::option_flag("maximize", &O::maximize),
                           adamx::option_enum("nonfinite", &O::nonfinite));
  }
};

// The rule: c = β1·m + (1 − β1)·g, θ ← θ(1 − αλ) − α·sign(c),
// m ← β2·m + (1 − β2)·g.
struct SignMomentum {
  enum Slot : int { m = 0 };
  static constexpr int kSlots = 1;
  static constexpr int kBoundSlots = 1;
  static constexpr const char* slot_names[kSlots] = {"m"};

  template <class Scalar>
  struct Coefficients {
    Scalar beta1, one_minus_beta1, beta2, one_minus_beta2, lr, decay_factor;
    bool maximize;

    template <class Options>
    static Coefficients make(const Options& o, std::int64_t, const adamx::NoGroupScalars&) {
      return {static_cast<Scalar>(o.beta1), static_cast<Scalar>(1.0 - o.beta1), static_cast<Scalar>(o.beta2),
              static_cast<Scalar>(1.0 - o.beta2), static_cast<Scalar>(o.lr),
              static_cast<Scalar>(1.0 - o.lr * o.weight_decay), o.maximize};
    }
    bool gradient_reads_param() const { return false; }
    bool uses_slot(int k) const { return k == m; }
  };

  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta&) {
    return c.maximize ? L(-grad) : grad;
  }

  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    g = gradient(c, grad, [] {});
    const L previous = state.load(m);
    const L interpolated = previous * c.beta1 + c.one_minus_beta1 * g;
    state.store(m, previous * c.beta2 + c.one_minus_beta2 * g);
    const L zero(Scalar(0));
    const L sign = adamx::detail::lane_select(interpolated > zero, L(Scalar(1)),
                                              adamx::detail::lane_select(interpolated < zero, L(Scalar(-1)), zero));
    return theta * c.decay_factor - c.lr * sign;
  }
};

namespace flavour {
struct SignMomentum {
  static constexpr const char* name = "SignMomentum";
  using Rule = toy::SignMomentum;
  using OptionParts = adamx::OptionPartList<SignMomentumOptions>;
};
}  // namespace flavour

}  // namespace toy

namespace {

using SignMomentumOptimizer = adamx::Optimizer<float, toy::flavour::SignMomentum>;
using Options = SignMomentumOptimizer::Options;
using Vec = Eigen::VectorXf;

// SignMomentum, one element at a time, in the parameters' type with the rule's
// order of operations (so the comparison is exact).
struct NaiveSignMomentum {
  std::vector<float> m;
  void step(const Options& o, Vec& theta, const Vec& grad) {
    if (m.empty()) m.assign(static_cast<std::size_t>(theta.size()), 0.0f);
    const float b1 = static_cast<float>(o.beta1), c1 = static_cast<float>(1.0 - o.beta1);
    const float b2 = static_cast<float>(o.beta2), c2 = static_cast<float>(1.0 - o.beta2);
    const float decay = static_cast<float>(1.0 - o.lr * o.weight_decay), lr = static_cast<float>(o.lr);
    for (Eigen::Index i = 0; i < theta.size(); ++i) {
      float& mi = m[static_cast<std::size_t>(i)];
      const float g = o.maximize ? -grad[i] : grad[i];
      const float c = mi * b1 + c1 * g;
      mi = mi * b2 + c2 * g;
      const float sign = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : 0.0f);
      theta[i] = theta[i] * decay - lr * sign;
    }
  }
};

Vec filled(Eigen::Index n, float scale, float shift) {
  Vec out(n);
  for (Eigen::Index i = 0; i < n; ++i) out[i] = scale * std::sin(0.7f * static_cast<float>(i) + shift);
  return out;
}

// Options with every field away from its default.
Options sign_momentum_options() {
  Options o;
  o.lr = 0.01;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.weight_decay = 0.1;
  o.maximize = true;
  return o;
}

TEST(RuleInterface, AForeignRuleStepsAsItsNaiveLoop) {
  const Options o = sign_momentum_options();
  // 37 elements: whole chunks and a scalar tail.
  Vec theta = filled(37, 1.0f, 0.0f), expected = theta;
  SignMomentumOptimizer opt;
  opt.add_group({adamx::ConstTensorRef<float>(theta)}, o);
  NaiveSignMomentum naive;
  for (int t = 1; t <= 6; ++t) {
    const Vec grad = filled(37, 0.5f, static_cast<float>(t));
    const auto& reports = opt.step({{adamx::TensorRef<float>(theta)}}, {{adamx::ConstTensorRef<float>(grad)}});
    naive.step(o, expected, grad);
    EXPECT_EQ(reports[0].step, t);
    EXPECT_EQ(reports[0].gamma, 1.0);  // a rule without γ reports 1
    EXPECT_EQ(opt.gamma(0), 1.0);
    for (Eigen::Index i = 0; i < theta.size(); ++i) ASSERT_EQ(theta[i], expected[i]) << "t = " << t << ", i = " << i;
  }
  const auto state = opt.state(0);
  ASSERT_EQ(state.tensors.size(), 1u);
  ASSERT_EQ(state.tensors[0].m.size(), 37);
  for (Eigen::Index i = 0; i < 37; ++i) EXPECT_EQ(state.tensors[0].m[i], naive.m[static_cast<std::size_t>(i)]);
  // The slots the toy does not declare are kept by no group.
  EXPECT_EQ(state.tensors[0].v.size(), 0);
  EXPECT_EQ(state.tensors[0].v_max.size(), 0);
  EXPECT_EQ(state.tensors[0].step_avg.size(), 0);
}

TEST(RuleInterface, AForeignRuleRestoresAndCheckpointsFromItsDeclarations) {
  Vec theta = filled(20, 1.0f, 0.5f);
  SignMomentumOptimizer opt;
  opt.add_group({adamx::ConstTensorRef<float>(theta)}, sign_momentum_options(), "layer");
  for (int t = 1; t <= 3; ++t) {
    const Vec grad = filled(20, 0.5f, static_cast<float>(t));
    opt.step({{adamx::TensorRef<float>(theta)}}, {{adamx::ConstTensorRef<float>(grad)}});
  }
  // A checkpoint (format version 2) written and read from the declarations
  // alone gives the state back bit for bit.
  std::stringstream file;
  adamx::save_checkpoint(opt, file);
  SignMomentumOptimizer loaded;
  loaded.add_group({adamx::ConstTensorRef<float>(theta)}, Options{}, "layer");
  adamx::load_checkpoint(loaded, file);
  EXPECT_TRUE(loaded.state() == opt.state());
  EXPECT_EQ(loaded.step_count(0), 3);

  // restore() checks the state against the declarations: a slot the toy does
  // not keep, or an invalid option, is refused and nothing changes.
  auto with_v = opt.state();
  with_v[0].tensors[0].v.setZero(20);
  EXPECT_THROW(loaded.restore(with_v), std::invalid_argument);
  auto short_m = opt.state();
  short_m[0].tensors[0].m.resize(19);
  EXPECT_THROW(loaded.restore(short_m), std::invalid_argument);
  auto bad_lr = opt.state();
  bad_lr[0].options.lr = -1.0;
  EXPECT_THROW(loaded.restore(bad_lr), std::invalid_argument);
  EXPECT_TRUE(loaded.state() == opt.state());

  // The generic setter reaches the toy's own fields by member.
  loaded.set(0, &Options::beta2, 0.5);
  EXPECT_EQ(loaded.options(0).beta2, 0.5);
  EXPECT_THROW(loaded.set(0, &Options::beta1, 1.5), std::invalid_argument);
}

}  // namespace
