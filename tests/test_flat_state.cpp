// The flat state storage (docs/design.md, "State layout and allocation"):
// one buffer per state slot per group, tensor after tensor, each segment on
// a 64-byte boundary; state() a copy of it that restore() takes back bit for
// bit; set_options and restore all-or-nothing; and a group of many tensors
// stepping each element exactly as the same tensors in groups of their own
// (for the optimizers whose γ is fixed at 1, where a group's s changes
// nothing element-wise).
#include "test_util.hpp"

#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using adamx_test::BitwiseEqual;
using adamx_test::fill;
using adamx_test::same_bits;

template <class Opt>
class FlatState : public ::testing::Test {
 protected:
  using S = typename Opt::scalar_type;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;

  // Sizes that are not multiples of a cache line, an empty tensor, and
  // tensors crossing the s-block boundary (4096) and the short-tensor
  // prefetch rule's length (2048).
  static std::vector<Eigen::Index> sizes() { return {1, 3, 17, 0, 1000, 2049, 4097, 8200, 16}; }

  FlatState() {
    for (const Eigen::Index n : sizes()) {
      params.emplace_back(n);
      grads.emplace_back(n);
    }
    for (std::size_t j = 0; j < params.size(); ++j) fill(params[j], 10 + j);
  }

  std::vector<adamx::TensorRef<S>> param_views() {
    std::vector<adamx::TensorRef<S>> out;
    for (Vec& p : params) out.emplace_back(p);
    return out;
  }
  std::vector<adamx::ConstTensorRef<S>> grad_views(int step) {
    std::vector<adamx::ConstTensorRef<S>> out;
    for (std::size_t j = 0; j < grads.size(); ++j) {
      fill(grads[j], 1000 * static_cast<std::uint64_t>(step) + j);
      out.emplace_back(grads[j]);
    }
    return out;
  }
  // k steps of group 0 (the only group) of `opt`.
  void steps(Opt& opt, int first, int k) {
    for (int s = first; s < first + k; ++s) {
      std::vector<std::vector<adamx::TensorRef<S>>> p{param_views()};
      std::vector<std::vector<adamx::ConstTensorRef<S>>> g{grad_views(s)};
      opt.step(p, g);
    }
  }
  // AMSGrad on where the optimizer has it, so that every slot its rule
  // declares is kept (Lion has no AMSGrad and no v_max).
  static typename Opt::Options amsgrad_options() {
    typename Opt::Options o;
    EXPECT_EQ(adamx_test::set_option(o, "amsgrad", 1), adamx_test::rule_has_slot<Opt>("v_max"));
    return o;
  }

  std::vector<Vec> params;
  std::vector<Vec> grads;
};

TYPED_TEST_SUITE(FlatState, adamx_test::AllOptimizers, adamx_test::OptimizerName);

// Every slot's segments lie in one buffer, in tensor order, each starting on
// a 64-byte boundary right after the previous one rounded up to it.
TYPED_TEST(FlatState, SegmentsAreAlignedAndFollowEachOtherInOneBuffer) {
  using S = typename TypeParam::state_scalar_type;
  TypeParam opt;
  opt.add_group(this->param_views(), this->amsgrad_options());
  const std::size_t count = this->params.size();
  const auto address = [](const S* p) { return reinterpret_cast<std::uintptr_t>(p); };
  const auto segments = [&](auto field) {
    for (std::size_t j = 0; j < count; ++j) {
      SCOPED_TRACE("tensor " + std::to_string(j));
      const auto view = opt.state_view(0, j);
      const auto& array = field(view);
      ASSERT_EQ(array.size(), view.shape.size());
      EXPECT_EQ(address(array.data()) % 64, 0u);
      if (j + 1 < count) {
        const std::uintptr_t end = address(array.data()) + static_cast<std::uintptr_t>(array.size()) * sizeof(S);
        EXPECT_EQ(address(field(opt.state_view(0, j + 1)).data()), (end + 63) / 64 * 64);
      }
    }
  };
  // Every slot the rule has (m, v, v_max for the Adam family; step_avg too
  // for AdaMod; m alone for Lion): the view has a member for these alone.
  using Rule = typename adamx_test::FlavourOf_t<TypeParam>::Rule;
  static_assert(TypeParam::tensor_state_view_type::kSlots == Rule::kSlots, "the rule's slots, no more");
  for (int k = 0; k < Rule::kSlots; ++k) {
    SCOPED_TRACE(Rule::slot_names[k]);
    segments([k](const auto& view) -> const auto& { return view.slot(k); });
  }
  EXPECT_EQ(adamx_test::slot_size(opt.state_view(0, 0), "step_avg"),
            adamx_test::kKeepsStepAverage<TypeParam> ? opt.state_view(0, 0).shape.size() : 0);
  // The slots are separate buffers: each one's first element is not the
  // previous one's.
  for (int k = 1; k < Rule::kSlots; ++k)
    EXPECT_NE(opt.state_view(0, 0).slot(k).data(), opt.state_view(0, 0).slot(k - 1).data());
  EXPECT_THROW(opt.state_view(0, count), std::out_of_range);
  EXPECT_THROW(opt.state_view(1, 0), std::out_of_range);
}

// The cheap accessors and the view read what state() copies.
TYPED_TEST(FlatState, AccessorsAndViewsAgreeWithTheCopy) {
  TypeParam opt;
  opt.add_group(this->param_views(), this->amsgrad_options(), "layer");
  this->steps(opt, 0, 3);
  const auto state = opt.state(0);
  EXPECT_EQ(opt.step_count(0), state.t);
  // γ is 1 for a rule without one (Lion); h exists only where the rule has it.
  EXPECT_TRUE(same_bits(opt.gamma(0), adamx::group_scalar_or(state.scalars(), "gamma", 1.0)));
  if constexpr (adamx_test::kHasH<TypeParam>) {
    EXPECT_TRUE(same_bits(opt.h(0), state.h));
  }
  EXPECT_EQ(opt.layout(0), state.layout());
  const auto header = opt.state_without_arrays(0);
  EXPECT_EQ(header.layout(), state.layout());
  EXPECT_EQ(header.t, state.t);
  for (std::size_t j = 0; j < state.tensors.size(); ++j) {
    SCOPED_TRACE("tensor " + std::to_string(j));
    const auto view = opt.state_view(0, j);
    for (int k = 0; k < view.kSlots; ++k) {
      SCOPED_TRACE(view.slot_names[k]);
      EXPECT_TRUE(BitwiseEqual(view.slot(k), state.tensors[j].slot(k)));
    }
    EXPECT_TRUE(opt.tensor_state(0, j) == state.tensors[j]);
    EXPECT_EQ(header.tensors[j].shape(), state.tensors[j].shape());
    EXPECT_EQ(header.tensors[j].slot(0).size(), 0);
  }
}

// state() → restore() into a fresh optimizer gives the same state, and both
// then step to the same bits.
TYPED_TEST(FlatState, StateRoundTripsThroughRestoreBitwise) {
  TypeParam opt;
  opt.add_group(this->param_views(), this->amsgrad_options());
  this->steps(opt, 0, 4);
  const auto saved = opt.state();
  const std::vector<typename TestFixture::Vec> params_then = this->params;

  TypeParam copy;
  copy.add_group(this->param_views(), this->amsgrad_options());
  copy.restore(saved);
  EXPECT_TRUE(copy.state() == saved);

  this->steps(opt, 4, 2);
  const auto params_opt = this->params;
  this->params = params_then;
  this->steps(copy, 4, 2);
  EXPECT_TRUE(copy.state() == opt.state());
  for (std::size_t j = 0; j < this->params.size(); ++j) EXPECT_TRUE(BitwiseEqual(this->params[j], params_opt[j]));
}

// amsgrad on allocates v_max, zero; off drops it; m and v stay bitwise. A
// rule without AMSGrad (Lion) has neither the option nor the slot.
TYPED_TEST(FlatState, AmsgradOnOffKeepsMomentsAndZeroesOrDropsVMax) {
  TypeParam opt;
  opt.add_group(this->param_views());
  this->steps(opt, 0, 3);
  if (!adamx_test::declares_option<typename TypeParam::Options>("amsgrad")) {
    EXPECT_FALSE(adamx_test::rule_has_slot<TypeParam>("v_max"));
    for (std::size_t j = 0; j < this->params.size(); ++j)
      EXPECT_EQ(adamx_test::slot_size(opt.state_view(0, j), "v_max"), 0);
    return;
  }
  // Through the options, so that this compiles for every optimizer.
  const auto set_amsgrad = [&](bool on) {
    auto o = opt.options(0);
    adamx_test::set_option(o, "amsgrad", on ? 1 : 0);
    opt.set_options(0, o);
  };
  // After the switch: every other slot (m, v, AdaMod's step_avg) bitwise as
  // in `previous`, v_max `v_max_size(n)` elements of +0 for a tensor of n.
  const auto kept = [&](const auto& previous, auto v_max_size) {
    for (std::size_t j = 0; j < previous.tensors.size(); ++j) {
      SCOPED_TRACE("tensor " + std::to_string(j));
      const auto view = opt.state_view(0, j);
      const auto* v_max = adamx_test::slot_named(view, "v_max");
      for (int k = 0; k < view.kSlots; ++k) {
        if (&view.slot(k) != v_max) {
          EXPECT_TRUE(BitwiseEqual(view.slot(k), previous.tensors[j].slot(k)));
        }
      }
      ASSERT_EQ(v_max->size(), v_max_size(view.shape.size()));
      for (Eigen::Index i = 0; i < v_max->size(); ++i) EXPECT_TRUE(same_bits(double((*v_max)[i]), 0.0));
    }
  };
  const auto before = opt.state(0);
  set_amsgrad(true);
  kept(before, [](Eigen::Index n) { return n; });
  this->steps(opt, 3, 1);
  const auto stepped = opt.state(0);
  set_amsgrad(false);
  kept(stepped, [](Eigen::Index) { return Eigen::Index{0}; });
  EXPECT_EQ(opt.state(0).t, stepped.t);
}

// A restore refused for one bad array size changes nothing, not even where
// the state lives.
TYPED_TEST(FlatState, RestoreWithBadSizesChangesNothing) {
  TypeParam opt;
  opt.add_group(this->param_views(), this->amsgrad_options(), "first");
  opt.add_group(this->param_views(), {}, "second");
  using S = typename TestFixture::S;
  // The second group steps copies: one tensor in two groups breaks the memory rule.
  std::vector<typename TestFixture::Vec> other = this->params;
  std::vector<adamx::TensorRef<S>> other_views;
  for (auto& x : other) other_views.emplace_back(x);
  std::vector<std::vector<adamx::TensorRef<S>>> p{this->param_views(), other_views};
  std::vector<std::vector<adamx::ConstTensorRef<S>>> g{this->grad_views(0), this->grad_views(0)};
  opt.step(p, g);
  const auto saved = opt.state();
  const auto* m_before = opt.state_view(0, 0).slot(0).data();

  const auto refused = [&](auto spoil) {
    auto states = saved;
    states[0].t = 99;  // a valid change that must not land either
    spoil(states);
    EXPECT_THROW(opt.restore(states), std::invalid_argument);
    EXPECT_TRUE(opt.state() == saved);
    EXPECT_EQ(opt.state_view(0, 0).slot(0).data(), m_before);
  };
  refused([](auto& states) { states[1].tensors[4].slot(0).resize(999); });
  // The other slots where the rule has them (a rule without one, such as
  // Lion without v, has no member to fill: TensorState holds its rule's
  // slots alone).
  const auto refused_slot = [&](std::size_t g, std::size_t j, const char* slot, Eigen::Index size) {
    if (!adamx_test::rule_has_slot<TypeParam>(slot)) return;
    SCOPED_TRACE(slot);
    refused([=](auto& states) { adamx_test::slot_named(states[g].tensors[j], slot)->setZero(size); });
  };
  refused_slot(1, 2, "v", 0);         // must be the tensor's size
  refused_slot(0, 8, "v_max", 15);    // amsgrad: must be 16
  refused_slot(1, 0, "v_max", 1);     // no amsgrad: must be empty
  refused_slot(1, 1, "step_avg", 2);  // AdaMod: must be the tensor's size
}

// For every optimizer whose γ is fixed at 1 the update of an element does
// not depend on its group's other tensors, so a group of many tensors must
// step every element exactly as one group per tensor does: the flat layout
// and the per-tensor s-blocks change nothing element-wise.
template <class Opt>
class FlatStateFixedGamma : public FlatState<Opt> {};
using FixedGammaOptimizers =
    ::testing::Types<adamx::Adam<float>, adamx::Adam<double>, adamx::AdamW<float>, adamx::AdamW<double>,
                     adamx::RAdam<float>, adamx::RAdam<double>, adamx::AdaBound<float>, adamx::AdaBound<double>,
                     adamx::AdaMod<float>, adamx::AdaMod<double>, adamx::Lion<float>, adamx::Lion<double>,
                     adamx::Adan<float>, adamx::Adan<double>, adamx::ScheduleFreeAdamW<float>,
                     adamx::ScheduleFreeAdamW<double>>;
TYPED_TEST_SUITE(FlatStateFixedGamma, FixedGammaOptimizers, adamx_test::OptimizerName);

TYPED_TEST(FlatStateFixedGamma, ManyTensorsInOneGroupStepAsOneGroupPerTensor) {
  static_assert(adamx_test::kGammaFixed<TypeParam>, "the comparison needs γ ≡ 1");
  using S = typename TestFixture::S;
  using Vec = typename TestFixture::Vec;
  for (const bool amsgrad : {false, true}) {
    SCOPED_TRACE(amsgrad ? "amsgrad" : "no amsgrad");
    typename TypeParam::Options o;
    if (!adamx_test::set_option(o, "amsgrad", amsgrad)) {  // no AMSGrad (Lion): the run without covers it
      EXPECT_FALSE(adamx_test::rule_has_slot<TypeParam>("v_max"));
      if (amsgrad) continue;
    }
    o.weight_decay = 0.01;
    TypeParam together;
    together.add_group(this->param_views(), o);
    TypeParam apart;
    std::vector<Vec> separate = this->params;
    for (Vec& p : separate) apart.add_group({adamx::ConstTensorRef<S>(p)}, o);
    for (int s = 0; s < 5; ++s) {
      std::vector<std::vector<adamx::TensorRef<S>>> p1{this->param_views()};
      std::vector<std::vector<adamx::ConstTensorRef<S>>> g1{this->grad_views(s)};
      together.step(p1, g1);
      std::vector<std::vector<adamx::TensorRef<S>>> p2;
      std::vector<std::vector<adamx::ConstTensorRef<S>>> g2;
      for (std::size_t j = 0; j < separate.size(); ++j) {
        p2.push_back({adamx::TensorRef<S>(separate[j])});
        g2.push_back({adamx::ConstTensorRef<S>(this->grads[j])});
      }
      apart.step(p2, g2);
    }
    for (std::size_t j = 0; j < separate.size(); ++j) {
      SCOPED_TRACE("tensor " + std::to_string(j));
      EXPECT_TRUE(BitwiseEqual(this->params[j], separate[j]));
      const auto a = together.state_view(0, j);
      const auto b = apart.state_view(j, 0);
      for (int k = 0; k < a.kSlots; ++k) {
        SCOPED_TRACE(a.slot_names[k]);
        EXPECT_TRUE(BitwiseEqual(a.slot(k), b.slot(k)));
      }
    }
  }
}

}  // namespace
