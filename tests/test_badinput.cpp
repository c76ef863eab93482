// Bad input: every invalid option, every malformed step() call and every
// non-finite gradient policy. Each failure must throw the documented
// exception with a message that names what was wrong and where, and must
// leave the optimizer and the caller's parameters bitwise as they were.
//
// The "unchanged" checks run after the optimizer has taken a few steps (so
// m, v, v_max, γ and h are all non-trivial), compare the full state() with a
// copy taken before (GroupState's operator== is bitwise) and the parameter
// bytes, and finally check that the optimizer still steps exactly like a copy
// that never saw the bad call.
#include "test_util.hpp"

#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using adamx_test::BitwiseEqual;
using adamx_test::Contains;
using adamx_test::MentionsShape;
using adamx_test::NamesFieldAndValue;
using adamx_test::Snapshot;
using adamx_test::thrown_message;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTiny = std::numeric_limits<double>::denorm_min();

// The invalid values tried for each option field. Every one must be
// rejected by every route (add_group, set_options, the typed setter).
// `gamma_fixed`: the optimizer's β3 is AdamX's γ rate, held at 1 (Adam,
// AdamW, the baselines); `beta3_is_rate`: its β3 is an EMA rate like β1
// (Adan's), not γ's.
std::vector<double> invalid_values(const std::string& field, bool gamma_fixed, bool beta3_is_rate = false) {
  const double above_one = std::nextafter(1.0, 2.0);
  if (field == "lr") return {-1e-3, -kTiny, -1.0, kNaN, kInf, -kInf};
  if (field == "beta1" || field == "beta2" || (field == "beta3" && beta3_is_rate))
    return {-0.1, -kTiny, 1.0, above_one, 1.5, kNaN, kInf, -kInf};
  if (field == "beta3") {
    std::vector<double> v = {-0.1, -kTiny, above_one, 1.5, kNaN, kInf, -kInf};
    if (gamma_fixed) {  // Adam and AdamW: γ is fixed, so β3 must be exactly 1.
      v.push_back(0.9);
      v.push_back(0.0);
      v.push_back(std::nextafter(1.0, 0.0));
    }
    return v;
  }
  if (field == "beta_norm") return {-0.1, -kTiny, 1.0, above_one, 1.5, kNaN, kInf, -kInf};
  if (field == "eps") return {-1e-8, -kTiny, kNaN, kInf, -kInf};
  if (field == "weight_decay") return {-1e-2, -kTiny, kNaN, kInf, -kInf};
  if (field == "final_lr") return {-0.1, -kTiny, kNaN, kInf, -kInf};
  if (field == "bound_speed") return {0.0, -1e-3, -kTiny, kNaN, kInf, -kInf};
  if (field == "beta_step") return {-0.1, -kTiny, 1.0, above_one, kNaN, kInf, -kInf};
  // Enumerations: values outside the declared enumerators (static_cast).
  if (field == "decay_mode") return {2.0, -1.0, 100.0};
  if (field == "nonfinite") return {3.0, -1.0, 100.0};
  ADD_FAILURE() << "unknown field " << field;
  return {};
}

template <class Options>
void set_field(Options& o, const std::string& field, double value) {
  if (!adamx_test::set_option(o, field, value)) ADD_FAILURE() << "unknown field " << field;
}

// Whether the optimizer `Opt` is Adan, whose β3 (a rate in [0, 1)) and ε
// are its own, and which has none of the Adam family's other options.
template <class Opt>
constexpr bool kIsAdan = adamx_test::kStepsWith<adamx_test::FlavourOf_t<Opt>, adamx::rules::Adan>;

// Whether the optimizer `Opt` must have the option `field`: lr, β1, β2,
// weight decay, maximize and the policy every optimizer; the Adam family's
// (β3, β_n, ε, decay mode, AMSGrad) every optimizer that keeps Adam's second
// moment v and AMSGrad's v_max (not Lion), Adan only β3 and ε, Schedule-Free
// AdamW only ε; AdaBound's and AdaMod's own only
// their optimizer, Adan's no_prox only Adan (a setter of an option an
// optimizer lacks does not compile: tests/compile_error).
template <class Opt>
bool must_have_option(const std::string& field) {
  using Flavour = adamx_test::FlavourOf_t<Opt>;
  // The Adam family and its baselines keep AMSGrad's v_max; Adan and
  // Schedule-Free AdamW keep a v but have only some of their options.
  const bool adam_family = adamx_test::rule_has_slot<Opt>("v_max");
  if (field == "eps") return adamx_test::rule_has_slot<Opt>("v");
  if (field == "beta3") return adam_family || kIsAdan<Opt>;
  if (field == "beta_norm" || field == "decay_mode" || field == "amsgrad") return adam_family;
  if (field == "no_prox") return kIsAdan<Opt>;
  if (field == "final_lr" || field == "bound_speed") return adamx_test::kStepsWith<Flavour, adamx::rules::AdaBound>;
  if (field == "beta_step") return adamx_test::kStepsWith<Flavour, adamx::rules::AdaMod>;
  return true;
}

// The typed setter that owns `field`.
template <class Opt>
void call_setter(Opt& opt, std::size_t g, const std::string& field, double value) {
  if (field == "lr") opt.set_lr(g, value);
  else if (field == "beta1") opt.set_betas(g, value, opt.options(g).beta2);
  else if (field == "beta2") opt.set_betas(g, opt.options(g).beta1, value);
  else if (field == "beta3") EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_beta3(g, value)) { o.set_beta3(g, value); }));
  else if (field == "beta_norm") EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_beta_norm(g, value)) { o.set_beta_norm(g, value); }));
  else if (field == "eps") EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_eps(g, value)) { o.set_eps(g, value); }));
  else if (field == "weight_decay") opt.set_weight_decay(g, value);
  else if (field == "final_lr") EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_final_lr(g, value)) { o.set_final_lr(g, value); }));
  else if (field == "bound_speed") EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_bound_speed(g, value)) { o.set_bound_speed(g, value); }));
  else if (field == "beta_step") EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_beta_step(g, value)) { o.set_beta_step(g, value); }));
  else if (field == "decay_mode") {
    const auto mode = static_cast<adamx::WeightDecayMode>(static_cast<int>(value));
    EXPECT_TRUE(adamx_test::call_if_declared(opt, [&](auto& o) -> decltype(o.set_decay_mode(g, mode)) { o.set_decay_mode(g, mode); }));
  }
  else if (field == "nonfinite") opt.set_nonfinite(g, static_cast<adamx::NonFinitePolicy>(static_cast<int>(value)));
  else ADD_FAILURE() << "unknown field " << field;
}

// A two-group model: "fc1" = {weight 3x4 column-major, bias 4} with the
// flavour's defaults, "fc2" = {weight 4x2 row-major, bias Array 2} with
// amsgrad, weight decay and another lr. A twin optimizer and twin parameters
// are copied after the warm-up steps; ExpectStepsLikeTwin() checks that a bad
// call left the optimizer able to continue exactly as if it never happened.
template <class Opt>
class BadInput : public ::testing::Test {
 protected:
  using S = typename Opt::scalar_type;
  using Options = typename Opt::Options;
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  using Arr = Eigen::Array<S, Eigen::Dynamic, 1>;
  using Tensor = adamx::TensorRef<S>;
  using ConstTensor = adamx::ConstTensorRef<S>;
  static constexpr bool kGammaFixed = adamx_test::kGammaFixed<Opt>;

  Mat w1 = Mat(3, 4), gw1 = Mat(3, 4);
  Vec b1 = Vec(4), gb1 = Vec(4);
  RowMat w2 = RowMat(4, 2), gw2 = RowMat(4, 2);
  Arr b2 = Arr(2), gb2 = Arr(2);
  Opt opt;

  Opt twin;
  Mat tw1;
  Vec tb1;
  RowMat tw2;
  Arr tb2;

  void SetUp() override { Reset(); }

  // Builds the model and takes three steps with gradients of varying scale.
  void Reset() {
    opt = Opt();
    adamx_test::fill(w1, 1);
    adamx_test::fill(b1, 2);
    adamx_test::fill(w2, 3);
    adamx_test::fill(b2, 4);
    Options o1;
    opt.add_group({w1, b1}, o1, "fc1", {"weight", "bias"});
    Options o2;
    o2.lr = 3e-3;
    adamx_test::set_option(o2, "amsgrad", 1);  // where the optimizer has it (not Lion)
    o2.weight_decay = 1e-3;
    o2.set_betas(0.8, 0.99);
    opt.add_group({w2, b2}, o2, "fc2", {"weight", "bias"});
    for (int k = 0; k < 3; ++k) {
      FillGrads(10 + k, k == 1 ? 20.0 : 0.5);
      Step();
    }
    FillGrads(20);
    twin = opt;
    tw1 = w1;
    tb1 = b1;
    tw2 = w2;
    tb2 = b2;
  }

  void FillGrads(std::uint64_t seed, double scale = 1.0) {
    adamx_test::fill(gw1, seed * 4 + 0, scale);
    adamx_test::fill(gb1, seed * 4 + 1, scale);
    adamx_test::fill(gw2, seed * 4 + 2, scale);
    adamx_test::fill(gb2, seed * 4 + 3, scale);
  }

  const std::vector<adamx::StepReport>& Step() {
    return opt.step({{w1, b1}, {w2, b2}}, {{gw1, gb1}, {gw2, gb2}});
  }

  Snapshot<Opt> Take() const { return Snapshot<Opt>(opt, {w1, b1, w2, b2}); }
  ::testing::AssertionResult Unchanged(const Snapshot<Opt>& before) const {
    return before.Unchanged(opt, {w1, b1, w2, b2});
  }

  // Two more steps of opt and of the untouched twin, same gradients: state
  // and parameters must agree bit for bit.
  void ExpectStepsLikeTwin() {
    for (int k = 0; k < 2; ++k) {
      FillGrads(30 + k);
      Step();
      twin.step({{tw1, tb1}, {tw2, tb2}}, {{gw1, gb1}, {gw2, gb2}});
    }
    EXPECT_TRUE(opt.state() == twin.state());
    EXPECT_TRUE(BitwiseEqual(w1, tw1));
    EXPECT_TRUE(BitwiseEqual(b1, tb1));
    EXPECT_TRUE(BitwiseEqual(w2, tw2));
    EXPECT_TRUE(BitwiseEqual(b2, tb2));
  }

  // ---- invalid options ----------------------------------------------------

  // Whether the optimizer has the option `field`, checked against which it
  // must have: the checks below are made where it has it.
  bool HasOption(const std::string& field) {
    const bool has = adamx::has_option_field<Options>(field.c_str());
    EXPECT_EQ(has, must_have_option<Opt>(field)) << field;
    return has;
  }

  // A new group "fc3" with one invalid field: rejected, nothing added.
  void CheckAddGroup(const std::string& field) {
    if (!HasOption(field)) return;
    Mat w3 = Mat(2, 2);
    for (double value : invalid_values(field, kGammaFixed, kIsAdan<Opt>)) {
      SCOPED_TRACE(field + " = " + std::to_string(value));
      const auto before = Take();
      Options bad;
      set_field(bad, field, value);
      const std::string message = thrown_message<std::invalid_argument>(
          [&] { opt.add_group({w3}, bad, "fc3", {"weight"}); });
      EXPECT_TRUE(NamesFieldAndValue(message, field, value));
      EXPECT_TRUE(Contains(message, "fc3"));
      EXPECT_TRUE(Unchanged(before));
    }
    ExpectStepsLikeTwin();
  }

  // set_options on the last group with its current options but one field bad.
  void CheckSetOptions(const std::string& field) {
    if (!HasOption(field)) return;
    for (std::size_t g : {std::size_t{1}, std::size_t{0}}) {
      for (double value : invalid_values(field, kGammaFixed, kIsAdan<Opt>)) {
        SCOPED_TRACE(field + " = " + std::to_string(value) + " on group " + std::to_string(g));
        const auto before = Take();
        Options bad = opt.options(g);
        set_field(bad, field, value);
        const std::string message =
            thrown_message<std::invalid_argument>([&] { opt.set_options(g, bad); });
        EXPECT_TRUE(NamesFieldAndValue(message, field, value));
        EXPECT_TRUE(Contains(message, g == 0 ? "fc1" : "fc2"));
        EXPECT_TRUE(Unchanged(before));
      }
    }
    ExpectStepsLikeTwin();
  }

  void CheckTypedSetter(const std::string& field) {
    if (!HasOption(field)) return;
    for (std::size_t g : {std::size_t{1}, std::size_t{0}}) {
      for (double value : invalid_values(field, kGammaFixed, kIsAdan<Opt>)) {
        SCOPED_TRACE(field + " = " + std::to_string(value) + " on group " + std::to_string(g));
        const auto before = Take();
        const std::string message =
            thrown_message<std::invalid_argument>([&] { call_setter(opt, g, field, value); });
        EXPECT_TRUE(NamesFieldAndValue(message, field, value));
        EXPECT_TRUE(Contains(message, g == 0 ? "fc1" : "fc2"));
        EXPECT_TRUE(Unchanged(before));
      }
    }
    ExpectStepsLikeTwin();
  }

  // ---- non-finite gradients -----------------------------------------------

  // Where a bad gradient element goes: group, tensor, qualified name.
  struct Site {
    std::size_t group;
    int tensor;  // 0 = weight, 1 = bias
    const char* name;
  };
  static std::vector<Site> Sites() {
    return {{0, 0, "fc1.weight"}, {0, 1, "fc1.bias"}, {1, 0, "fc2.weight"}, {1, 1, "fc2.bias"}};
  }
  // Puts `value` into one element of the gradient at `site`; returns a
  // pointer to the matching parameter element.
  S* Inject(const Site& site, double value) {
    const S x = static_cast<S>(value);
    if (site.group == 0 && site.tensor == 0) {
      gw1(2, 1) = x;
      return &w1(2, 1);
    }
    if (site.group == 0) {
      gb1(3) = x;
      return &b1(3);
    }
    if (site.tensor == 0) {
      gw2(1, 1) = x;
      return &w2(1, 1);
    }
    gb2(0) = x;
    return &b2(0);
  }
  Eigen::Index CountNonFinite(std::size_t group) const {
    if (group == 0)
      return (!w1.array().isFinite()).count() + (!b1.array().isFinite()).count();
    return (!w2.array().isFinite()).count() + (!b2.array().isFinite()).count();
  }
  // The parameters of one group, as they are now, for bitwise comparison.
  std::vector<std::vector<unsigned char>> GroupParams(std::size_t group) const {
    if (group == 0) return {adamx_test::bytes_of<S>(w1), adamx_test::bytes_of<S>(b1)};
    return {adamx_test::bytes_of<S>(w2), adamx_test::bytes_of<S>(b2)};
  }
  std::vector<std::vector<unsigned char>> TwinGroupParams(std::size_t group) const {
    if (group == 0) return {adamx_test::bytes_of<S>(tw1), adamx_test::bytes_of<S>(tb1)};
    return {adamx_test::bytes_of<S>(tw2), adamx_test::bytes_of<S>(tb2)};
  }
  // The twin takes the step with the clean gradients (before injection): the
  // other group must end up exactly as the twin's.
  void StepTwinWithCleanGradients() {
    twin.step({{tw1, tb1}, {tw2, tb2}}, {{gw1, gb1}, {gw2, gb2}});
  }
};

TYPED_TEST_SUITE(BadInput, adamx_test::AllOptimizers, adamx_test::OptimizerName);

// ---- invalid options: add_group --------------------------------------------

TYPED_TEST(BadInput, AddGroupWithInvalidLrThrowsAndChangesNothing) { this->CheckAddGroup("lr"); }
TYPED_TEST(BadInput, AddGroupWithInvalidBeta1ThrowsAndChangesNothing) { this->CheckAddGroup("beta1"); }
TYPED_TEST(BadInput, AddGroupWithInvalidBeta2ThrowsAndChangesNothing) { this->CheckAddGroup("beta2"); }
TYPED_TEST(BadInput, AddGroupWithInvalidBeta3ThrowsAndChangesNothing) { this->CheckAddGroup("beta3"); }
TYPED_TEST(BadInput, AddGroupWithInvalidBetaNormThrowsAndChangesNothing) { this->CheckAddGroup("beta_norm"); }
TYPED_TEST(BadInput, AddGroupWithInvalidEpsThrowsAndChangesNothing) { this->CheckAddGroup("eps"); }
TYPED_TEST(BadInput, AddGroupWithInvalidWeightDecayThrowsAndChangesNothing) { this->CheckAddGroup("weight_decay"); }
TYPED_TEST(BadInput, AddGroupWithInvalidDecayModeThrowsAndChangesNothing) { this->CheckAddGroup("decay_mode"); }
TYPED_TEST(BadInput, AddGroupWithInvalidFinalLrThrowsAndChangesNothing) { this->CheckAddGroup("final_lr"); }
TYPED_TEST(BadInput, AddGroupWithInvalidBoundSpeedThrowsAndChangesNothing) { this->CheckAddGroup("bound_speed"); }
TYPED_TEST(BadInput, AddGroupWithInvalidBetaStepThrowsAndChangesNothing) { this->CheckAddGroup("beta_step"); }
TYPED_TEST(BadInput, AddGroupWithInvalidNonFinitePolicyThrowsAndChangesNothing) { this->CheckAddGroup("nonfinite"); }

// ---- invalid options: set_options --------------------------------------------

TYPED_TEST(BadInput, SetOptionsWithInvalidLrThrowsAndChangesNothing) { this->CheckSetOptions("lr"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidBeta1ThrowsAndChangesNothing) { this->CheckSetOptions("beta1"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidBeta2ThrowsAndChangesNothing) { this->CheckSetOptions("beta2"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidBeta3ThrowsAndChangesNothing) { this->CheckSetOptions("beta3"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidBetaNormThrowsAndChangesNothing) { this->CheckSetOptions("beta_norm"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidEpsThrowsAndChangesNothing) { this->CheckSetOptions("eps"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidWeightDecayThrowsAndChangesNothing) { this->CheckSetOptions("weight_decay"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidDecayModeThrowsAndChangesNothing) { this->CheckSetOptions("decay_mode"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidFinalLrThrowsAndChangesNothing) { this->CheckSetOptions("final_lr"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidBoundSpeedThrowsAndChangesNothing) { this->CheckSetOptions("bound_speed"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidBetaStepThrowsAndChangesNothing) { this->CheckSetOptions("beta_step"); }
TYPED_TEST(BadInput, SetOptionsWithInvalidNonFinitePolicyThrowsAndChangesNothing) { this->CheckSetOptions("nonfinite"); }

// ---- invalid options: the typed setters -------------------------------------

TYPED_TEST(BadInput, SetLrWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("lr"); }
TYPED_TEST(BadInput, SetBetasWithInvalidBeta1ThrowsAndChangesNothing) { this->CheckTypedSetter("beta1"); }
TYPED_TEST(BadInput, SetBetasWithInvalidBeta2ThrowsAndChangesNothing) { this->CheckTypedSetter("beta2"); }
TYPED_TEST(BadInput, SetBeta3WithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("beta3"); }
TYPED_TEST(BadInput, SetBetaNormWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("beta_norm"); }
TYPED_TEST(BadInput, SetEpsWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("eps"); }
TYPED_TEST(BadInput, SetWeightDecayWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("weight_decay"); }
TYPED_TEST(BadInput, SetDecayModeWithInvalidEnumThrowsAndChangesNothing) { this->CheckTypedSetter("decay_mode"); }
TYPED_TEST(BadInput, SetFinalLrWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("final_lr"); }
TYPED_TEST(BadInput, SetBoundSpeedWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("bound_speed"); }
TYPED_TEST(BadInput, SetBetaStepWithInvalidValueThrowsAndChangesNothing) { this->CheckTypedSetter("beta_step"); }
TYPED_TEST(BadInput, SetNonFiniteWithInvalidEnumThrowsAndChangesNothing) { this->CheckTypedSetter("nonfinite"); }

TYPED_TEST(BadInput, AllGroupsSetLrWithInvalidValueThrowsAndChangesNothing) {
  for (double value : invalid_values("lr", TestFixture::kGammaFixed)) {
    SCOPED_TRACE("lr = " + std::to_string(value));
    const auto before = this->Take();
    const std::string message =
        thrown_message<std::invalid_argument>([&] { this->opt.set_lr(value); });
    EXPECT_TRUE(NamesFieldAndValue(message, "lr", value));
    EXPECT_TRUE(Contains(message, "fc1"));  // the first group it was checked against
    EXPECT_TRUE(this->Unchanged(before));
  }
  this->ExpectStepsLikeTwin();
}

TYPED_TEST(BadInput, AddGroupWithInvalidOptionsNamesTheDefaultGroupName) {
  typename TestFixture::Mat w3 = TestFixture::Mat::Zero(2, 2);
  typename TestFixture::Options bad;
  // ε where the optimizer has it, else (Lion) the weight decay.
  const std::string field = adamx_test::declares_option<typename TestFixture::Options>("eps") ? "eps" : "weight_decay";
  ASSERT_TRUE(adamx_test::set_option(bad, field, -1.0));
  const auto before = this->Take();
  const std::string message =
      thrown_message<std::invalid_argument>([&] { this->opt.add_group({w3}, bad); });
  EXPECT_TRUE(NamesFieldAndValue(message, field, -1.0));
  EXPECT_TRUE(Contains(message, "group2"));  // the name the group would have had
  EXPECT_TRUE(this->Unchanged(before));
}

// The edges of every valid range are accepted (the bad-value tests above
// would pass vacuously if everything were rejected).
TYPED_TEST(BadInput, BoundaryValuesOfEveryRangeAreAccepted) {
  using Options = typename TestFixture::Options;
  Options o = this->opt.options(1);
  o.lr = 0.0;
  // Schedule-Free AdamW's β1 is in (0, 1): its evaluation point divides by it.
  const bool beta1_open = adamx_test::kStepsWith<adamx_test::FlavourOf_t<TypeParam>, adamx::rules::ScheduleFreeAdamW>;
  o.beta1 = beta1_open ? std::numeric_limits<double>::denorm_min() : 0.0;
  o.beta2 = std::nextafter(1.0, 0.0);
  o.weight_decay = 0.0;
  // The Adam family's, AdaBound's and AdaMod's own options where the
  // optimizer has them.
  adamx_test::set_option(o, "beta_norm", 0.0);
  adamx_test::set_option(o, "eps", 0.0);
  adamx_test::set_option(o, "final_lr", 0.0);
  adamx_test::set_option(o, "bound_speed", std::numeric_limits<double>::denorm_min());
  adamx_test::set_option(o, "beta_step", 0.0);
  EXPECT_NO_THROW(this->opt.set_options(1, o));
  EXPECT_TRUE(this->opt.options(1) == o);
  o.beta1 = std::nextafter(1.0, 0.0);
  o.beta2 = 0.0;
  adamx_test::set_option(o, "beta_norm", std::nextafter(1.0, 0.0));
  o.lr = std::numeric_limits<double>::max();
  o.weight_decay = std::numeric_limits<double>::max();
  adamx_test::set_option(o, "eps", std::numeric_limits<double>::max());
  adamx_test::set_option(o, "final_lr", std::numeric_limits<double>::max());
  adamx_test::set_option(o, "bound_speed", std::numeric_limits<double>::max());
  adamx_test::set_option(o, "beta_step", std::nextafter(1.0, 0.0));
  EXPECT_NO_THROW(this->opt.set_options(1, o));
  // β3 and the decay mode where the optimizer has them (not Lion).
  // Adan's β3 is a rate in [0, 1): its boundary values are 0 and just below 1.
  const bool has_beta3 = adamx_test::call_if_declared(this->opt, [](auto& opt) -> decltype(opt.set_beta3(1, 1.0)) {
    if (kIsAdan<TypeParam>) {
      EXPECT_NO_THROW(opt.set_beta3(1, std::nextafter(1.0, 0.0)));
      EXPECT_NO_THROW(opt.set_beta3(1, 0.0));
      return;
    }
    EXPECT_NO_THROW(opt.set_beta3(1, 1.0));
    if (!TestFixture::kGammaFixed) {
      EXPECT_NO_THROW(opt.set_beta3(1, 0.0));
      EXPECT_EQ(adamx_test::option_or(opt.options(1), "beta3", -1.0), 0.0);
    }
  });
  EXPECT_EQ(has_beta3, must_have_option<TypeParam>("beta3"));
  EXPECT_NO_THROW(this->opt.set_lr(0.0));
  const bool has_decay_mode =
      adamx_test::call_if_declared(this->opt, [](auto& opt) -> decltype(opt.set_decay_mode(0, adamx::WeightDecayMode::decoupled)) {
        EXPECT_NO_THROW(opt.set_decay_mode(0, adamx::WeightDecayMode::decoupled));
      });
  EXPECT_EQ(has_decay_mode, must_have_option<TypeParam>("decay_mode"));
  EXPECT_NO_THROW(this->opt.set_nonfinite(0, adamx::NonFinitePolicy::error));
}

// ---- malformed step() calls ---------------------------------------------------

TYPED_TEST(BadInput, WrongGroupCountThrowsAndChangesNothing) {
  auto& t = *this;
  const auto before = t.Take();
  const auto check = [&](auto&& call, const char* got) {
    SCOPED_TRACE(got);
    const std::string message = thrown_message<std::invalid_argument>(call);
    EXPECT_TRUE(Contains(message, "2"));  // the optimizer's group count
    EXPECT_TRUE(t.Unchanged(before));
  };
  check([&] { t.opt.step({{t.w1, t.b1}}, {{t.gw1, t.gb1}}); }, "1 and 1 groups");
  check([&] { t.opt.step({{t.w1, t.b1}, {t.w2, t.b2}}, {{t.gw1, t.gb1}}); }, "2 and 1 groups");
  check([&] { t.opt.step({{t.w1, t.b1}}, {{t.gw1, t.gb1}, {t.gw2, t.gb2}}); }, "1 and 2 groups");
  check([&] {
    t.opt.step({{t.w1, t.b1}, {t.w2, t.b2}, {t.w2, t.b2}}, {{t.gw1, t.gb1}, {t.gw2, t.gb2}, {t.gw2, t.gb2}});
  }, "3 and 3 groups");
  check([&] {
    const std::vector<std::vector<typename TestFixture::Tensor>> none;
    const std::vector<std::vector<typename TestFixture::ConstTensor>> none_grads;
    t.opt.step(none, none_grads);
  }, "0 and 0 groups");
  t.ExpectStepsLikeTwin();
}

TYPED_TEST(BadInput, WrongTensorCountInOneGroupThrowsNamingGroupAndChangesNothing) {
  auto& t = *this;
  using Tensor = typename TestFixture::Tensor;
  using ConstTensor = typename TestFixture::ConstTensor;
  using Params = std::vector<std::vector<Tensor>>;
  using Grads = std::vector<std::vector<ConstTensor>>;
  const Params good_params = {{t.w1, t.b1}, {t.w2, t.b2}};
  const Grads good_grads = {{t.gw1, t.gb1}, {t.gw2, t.gb2}};
  for (std::size_t g : {std::size_t{1}, std::size_t{0}}) {
    const std::string group = g == 0 ? "fc1" : "fc2";
    // Each variant changes only one side (params or grads) of one group.
    for (int variant = 0; variant < 6; ++variant) {
      SCOPED_TRACE("group " + group + ", variant " + std::to_string(variant));
      Params params = good_params;
      Grads grads = good_grads;
      switch (variant) {
        case 0: params[g].pop_back(); break;                 // one parameter missing
        case 1: grads[g].pop_back(); break;                  // one gradient missing
        case 2: params[g].push_back(params[g].back()); break;  // one parameter too many
        case 3: grads[g].push_back(grads[g].back()); break;    // one gradient too many
        case 4: params[g].clear(); break;
        default: grads[g].clear(); break;
      }
      const auto before = t.Take();
      const std::string message = thrown_message<std::invalid_argument>([&] { t.opt.step(params, grads); });
      EXPECT_TRUE(Contains(message, group));
      EXPECT_TRUE(t.Unchanged(before));
    }
  }
  t.ExpectStepsLikeTwin();
}

// fc2.weight is 4x2 row-major; fc1.weight is 3x4 column-major; biases are
// vectors. Every wrong shape, on either side, in either group.
TYPED_TEST(BadInput, WrongShapeThrowsNamingTensorAndShapesAndChangesNothing) {
  auto& t = *this;
  using Mat = typename TestFixture::Mat;
  using RowMat = typename TestFixture::RowMat;
  using S = typename TestFixture::S;
  using Tensor = typename TestFixture::Tensor;
  using ConstTensor = typename TestFixture::ConstTensor;

  struct Case {
    const char* what;
    std::size_t group;
    int tensor;
    Eigen::Index expected_rows, expected_cols;
    Eigen::Index rows, cols;
    bool row_major;
  };
  const std::vector<Case> cases = {
      {"fc2.weight rows", 1, 0, 4, 2, 5, 2, true},
      {"fc2.weight cols", 1, 0, 4, 2, 4, 3, true},
      {"fc2.weight transposed", 1, 0, 4, 2, 2, 4, true},
      {"fc2.weight column-major", 1, 0, 4, 2, 4, 2, false},
      {"fc2.bias length", 1, 1, 2, 1, 3, 1, false},
      {"fc2.bias as a row vector", 1, 1, 2, 1, 1, 2, true},
      {"fc1.weight rows", 0, 0, 3, 4, 2, 4, false},
      {"fc1.weight transposed", 0, 0, 3, 4, 4, 3, false},
      {"fc1.weight row-major", 0, 0, 3, 4, 3, 4, true},
      {"fc1.bias length", 0, 1, 4, 1, 5, 1, false},
  };
  for (const Case& c : cases) {
    for (bool on_grad : {false, true}) {
      SCOPED_TRACE(std::string(c.what) + (on_grad ? " (gradient)" : " (parameter)"));
      Mat col(c.rows, c.cols);
      RowMat row(c.rows, c.cols);
      col.setConstant(S(0.5));
      row.setConstant(S(0.5));
      std::vector<std::vector<Tensor>> params = {{t.w1, t.b1}, {t.w2, t.b2}};
      std::vector<std::vector<ConstTensor>> grads = {{t.gw1, t.gb1}, {t.gw2, t.gb2}};
      const Tensor bad = c.row_major ? Tensor(row) : Tensor(col);
      if (on_grad) grads[c.group][static_cast<std::size_t>(c.tensor)] = bad;
      else params[c.group][static_cast<std::size_t>(c.tensor)] = bad;

      const auto before = t.Take();
      const std::string message = thrown_message<std::invalid_argument>([&] { t.opt.step(params, grads); });
      const std::string qualified = std::string(c.group == 0 ? "fc1" : "fc2") + (c.tensor == 0 ? ".weight" : ".bias");
      EXPECT_TRUE(Contains(message, qualified));
      EXPECT_TRUE(MentionsShape(message, c.expected_rows, c.expected_cols));
      EXPECT_TRUE(MentionsShape(message, c.rows, c.cols));
      if (c.rows == c.expected_rows && c.cols == c.expected_cols) {
        // Same dimensions, other storage order: the message must say so.
        const std::string lower = adamx_test::lower(message);
        EXPECT_TRUE(Contains(lower, "row"));
        EXPECT_TRUE(Contains(lower, "col"));
      }
      EXPECT_TRUE(t.Unchanged(before));
    }
  }
  t.ExpectStepsLikeTwin();
}

TYPED_TEST(BadInput, NonContiguousTensorThrowsNamingTensorAndChangesNothing) {
  auto& t = *this;
  using S = typename TestFixture::S;
  using Vec = typename TestFixture::Vec;
  using Mat = typename TestFixture::Mat;
  using Tensor = typename TestFixture::Tensor;
  using ConstTensor = typename TestFixture::ConstTensor;
  using Strided = Eigen::Map<Vec, 0, Eigen::InnerStride<2>>;

  // Every other element of a buffer: 2 elements for fc2.bias, 4 for fc1.bias.
  std::vector<S> buffer(16, S(0.25));
  // Three rows of a 5x4 column-major matrix: the right shape for fc1.weight,
  // but its columns are 5 apart (outer stride 5, not 3).
  Mat tall = Mat::Constant(5, 4, S(0.25));

  struct Case {
    const char* qualified;
    std::size_t group;
    int tensor;
  };
  for (const Case c : {Case{"fc2.bias", 1, 1}, Case{"fc1.bias", 0, 1}, Case{"fc1.weight", 0, 0}}) {
    for (bool on_grad : {false, true}) {
      SCOPED_TRACE(std::string(c.qualified) + (on_grad ? " (gradient)" : " (parameter)"));
      std::vector<std::vector<Tensor>> params = {{t.w1, t.b1}, {t.w2, t.b2}};
      std::vector<std::vector<ConstTensor>> grads = {{t.gw1, t.gb1}, {t.gw2, t.gb2}};
      const Tensor bad = c.tensor == 0 ? Tensor(tall.topRows(3))
                                       : Tensor(Strided(buffer.data(), c.group == 0 ? 4 : 2));
      if (on_grad) grads[c.group][static_cast<std::size_t>(c.tensor)] = bad;
      else params[c.group][static_cast<std::size_t>(c.tensor)] = bad;

      const auto before = t.Take();
      const std::string message = thrown_message<std::invalid_argument>([&] { t.opt.step(params, grads); });
      EXPECT_TRUE(Contains(message, c.qualified));
      const std::string lower = adamx_test::lower(message);
      EXPECT_TRUE(lower.find("contiguous") != std::string::npos || lower.find("stride") != std::string::npos)
          << message;
      EXPECT_TRUE(t.Unchanged(before));
      EXPECT_TRUE(std::all_of(buffer.begin(), buffer.end(), [](S x) { return x == S(0.25); }));
      EXPECT_TRUE((tall.array() == S(0.25)).all());
    }
  }
  t.ExpectStepsLikeTwin();
}

TYPED_TEST(BadInput, NullDataPointerThrowsNamingTensorAndChangesNothing) {
  auto& t = *this;
  using Tensor = typename TestFixture::Tensor;
  using ConstTensor = typename TestFixture::ConstTensor;
  using S = typename TestFixture::S;
  for (std::size_t g : {std::size_t{1}, std::size_t{0}}) {
    const Eigen::Index n = g == 0 ? 4 : 2;
    const std::string qualified = g == 0 ? "fc1.bias" : "fc2.bias";
    for (bool on_grad : {false, true}) {
      SCOPED_TRACE(qualified + (on_grad ? " (gradient)" : " (parameter)"));
      std::vector<std::vector<Tensor>> params = {{t.w1, t.b1}, {t.w2, t.b2}};
      std::vector<std::vector<ConstTensor>> grads = {{t.gw1, t.gb1}, {t.gw2, t.gb2}};
      if (on_grad) grads[g][1] = ConstTensor(static_cast<const S*>(nullptr), n);
      else params[g][1] = Tensor(static_cast<S*>(nullptr), n);
      const auto before = t.Take();
      const std::string message = thrown_message<std::invalid_argument>([&] { t.opt.step(params, grads); });
      EXPECT_TRUE(Contains(message, qualified));
      EXPECT_TRUE(Contains(adamx_test::lower(message), "null"));
      EXPECT_TRUE(t.Unchanged(before));
    }
  }
  t.ExpectStepsLikeTwin();
}

// ---- non-finite gradients ----------------------------------------------------

const double kNonFinite[] = {kNaN, kInf, -kInf};

TYPED_TEST(BadInput, PropagatePolicyLetsNonFiniteReachParamsKeepsGammaAndHAndAdvancesT) {
  for (double value : kNonFinite) {
    for (const auto& site : TestFixture::Sites()) {
      SCOPED_TRACE(std::string(site.name) + " = " + std::to_string(value));
      this->Reset();
      const std::size_t bad = site.group, other = 1 - site.group;
      ASSERT_EQ(this->opt.options(bad).nonfinite, adamx::NonFinitePolicy::propagate);
      const auto before = this->opt.state(bad);
      ASSERT_EQ(this->CountNonFinite(bad), 0);
      auto* param = this->Inject(site, value);

      const auto& reports = this->Step();

      // A NaN reaches θ under every rule, and so does an Inf under a rule
      // that divides by the second moment v (∞/∞). Lion's sign step turns an
      // Inf into a step of ±α: θ stays finite and the Inf stays in its m.
      // The rule is elementwise: only the element with the bad gradient.
      if (std::isnan(value) || adamx_test::rule_has_slot<TypeParam>("v")) {
        EXPECT_FALSE(std::isfinite(*param));
        EXPECT_EQ(this->CountNonFinite(bad), 1);
      } else {
        EXPECT_TRUE(std::isfinite(*param));
        EXPECT_EQ(this->CountNonFinite(bad), 0);
        Eigen::Index nonfinite_m = 0;
        const auto state = this->opt.state(bad);
        for (const auto& tensor : state.tensors) nonfinite_m += (!tensor.slot(0).isFinite()).count();  // m (z for Schedule-Free)
        EXPECT_EQ(nonfinite_m, 1);
      }
      EXPECT_EQ(this->CountNonFinite(other), 0);
      const auto& after = this->opt.state(bad);
      EXPECT_EQ(after.t, before.t + 1);
      // Every group scalar the rule keeps (γ and h for the Adam family).
      // γ and h ignore a non-finite s (D5); Schedule-Free AdamW's averaging
      // (its weight sum) follows every step taken, as its authors' does.
      if (adamx::group_scalar_or(before.scalars(), "weight_sum", -1.0) < 0) {
        EXPECT_TRUE(adamx::group_scalars_same_bits(after.scalars(), before.scalars()));
      } else {
        EXPECT_GT(adamx::group_scalar_or(after.scalars(), "weight_sum", 0.0),
                  adamx::group_scalar_or(before.scalars(), "weight_sum", 0.0));
      }
      EXPECT_FALSE(reports[bad].finite);
      EXPECT_TRUE(reports[bad].applied);
      EXPECT_EQ(reports[bad].step, before.t + 1);
      EXPECT_TRUE(adamx_test::same_bits(reports[bad].gamma, adamx::group_scalar_or(before.scalars(), "gamma", 1.0)));
      EXPECT_FALSE(std::isfinite(reports[bad].grad_norm_sq));
      EXPECT_TRUE(reports[other].finite);
      EXPECT_TRUE(reports[other].applied);
      // A state holding NaN still equals its own copy (bitwise comparison).
      const auto copy = this->opt.state();
      EXPECT_TRUE(copy == this->opt.state());
    }
  }
}

TYPED_TEST(BadInput, SkipPolicyLeavesGroupBitwiseUnchangedIncludingT) {
  for (double value : kNonFinite) {
    for (const auto& site : TestFixture::Sites()) {
      SCOPED_TRACE(std::string(site.name) + " = " + std::to_string(value));
      this->Reset();
      const std::size_t bad = site.group, other = 1 - site.group;
      this->opt.set_nonfinite(bad, adamx::NonFinitePolicy::skip);
      this->twin.set_nonfinite(bad, adamx::NonFinitePolicy::skip);
      this->StepTwinWithCleanGradients();
      const auto before = this->opt.state(bad);
      const auto params_before = this->GroupParams(bad);
      this->Inject(site, value);

      const auto& reports = this->Step();

      EXPECT_TRUE(this->opt.state(bad) == before);
      EXPECT_EQ(this->opt.state(bad).t, before.t);
      EXPECT_TRUE(this->GroupParams(bad) == params_before);
      EXPECT_FALSE(reports[bad].applied);
      EXPECT_FALSE(reports[bad].finite);
      EXPECT_EQ(reports[bad].step, before.t);
      EXPECT_TRUE(adamx_test::same_bits(reports[bad].gamma, adamx::group_scalar_or(before.scalars(), "gamma", 1.0)));
      // The other group stepped as if nothing had happened.
      EXPECT_TRUE(this->opt.state(other) == this->twin.state(other));
      EXPECT_TRUE(this->GroupParams(other) == this->TwinGroupParams(other));
      EXPECT_TRUE(reports[other].applied);
      EXPECT_TRUE(reports[other].finite);
    }
  }
}

TYPED_TEST(BadInput, ErrorPolicyThrowsWithGroupIndexAndNamesAndChangesNothingInAnyGroup) {
  for (double value : kNonFinite) {
    for (const auto& site : TestFixture::Sites()) {
      SCOPED_TRACE(std::string(site.name) + " = " + std::to_string(value));
      this->Reset();
      const std::size_t bad = site.group, other = 1 - site.group;
      this->opt.set_nonfinite(bad, adamx::NonFinitePolicy::error);
      // The other group is fine and would simply step under propagate.
      ASSERT_EQ(this->opt.options(other).nonfinite, adamx::NonFinitePolicy::propagate);
      this->Inject(site, value);
      const auto before = this->Take();
      const auto reports_before = this->opt.last_reports();
      std::size_t thrown_group = 99;
      const std::string message = thrown_message<adamx::NonFiniteGradientError>([&] {
        try {
          this->Step();
        } catch (const adamx::NonFiniteGradientError& e) {
          thrown_group = e.group();
          throw;
        }
      });
      EXPECT_EQ(thrown_group, bad);
      EXPECT_TRUE(Contains(message, bad == 0 ? "'fc1'" : "'fc2'"));
      EXPECT_TRUE(Contains(message, site.name));
      EXPECT_TRUE(this->Unchanged(before));
      ASSERT_EQ(this->opt.last_reports().size(), reports_before.size());
      for (std::size_t g = 0; g < reports_before.size(); ++g) {
        EXPECT_EQ(this->opt.last_reports()[g].step, reports_before[g].step);
        EXPECT_EQ(this->opt.last_reports()[g].applied, reports_before[g].applied);
      }
    }
  }
}

// The error is NonFiniteGradientError, which is a std::runtime_error and
// not a std::invalid_argument (callers tell bad data from bad calls).
TYPED_TEST(BadInput, NonFiniteGradientErrorIsARuntimeErrorNotInvalidArgument) {
  static_assert(std::is_base_of<std::runtime_error, adamx::NonFiniteGradientError>::value, "");
  static_assert(!std::is_base_of<std::invalid_argument, adamx::NonFiniteGradientError>::value, "");
  this->opt.set_nonfinite(1, adamx::NonFinitePolicy::error);
  this->gb2(1) = std::numeric_limits<typename TestFixture::S>::quiet_NaN();
  EXPECT_THROW(this->Step(), std::runtime_error);
}

TYPED_TEST(BadInput, ErrorPolicyReportsTheFirstOffendingGroupWhenSeveralAreBad) {
  this->opt.set_nonfinite(0, adamx::NonFinitePolicy::error);
  this->opt.set_nonfinite(1, adamx::NonFinitePolicy::error);
  this->gw1(0, 0) = std::numeric_limits<typename TestFixture::S>::infinity();
  this->gb2(1) = std::numeric_limits<typename TestFixture::S>::quiet_NaN();
  const auto before = this->Take();
  try {
    this->Step();
    ADD_FAILURE() << "did not throw";
  } catch (const adamx::NonFiniteGradientError& e) {
    EXPECT_EQ(e.group(), 0u);
    EXPECT_TRUE(Contains(e.what(), "fc1.weight"));
  }
  EXPECT_TRUE(this->Unchanged(before));
}

// A skip group with a bad gradient before an error group with a bad
// gradient: the error wins and the skip group is untouched too.
TYPED_TEST(BadInput, ErrorInLastGroupLeavesEarlierSkipAndPropagateGroupsUnchanged) {
  for (auto first_policy : {adamx::NonFinitePolicy::skip, adamx::NonFinitePolicy::propagate}) {
    SCOPED_TRACE(adamx::to_string(first_policy));
    this->Reset();
    this->opt.set_nonfinite(0, first_policy);
    this->opt.set_nonfinite(1, adamx::NonFinitePolicy::error);
    this->gb1(0) = std::numeric_limits<typename TestFixture::S>::quiet_NaN();
    this->gw2(3, 1) = -std::numeric_limits<typename TestFixture::S>::infinity();
    const auto before = this->Take();
    std::size_t group = 99;
    try {
      this->Step();
    } catch (const adamx::NonFiniteGradientError& e) {
      group = e.group();
    }
    EXPECT_EQ(group, 1u);
    EXPECT_TRUE(this->Unchanged(before));
  }
}

// ---- a finite gradient whose squared norm overflows --------------------------

// s is accumulated in double, so a double gradient of 1e200 (square 1e400)
// makes s = +inf even though every element is finite; and two elements of
// 1e154 (squares 1e308 each, finite) overflow only in the sum.
class SquaredNormOverflow : public ::testing::TestWithParam<int> {
 protected:
  Eigen::VectorXd w = Eigen::VectorXd::Constant(3, 0.5);
  Eigen::VectorXd g = Eigen::VectorXd::Constant(3, 0.1);
  Eigen::VectorXd v = Eigen::VectorXd::Constant(2, -0.5);  // a second, healthy group
  Eigen::VectorXd gv = Eigen::VectorXd::Constant(2, 0.2);
  adamx::AdamX<double> opt;

  void SetUp() override {
    opt.add_group({v}, {}, "healthy");
    opt.add_group({w}, {}, "huge");
    for (int k = 0; k < 3; ++k) Step();
    if (GetParam() == 0) {
      g(1) = 1e200;
    } else {
      g(0) = 1e154;
      g(2) = -1e154;
    }
    ASSERT_TRUE(g.allFinite());
  }
  const std::vector<adamx::StepReport>& Step() { return opt.step({{v}, {w}}, {{gv}, {g}}); }
};

TEST_P(SquaredNormOverflow, PropagateAppliesStepButKeepsGammaAndHAndReportsNonFinite) {
  const auto before = opt.state(1);
  const auto& reports = Step();
  EXPECT_TRUE(reports[1].applied);
  EXPECT_FALSE(reports[1].finite);
  EXPECT_EQ(opt.state(1).t, before.t + 1);
  EXPECT_TRUE(adamx_test::same_bits(opt.state(1).gamma, before.gamma));
  EXPECT_TRUE(adamx_test::same_bits(opt.state(1).h, before.h));
  EXPECT_TRUE(reports[0].finite);
}

TEST_P(SquaredNormOverflow, SkipLeavesGroupBitwiseUnchanged) {
  opt.set_nonfinite(1, adamx::NonFinitePolicy::skip);
  const Snapshot<adamx::AdamX<double>> before(opt, {w});
  const auto healthy = opt.state(0);
  const auto& reports = Step();
  EXPECT_FALSE(reports[1].applied);
  EXPECT_FALSE(reports[1].finite);
  EXPECT_TRUE(opt.state(1) == before.state[1]);
  EXPECT_TRUE(adamx_test::bytes_of<double>(w) == before.params[0]);
  EXPECT_EQ(opt.state(0).t, healthy.t + 1);
}

TEST_P(SquaredNormOverflow, ErrorThrowsAndChangesNothing) {
  opt.set_nonfinite(1, adamx::NonFinitePolicy::error);
  const Snapshot<adamx::AdamX<double>> before(opt, {v, w});
  std::size_t group = 99;
  try {
    Step();
  } catch (const adamx::NonFiniteGradientError& e) {
    group = e.group();
    EXPECT_TRUE(Contains(e.what(), "huge"));
  }
  EXPECT_EQ(group, 1u);
  EXPECT_TRUE(before.Unchanged(opt, {v, w}));
}

INSTANTIATE_TEST_SUITE_P(BadInput, SquaredNormOverflow, ::testing::Values(0, 1),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 0 ? std::string("SquareOverflows")
                                                  : std::string("SumOverflows");
                         });

// The float counterpart: the largest float squared (≈1.2e77) is far from
// overflowing the double accumulator, so it is a finite gradient.
TEST(BadInputFloat, LargestFiniteFloatGradientHasFiniteNormAndIsApplied) {
  Eigen::VectorXf w = Eigen::VectorXf::Constant(2, 0.5f);
  Eigen::VectorXf g(2);
  g << std::numeric_limits<float>::max(), -std::numeric_limits<float>::max();
  adamx::AdamX<float> opt;
  adamx::AdamXOptions o;
  o.nonfinite = adamx::NonFinitePolicy::error;
  opt.add_group({w}, o);
  const auto& reports = opt.step({{w}}, {{g}});
  EXPECT_TRUE(reports[0].finite);
  EXPECT_TRUE(reports[0].applied);
  EXPECT_TRUE(std::isfinite(reports[0].grad_norm_sq));
  EXPECT_EQ(opt.state(0).t, 1);
}

// The skip and error policies compute s in their checking pass only when some
// gradient exceeds the bound below which s is certainly finite (2^400 for
// double, kernel.hpp). Above it, a finite s must still let the step through,
// exactly as propagate applies it: 1e130 > 2^400 ≈ 2.6e120, yet its square
// 1e260 is finite; 2^400 itself is the largest gradient the fast check passes
// and -2^401 the smallest it does not.
TEST(BadInputDouble, GradientsAboveTheSafeBoundWithFiniteNormAreAppliedAsUnderPropagate) {
  for (const double big : {1e130, 0x1p400, -0x1p401}) {
    for (const auto policy : {adamx::NonFinitePolicy::skip, adamx::NonFinitePolicy::error}) {
      Eigen::VectorXd w = Eigen::VectorXd::LinSpaced(5, -0.5, 0.5);
      Eigen::VectorXd w_twin = w;
      Eigen::VectorXd g = Eigen::VectorXd::Constant(5, 0.25);
      g(3) = big;
      adamx::AdamX<double> opt, twin;
      adamx::AdamXOptions o;
      o.nonfinite = policy;
      opt.add_group({w}, o);
      twin.add_group({w_twin});  // propagate
      for (int step = 0; step < 3; ++step) {
        const adamx::StepReport report = opt.step({{w}}, {{g}})[0];
        const adamx::StepReport expected = twin.step({{w_twin}}, {{g}})[0];
        SCOPED_TRACE(::testing::Message() << "gradient " << big << ", policy "
                                          << adamx::to_string(policy) << ", step " << step);
        EXPECT_TRUE(report.applied);
        EXPECT_TRUE(report.finite);
        EXPECT_TRUE(adamx_test::same_bits(report.grad_norm_sq, expected.grad_norm_sq));
        auto state = opt.state(0);
        state.options.nonfinite = adamx::NonFinitePolicy::propagate;  // the one intended difference
        EXPECT_TRUE(state == twin.state(0));
        EXPECT_TRUE(adamx_test::bytes_of<double>(w) == adamx_test::bytes_of<double>(w_twin));
      }
    }
  }
}

// ---- add_group: names, counts, shapes ---------------------------------------------

TYPED_TEST(BadInput, AddGroupRejectsMalformedGroupsAndChangesNothing) {
  auto& t = *this;
  using Mat = typename TestFixture::Mat;
  using Vec = typename TestFixture::Vec;
  using S = typename TestFixture::S;
  using ConstTensor = typename TestFixture::ConstTensor;
  using Options = typename TestFixture::Options;
  Mat w3 = Mat::Zero(2, 2);
  Vec b3 = Vec::Zero(2);
  S dummy[6] = {};

  struct Case {
    const char* what;
    std::function<void()> call;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {"duplicate group name fc1", [&] { t.opt.add_group({w3, b3}, Options{}, "fc1"); }, {"fc1"}},
      {"duplicate group name fc2", [&] { t.opt.add_group({w3}, Options{}, "fc2", {"w"}); }, {"fc2"}},
      {"duplicate tensor names", [&] { t.opt.add_group({w3, b3}, Options{}, "fc3", {"w", "w"}); }, {"fc3", "w"}},
      {"empty tensor name", [&] { t.opt.add_group({w3, b3}, Options{}, "fc3", {"w", ""}); }, {"fc3"}},
      {"fewer names than tensors", [&] { t.opt.add_group({w3, b3}, Options{}, "fc3", {"w"}); }, {"fc3"}},
      {"more names than tensors", [&] { t.opt.add_group({w3, b3}, Options{}, "fc3", {"w", "b", "c"}); }, {"fc3"}},
      {"empty tensor list",
       [&] { t.opt.add_group(std::vector<ConstTensor>{}, Options{}, "fc3"); }, {"fc3"}},
      {"negative dimension",
       [&] { t.opt.add_group({ConstTensor(dummy, -2, -3)}, Options{}, "fc3", {"w"}); }, {"fc3.w"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const auto before = t.Take();
    const std::string message = thrown_message<std::invalid_argument>(c.call);
    for (const auto& part : c.mentions) EXPECT_TRUE(Contains(message, part));
    EXPECT_TRUE(t.Unchanged(before));
    EXPECT_EQ(t.opt.num_groups(), 2u);
  }
  // The failed calls left no trace: the next group gets index 2 and the
  // default name "group2".
  EXPECT_EQ(t.opt.add_group({w3}), 2u);
  EXPECT_EQ(t.opt.state(2).name, "group2");
}

// ---- out-of-range group index ------------------------------------------------

TYPED_TEST(BadInput, OutOfRangeGroupIndexThrowsOutOfRangeAndChangesNothing) {
  auto& o = this->opt;
  const auto options = o.options(0);
  const auto before = this->Take();
  for (std::size_t g : {std::size_t{2}, std::size_t{3}, std::numeric_limits<std::size_t>::max()}) {
    SCOPED_TRACE(g);
    EXPECT_THROW((void)o.options(g), std::out_of_range);
    EXPECT_THROW((void)o.state(g), std::out_of_range);
    EXPECT_THROW(o.set_options(g, options), std::out_of_range);
    EXPECT_THROW(o.set_lr(g, 1e-3), std::out_of_range);
    EXPECT_THROW(o.set_betas(g, 0.9, 0.999), std::out_of_range);
    EXPECT_THROW(o.set_weight_decay(g, 0.0), std::out_of_range);
    // The Adam family's setters, where the optimizer has them (not Lion).
    int adam_family_setters = 0;
    adam_family_setters += adamx_test::call_if_declared(o, [&](auto& x) -> decltype(x.set_beta3(g, 1.0)) {
      EXPECT_THROW(x.set_beta3(g, 1.0), std::out_of_range);
    });
    adam_family_setters += adamx_test::call_if_declared(o, [&](auto& x) -> decltype(x.set_beta_norm(g, 0.99)) {
      EXPECT_THROW(x.set_beta_norm(g, 0.99), std::out_of_range);
    });
    adam_family_setters += adamx_test::call_if_declared(o, [&](auto& x) -> decltype(x.set_eps(g, 1e-8)) {
      EXPECT_THROW(x.set_eps(g, 1e-8), std::out_of_range);
    });
    adam_family_setters += adamx_test::call_if_declared(
        o, [&](auto& x) -> decltype(x.set_decay_mode(g, adamx::WeightDecayMode::l2)) {
          EXPECT_THROW(x.set_decay_mode(g, adamx::WeightDecayMode::l2), std::out_of_range);
        });
    adam_family_setters += adamx_test::call_if_declared(o, [&](auto& x) -> decltype(x.set_amsgrad(g, true)) {
      EXPECT_THROW(x.set_amsgrad(g, true), std::out_of_range);
    });
    int expected_setters = 0;
    for (const char* field : {"beta3", "beta_norm", "eps", "decay_mode", "amsgrad"})
      expected_setters += must_have_option<TypeParam>(field) ? 1 : 0;
    EXPECT_EQ(adam_family_setters, expected_setters);
    EXPECT_THROW(o.set_maximize(g, true), std::out_of_range);
    EXPECT_THROW(o.set_nonfinite(g, adamx::NonFinitePolicy::skip), std::out_of_range);
    // An out-of-range index wins over an invalid value.
    EXPECT_THROW(o.set_lr(g, -1.0), std::out_of_range);
  }
  EXPECT_THROW((void)o.group_index("fc3"), std::out_of_range);
  EXPECT_THROW((void)o.group_index(""), std::out_of_range);
  EXPECT_THROW((void)o.group_index("group0"), std::out_of_range);  // fc1 has a name of its own
  EXPECT_TRUE(this->Unchanged(before));
  this->ExpectStepsLikeTwin();
}

// With no groups there is nothing to change, but an invalid lr is still an
// error, not a silent no-op.
TEST(BadInputEmpty, AllGroupsSetLrOnAnOptimizerWithoutGroupsStillValidates) {
  adamx::AdamX<float> opt;
  for (const double bad : {-1.0, std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity()}) {
    EXPECT_THROW(opt.set_lr(bad), std::invalid_argument) << bad;
  }
  EXPECT_NO_THROW(opt.set_lr(0.5));
  EXPECT_EQ(opt.num_groups(), 0u);
}

}  // namespace
