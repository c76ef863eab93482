// The memory rule of a step (docs/design.md, "Aliasing"): parameters that
// share memory, within a group or across groups, and gradients that share
// memory with another tensor's parameter are refused before anything
// changes, naming both tensors; a gradient that is exactly its own
// parameter's memory, and gradients that share memory with each other, are
// accepted and step exactly like gradients in memory of their own.
#include "test_util.hpp"

#include <adamx/adamx.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using adamx_test::BitwiseEqual;
using adamx_test::Contains;
using adamx_test::Snapshot;
using adamx_test::thrown_message;

template <class Opt>
class Aliasing : public ::testing::Test {
 protected:
  using S = typename Opt::scalar_type;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  using Tensor = adamx::TensorRef<S>;
  using ConstTensor = adamx::ConstTensorRef<S>;
  using Groups = std::vector<std::vector<Tensor>>;
  using GradGroups = std::vector<std::vector<ConstTensor>>;

  // Two groups, "g1" {a: 6, b: 5} and "g2" {c: 6}, every option that reads θ
  // in the update on in g2 (L2 decay, AMSGrad), a few steps taken so that
  // the moments are not trivial. The parameters live in `memory`, 6+5+6
  // elements one after the other; the gradients in `grad_memory`.
  std::vector<S> memory = std::vector<S>(17);
  std::vector<S> grad_memory = std::vector<S>(17);
  Opt opt;

  Tensor a() { return Tensor(memory.data(), 6); }
  Tensor b() { return Tensor(memory.data() + 6, 5); }
  Tensor c() { return Tensor(memory.data() + 11, 6); }
  ConstTensor ga() const { return ConstTensor(grad_memory.data(), 6); }
  ConstTensor gb() const { return ConstTensor(grad_memory.data() + 6, 5); }
  ConstTensor gc() const { return ConstTensor(grad_memory.data() + 11, 6); }
  // The three tensors' views into other memory of the same layout.
  static Groups ParamsIn(std::vector<S>& m) {
    return {{Tensor(m.data(), 6), Tensor(m.data() + 6, 5)}, {Tensor(m.data() + 11, 6)}};
  }
  static GradGroups GradsIn(const std::vector<S>& m) {
    return {{ConstTensor(m.data(), 6), ConstTensor(m.data() + 6, 5)}, {ConstTensor(m.data() + 11, 6)}};
  }

  void SetUp() override {
    adamx_test::fill(memory.data(), 17, 1);
    typename Opt::Options o2;
    o2.weight_decay = 1e-2;
    adamx_test::set_option(o2, "amsgrad", 1);  // every slot where the optimizer has AMSGrad
    opt.add_group(std::vector<ConstTensor>{a(), b()}, typename Opt::Options{}, "g1", {"a", "b"});
    opt.add_group(std::vector<ConstTensor>{c()}, o2, "g2", {"c"});
    for (std::uint64_t k = 0; k < 3; ++k) {
      adamx_test::fill(grad_memory.data(), 17, 10 + k);
      opt.step(ParamsIn(memory), GradsIn(grad_memory));
    }
    adamx_test::fill(grad_memory.data(), 17, 20);
  }

  Snapshot<Opt> Take() { return Snapshot<Opt>(opt, {ConstTensor(memory.data(), 17)}); }

  // `params`/`grads` are refused with std::invalid_argument naming `names`
  // and nothing changes; then the optimizer still steps like a copy.
  std::string ExpectRefused(const Groups& params, const GradGroups& grads,
                            const std::vector<std::string>& names) {
    const Opt twin = opt;
    const std::vector<S> grads_before = grad_memory;
    const auto before = Take();
    const std::string message = thrown_message<std::invalid_argument>([&] { opt.step(params, grads); });
    for (const std::string& name : names) EXPECT_TRUE(Contains(message, "'" + name + "'"));
    EXPECT_TRUE(Contains(message, "nothing was changed"));
    EXPECT_TRUE(before.Unchanged(opt, {ConstTensor(memory.data(), 17)}));
    EXPECT_TRUE(grads_before == grad_memory);
    // The refusal did not spoil what the optimizer remembers of good memory.
    Opt copy = twin;
    std::vector<S> copy_memory = memory;
    opt.step(ParamsIn(memory), GradsIn(grad_memory));
    copy.step(ParamsIn(copy_memory), GradsIn(grad_memory));
    EXPECT_TRUE(opt.state() == copy.state());
    EXPECT_TRUE(memory == copy_memory);
    return message;
  }
};

TYPED_TEST_SUITE(Aliasing, adamx_test::AllOptimizers, adamx_test::OptimizerName);

TYPED_TEST(Aliasing, TheSameBufferTwiceIsRefusedNamingBoth) {
  auto& t = *this;
  using Tensor = typename TestFixture::Tensor;
  // c's memory given for a as well (both have 6 elements): across groups.
  t.ExpectRefused({{t.c(), t.b()}, {t.c()}}, {{t.ga(), t.gb()}, {t.gc()}}, {"g1.a", "g2.c"});
  // b's memory given for b and, one element longer, for a: within a group.
  const Tensor a_over_b(t.memory.data() + 6, 6);
  t.ExpectRefused({{a_over_b, t.b()}, {t.c()}}, {{t.ga(), t.gb()}, {t.gc()}}, {"g1.a", "g1.b"});
}

TYPED_TEST(Aliasing, ParametersOverlappingByOneElementAcrossGroupsAreRefused) {
  auto& t = *this;
  using Tensor = typename TestFixture::Tensor;
  // c shifted back by one element: its first element is b's last.
  const Tensor c_into_b(t.memory.data() + 10, 6);
  t.ExpectRefused({{t.a(), t.b()}, {c_into_b}}, {{t.ga(), t.gb()}, {t.gc()}}, {"g1.b", "g2.c"});
}

TYPED_TEST(Aliasing, OneParameterInsideAnotherIsRefused) {
  auto& t = *this;
  using Tensor = typename TestFixture::Tensor;
  // b inside a's memory (a: elements 0..5, b: 1..5).
  const Tensor b_inside_a(t.memory.data() + 1, 5);
  t.ExpectRefused({{t.a(), b_inside_a}, {t.c()}}, {{t.ga(), t.gb()}, {t.gc()}}, {"g1.a", "g1.b"});
}

TYPED_TEST(Aliasing, AGradientInAnotherTensorsParameterIsRefused) {
  auto& t = *this;
  using ConstTensor = typename TestFixture::ConstTensor;
  // c's gradient is a's parameter (same size): a is written in the step, c's
  // gradient read, in an order the step does not promise.
  const ConstTensor gc_is_a(t.memory.data(), 6);
  t.ExpectRefused({{t.a(), t.b()}, {t.c()}}, {{t.ga(), t.gb()}, {gc_is_a}}, {"g2.c", "g1.a"});
  // b's gradient inside a's parameter.
  const ConstTensor gb_inside_a(t.memory.data(), 5);
  t.ExpectRefused({{t.a(), t.b()}, {t.c()}}, {{t.ga(), gb_inside_a}, {t.gc()}}, {"g1.b", "g1.a"});
}

TYPED_TEST(Aliasing, AGradientPartlyOverItsOwnParameterIsRefused) {
  auto& t = *this;
  using ConstTensor = typename TestFixture::ConstTensor;
  // a's gradient one element after a's parameter: g[i] = θ[i+1], which this
  // step writes after or before reading g[i] depending on the pass.
  const ConstTensor ga_shifted(t.memory.data() + 1, 6);
  const std::string message =
      t.ExpectRefused({{t.a(), t.b()}, {t.c()}}, {{ga_shifted, t.gb()}, {t.gc()}}, {"g1.a"});
  EXPECT_TRUE(Contains(message, "own parameter"));
}

// A gradient that is its own parameter's memory steps exactly like a copy of
// that gradient (bitwise: the same arithmetic on the same values), in every
// flavour, with L2 decay and AMSGrad (g2), and under every non-finite policy
// (whose checking pass also reads θ and g).
TYPED_TEST(Aliasing, AGradientThatIsItsOwnParameterStepsLikeACopy) {
  auto& t = *this;
  using Opt = TypeParam;
  using S = typename TestFixture::S;
  for (const auto policy : {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::skip,
                            adamx::NonFinitePolicy::error}) {
    SCOPED_TRACE(adamx::to_string(policy));
    for (std::size_t g = 0; g < t.opt.num_groups(); ++g) {
      auto o = t.opt.options(g);
      o.nonfinite = policy;
      t.opt.set_options(g, o);
    }
    Opt copy = t.opt;
    std::vector<S> copy_memory = t.memory;
    for (int k = 0; k < 3; ++k) {
      // The reference: each gradient a separate copy of the parameter.
      const std::vector<S> gradient = copy_memory;
      copy.step(TestFixture::ParamsIn(copy_memory), TestFixture::GradsIn(gradient));
      // Aliased: g is θ, read element by element as θ is written.
      t.opt.step(TestFixture::ParamsIn(t.memory), TestFixture::GradsIn(t.memory));
      ASSERT_TRUE(t.opt.state() == copy.state()) << "step " << k;
      ASSERT_TRUE(t.memory == copy_memory) << "step " << k;
    }
  }
}

// Gradients only read: several tensors may share one gradient buffer (e.g. a
// constant gradient), and step exactly as with separate copies.
TYPED_TEST(Aliasing, GradientsSharingMemoryStepLikeCopies) {
  auto& t = *this;
  using Opt = TypeParam;
  using S = typename TestFixture::S;
  using ConstTensor = typename TestFixture::ConstTensor;
  Opt copy = t.opt;
  std::vector<S> copy_memory = t.memory;
  // The reference: three separate copies of the same values.
  const std::vector<S> for_a(t.grad_memory.begin(), t.grad_memory.begin() + 6);
  const std::vector<S> for_b(t.grad_memory.begin(), t.grad_memory.begin() + 5);
  const std::vector<S> for_c(t.grad_memory.begin(), t.grad_memory.begin() + 6);
  // a's and c's gradients are the same 6 elements, b's the first 5 of them.
  const ConstTensor shared(t.grad_memory.data(), 6);
  const ConstTensor shared5(t.grad_memory.data(), 5);
  t.opt.step(typename TestFixture::Groups{{t.a(), t.b()}, {t.c()}},
             typename TestFixture::GradGroups{{shared, shared5}, {shared}});
  copy.step(TestFixture::ParamsIn(copy_memory),
            typename TestFixture::GradGroups{{ConstTensor(for_a.data(), 6), ConstTensor(for_b.data(), 5)},
                                             {ConstTensor(for_c.data(), 6)}});
  EXPECT_TRUE(t.opt.state() == copy.state());
  EXPECT_TRUE(t.memory == copy_memory);
}

// Parameters that touch without overlapping (one's end is the next one's
// start) are separate memory; checked after a refusal of the same pointers
// shifted by one, so the check's memory of the last good layout is not what
// accepts them.
TYPED_TEST(Aliasing, AdjacentParametersAreAccepted) {
  auto& t = *this;
  using Tensor = typename TestFixture::Tensor;
  const Tensor c_into_b(t.memory.data() + 10, 6);
  EXPECT_THROW(t.opt.step(typename TestFixture::Groups{{t.a(), t.b()}, {c_into_b}},
                          typename TestFixture::GradGroups{{t.ga(), t.gb()}, {t.gc()}}),
               std::invalid_argument);
  EXPECT_NO_THROW(t.opt.step(typename TestFixture::Groups{{t.a(), t.b()}, {t.c()}},
                             typename TestFixture::GradGroups{{t.ga(), t.gb()}, {t.gc()}}));
}

// The check does not depend on the remembered layout: good memory, then the
// same memory with one tensor moved onto another, is refused.
TEST(AliasingInitializerList, TheSameVectorTwiceIsRefusedAfterGoodSteps) {
  Eigen::VectorXf w = Eigen::VectorXf::Ones(4), v = Eigen::VectorXf::Ones(4);
  const Eigen::VectorXf g = Eigen::VectorXf::Constant(4, 0.5f);
  adamx::AdamX<float> opt;
  opt.add_group({w, v}, {}, "layer", {"w", "v"});
  opt.step({{w, v}}, {{g, g}});
  opt.step({{w, v}}, {{g, g}});
  const Eigen::VectorXf w_before = w;
  const auto state_before = opt.state();
  const std::string message = thrown_message<std::invalid_argument>([&] { opt.step({{w, w}}, {{g, g}}); });
  EXPECT_TRUE(Contains(message, "'layer.w'"));
  EXPECT_TRUE(Contains(message, "'layer.v'"));
  EXPECT_TRUE(BitwiseEqual(w, w_before));
  EXPECT_TRUE(opt.state() == state_before);
}

// Tensors without elements have no memory to share.
TEST(AliasingEmpty, EmptyTensorsAtTheSameAddressAreAccepted) {
  Eigen::VectorXf w = Eigen::VectorXf::Ones(4);
  const Eigen::VectorXf g = Eigen::VectorXf::Constant(4, 0.5f);
  float* at = w.data();
  adamx::Adam<float> opt;
  opt.add_group({adamx::ConstTensorRef<float>(at, 0), w, adamx::ConstTensorRef<float>(at, 0)});
  EXPECT_NO_THROW(opt.step({{adamx::TensorRef<float>(at, 0), w, adamx::TensorRef<float>(at, 0)}},
                           {{adamx::ConstTensorRef<float>(at, 0), g, adamx::ConstTensorRef<float>(at, 0)}}));
}

}  // namespace
