// An update rule the library does not ship, declared here as a rule file
// would declare it (docs/design.md, "Update rules"): HeavyBall, momentum SGD
// (Polyak 1964) whose step can be scaled per element by an AdaGrad
// accumulator (Duchi, Hazan, Singer 2011). It is unlike every rule the
// library has: two state slots with names no library rule uses ("velocity",
// and "square_sum", kept only when the option `adaptive` is on), no group
// scalars and options of its own (no beta3, eps or amsgrad of Adam's). The
// generic driver, plain-data state, restore and checkpoints must take it with
// nothing but these declarations; its steps are checked against a naive loop.
#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <vector>

namespace toy {

// The toy's options: one part, none of the Adam family's.
struct HeavyBallOptions {
  double lr = 1e-2;
  double momentum = 0.9;      // μ, the decay of the velocity
  double eps = 1e-10;         // added to sqrt(square_sum) when adaptive
  double weight_decay = 0.0;  // decoupled: θ ← θ(1 − αλ)
  bool adaptive = false;      // scale g by 1/(sqrt(Σ g²) + ε) (AdaGrad) before the velocity
  bool maximize = false;
  adamx::NonFinitePolicy nonfinite = adamx::NonFinitePolicy::propagate;

  static auto option_fields() {
    using O = HeavyBallOptions;
    return std::make_tuple(adamx::option_field("lr", &O::lr, adamx::option_range::non_negative),
                           adamx::option_field("momentum", &O::momentum, adamx::option_range::rate),
                           adamx::option_field("eps", &O::eps, adamx::option_range::non_negative),
                           adamx::option_field("weight_decay", &O::weight_decay, adamx::option_range::non_negative),
                           adamx::option_flag("adaptive", &O::adaptive), adamx::option_flag("maximize", &O::maximize),
                           adamx::option_enum("nonfinite", &O::nonfinite));
  }
};

// The rule: g ← −g if maximizing; with `adaptive`, s ← s + g² and
// d = g / (sqrt(s) + ε), else d = g; u ← μ·u + d; θ ← θ(1 − αλ) − α·u.
struct HeavyBall {
  enum Slot : int { velocity = 0, square_sum = 1 };
  static constexpr int kSlots = 2;
  static constexpr int kBoundSlots = 1;  // square_sum only when adaptive
  static constexpr const char* slot_names[kSlots] = {"velocity", "square_sum"};
  template <class A>
  struct Slots {
    A velocity;    // u
    A square_sum;  // s, AdaGrad's sum of g²; empty unless adaptive
    static constexpr A Slots::*members[kSlots] = {&Slots::velocity, &Slots::square_sum};
  };

  template <class Scalar>
  struct Coefficients {
    Scalar momentum, eps, neg_lr, decay_factor;
    bool adaptive, maximize;

    template <class Options>
    static Coefficients make(const Options& o, std::int64_t, const adamx::NoGroupScalars&) {
      return {static_cast<Scalar>(o.momentum), static_cast<Scalar>(o.eps), static_cast<Scalar>(-o.lr),
              static_cast<Scalar>(1.0 - o.lr * o.weight_decay), o.adaptive, o.maximize};
    }
    bool gradient_reads_param() const { return false; }
    bool uses_slot(int k) const { return k == velocity || (k == square_sum && adaptive); }
  };

  template <class Scalar, class L, class LoadTheta>
  static ADAMX_ALWAYS_INLINE L gradient(const Coefficients<Scalar>& c, L grad, const LoadTheta&) {
    return c.maximize ? L(-grad) : grad;
  }

  template <class Scalar, class L, class State>
  static ADAMX_ALWAYS_INLINE L update(const Coefficients<Scalar>& c, const L& theta, const L& grad, L& g,
                                      State& state) {
    g = gradient(c, grad, [] {});
    L direction = g;
    if (c.adaptive) {
      const L sum = state.load(square_sum) + g * g;
      state.store(square_sum, sum);
      direction = g / (adamx::detail::lane_sqrt(sum) + L(c.eps));
    }
    const L u = state.load(velocity) * c.momentum + direction;
    state.store(velocity, u);
    return theta * c.decay_factor + c.neg_lr * u;
  }
};

namespace flavour {
struct HeavyBall {
  static constexpr const char* name = "HeavyBall";
  using Rule = toy::HeavyBall;
  using OptionParts = adamx::OptionPartList<HeavyBallOptions>;
};
}  // namespace flavour

}  // namespace toy

namespace {

using HeavyBallOptimizer = adamx::Optimizer<float, toy::flavour::HeavyBall>;
using Options = HeavyBallOptimizer::Options;
using Vec = Eigen::VectorXf;

// A TensorState has a member for each slot its rule declares, and none of
// another rule's (detected, since naming one would not compile).
template <class T, class = void>
struct has_member_v : std::false_type {};
template <class T>
struct has_member_v<T, std::void_t<decltype(&T::v)>> : std::true_type {};
using HeavyBallTensor = HeavyBallOptimizer::tensor_state_type;
static_assert(HeavyBallTensor::kSlots == 2, "the toy's two slots");
static_assert(std::is_same<decltype(HeavyBallTensor::velocity), Eigen::ArrayXf>::value, "its own names");
static_assert(std::is_same<decltype(HeavyBallTensor::square_sum), Eigen::ArrayXf>::value, "its own names");
static_assert(!has_member_v<HeavyBallTensor>::value, "no slot of Adam's");
static_assert(has_member_v<adamx::AdamX<float>::tensor_state_type>::value, "the detector finds Adam's v");

// HeavyBall, one element at a time, in the parameters' type with the rule's
// order of operations (so the comparison is exact).
struct NaiveHeavyBall {
  std::vector<float> velocity, square_sum;
  void step(const Options& o, Vec& theta, const Vec& grad) {
    const auto n = static_cast<std::size_t>(theta.size());
    if (velocity.empty()) velocity.assign(n, 0.0f);
    if (o.adaptive && square_sum.empty()) square_sum.assign(n, 0.0f);
    const float mu = static_cast<float>(o.momentum), eps = static_cast<float>(o.eps);
    const float decay = static_cast<float>(1.0 - o.lr * o.weight_decay), neg_lr = static_cast<float>(-o.lr);
    for (std::size_t i = 0; i < n; ++i) {
      const auto at = static_cast<Eigen::Index>(i);
      const float g = o.maximize ? -grad[at] : grad[at];
      float d = g;
      if (o.adaptive) {
        square_sum[i] = square_sum[i] + g * g;
        d = g / (std::sqrt(square_sum[i]) + eps);
      }
      velocity[i] = velocity[i] * mu + d;
      theta[at] = theta[at] * decay + neg_lr * velocity[i];
    }
  }
};

Vec filled(Eigen::Index n, float scale, float shift) {
  Vec out(n);
  for (Eigen::Index i = 0; i < n; ++i) out[i] = scale * std::sin(0.7f * static_cast<float>(i) + shift);
  return out;
}

// Options with every field away from its default.
Options heavy_ball_options(bool adaptive) {
  Options o;
  o.lr = 0.05;
  o.momentum = 0.8;
  o.eps = 1e-6;
  o.weight_decay = 0.1;
  o.adaptive = adaptive;
  o.maximize = true;
  return o;
}

TEST(RuleInterface, AForeignRuleStepsAsItsNaiveLoop) {
  for (const bool adaptive : {false, true}) {
    SCOPED_TRACE(adaptive ? "adaptive" : "plain");
    const Options o = heavy_ball_options(adaptive);
    // 37 elements: whole chunks and a scalar tail.
    Vec theta = filled(37, 1.0f, 0.0f), expected = theta;
    HeavyBallOptimizer opt;
    opt.add_group({adamx::ConstTensorRef<float>(theta)}, o);
    NaiveHeavyBall naive;
    for (int t = 1; t <= 6; ++t) {
      const Vec grad = filled(37, 0.5f, static_cast<float>(t));
      const auto& reports = opt.step({{adamx::TensorRef<float>(theta)}}, {{adamx::ConstTensorRef<float>(grad)}});
      naive.step(o, expected, grad);
      EXPECT_EQ(reports[0].step, t);
      EXPECT_EQ(reports[0].gamma, 1.0);  // a rule without γ reports 1
      EXPECT_EQ(opt.gamma(0), 1.0);
      for (Eigen::Index i = 0; i < theta.size(); ++i)
        ASSERT_EQ(theta[i], expected[i]) << "t = " << t << ", i = " << i;
    }
    const auto state = opt.state(0);
    ASSERT_EQ(state.tensors.size(), 1u);
    const auto& ts = state.tensors[0];
    ASSERT_EQ(ts.velocity.size(), 37);
    for (Eigen::Index i = 0; i < 37; ++i) EXPECT_EQ(ts.velocity[i], naive.velocity[static_cast<std::size_t>(i)]);
    // square_sum is kept only when the options use it; slot(k) and the
    // names follow the declaration.
    ASSERT_EQ(ts.square_sum.size(), adaptive ? 37 : 0);
    for (Eigen::Index i = 0; i < ts.square_sum.size(); ++i)
      EXPECT_EQ(ts.square_sum[i], naive.square_sum[static_cast<std::size_t>(i)]);
    EXPECT_EQ(&ts.slot(toy::HeavyBall::velocity), &ts.velocity);
    EXPECT_EQ(&ts.slot(toy::HeavyBall::square_sum), &ts.square_sum);
    EXPECT_STREQ(HeavyBallTensor::slot_names[1], "square_sum");
    const auto view = opt.state_view(0, 0);
    EXPECT_EQ(view.velocity.data(), &view.slot(0).coeffRef(0));
    EXPECT_EQ(view.square_sum.size(), ts.square_sum.size());
  }
}

TEST(RuleInterface, AForeignRuleRestoresAndCheckpointsFromItsDeclarations) {
  for (const bool adaptive : {false, true}) {
    SCOPED_TRACE(adaptive ? "adaptive" : "plain");
    Vec theta = filled(20, 1.0f, 0.5f);
    HeavyBallOptimizer opt;
    opt.add_group({adamx::ConstTensorRef<float>(theta)}, heavy_ball_options(adaptive), "layer");
    for (int t = 1; t <= 3; ++t) {
      const Vec grad = filled(20, 0.5f, static_cast<float>(t));
      opt.step({{adamx::TensorRef<float>(theta)}}, {{adamx::ConstTensorRef<float>(grad)}});
    }
    // A checkpoint written and read from the declarations alone gives the
    // state back bit for bit, and names the toy's slots.
    std::stringstream file;
    adamx::save_checkpoint(opt, file);
    EXPECT_NE(file.str().find("square_sum"), std::string::npos);
    HeavyBallOptimizer loaded;
    loaded.add_group({adamx::ConstTensorRef<float>(theta)}, Options{}, "layer");
    adamx::load_checkpoint(loaded, file);
    EXPECT_TRUE(loaded.state() == opt.state());
    EXPECT_EQ(loaded.step_count(0), 3);

    // restore() checks the state against the declarations: a slot the
    // options do not keep, a short slot or an invalid option is refused,
    // naming the slots, and nothing changes.
    const auto message_of = [&](const std::vector<HeavyBallOptimizer::State>& states) {
      try {
        loaded.restore(states);
      } catch (const std::invalid_argument& error) {
        return std::string(error.what());
      }
      return std::string("(no exception)");
    };
    auto wrong_square_sum = opt.state();
    wrong_square_sum[0].tensors[0].square_sum.setZero(adaptive ? 19 : 20);
    EXPECT_NE(message_of(wrong_square_sum).find(adaptive ? "has velocity, square_sum of sizes 20, 19 (expected 20, 20)"
                                                          : "has velocity, square_sum of sizes 20, 20 (expected 20, 0)"),
              std::string::npos)
        << message_of(wrong_square_sum);
    auto short_velocity = opt.state();
    short_velocity[0].tensors[0].velocity.resize(19);
    EXPECT_THROW(loaded.restore(short_velocity), std::invalid_argument);
    auto bad_lr = opt.state();
    bad_lr[0].options.lr = -1.0;
    EXPECT_THROW(loaded.restore(bad_lr), std::invalid_argument);
    EXPECT_TRUE(loaded.state() == opt.state());

    // The generic setter reaches the toy's own fields by member; turning
    // `adaptive` on starts square_sum at zero, off drops it.
    loaded.set(0, &Options::momentum, 0.5);
    EXPECT_EQ(loaded.options(0).momentum, 0.5);
    EXPECT_THROW(loaded.set(0, &Options::momentum, 1.5), std::invalid_argument);
    loaded.set(0, &Options::adaptive, !adaptive);
    EXPECT_EQ(loaded.state(0).tensors[0].square_sum.size(), adaptive ? 0 : 20);
    if (!adaptive) {
      EXPECT_TRUE((loaded.state(0).tensors[0].square_sum == 0.0f).all());
    }
    // The velocity is untouched by the switch.
    const Eigen::ArrayXf kept = loaded.state(0).tensors[0].velocity, stepped = opt.state(0).tensors[0].velocity;
    ASSERT_EQ(kept.size(), 20);
    EXPECT_EQ(std::memcmp(kept.data(), stepped.data(), sizeof(float) * 20), 0);
  }
}

}  // namespace
