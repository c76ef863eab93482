// step() performs no heap allocation after a group's first step: every buffer
// it needs is allocated by add_group (docs/design.md, "State layout and
// allocation"). The global allocation functions are replaced in this test
// binary by counting ones, which can also be told to fail one allocation:
// set_options, restore and add_group, each allocation failed in turn, must
// leave the optimizer as it was (docs/design.md, "Errors and the strong
// guarantee").
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "test_util.hpp"

namespace {
std::atomic<long> allocations{0};
std::atomic<long> fail_at{-1};  // the allocation (by count) that throws; -1: none

// Counts one allocation; true if it is the one that must fail.
bool count_and_fail() { return ++allocations == fail_at.load(); }
}  // namespace

// These are the replaceable global allocation functions, written over malloc
// and free as the standard allows; g++ cannot see that the pairs match once
// it inlines them and warns, wrongly, of a mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t size) {
  if (count_and_fail()) throw std::bad_alloc();
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, std::align_val_t alignment) {
  if (count_and_fail()) throw std::bad_alloc();
  const std::size_t a = static_cast<std::size_t>(alignment);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t alignment) { return operator new(size, alignment); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

template <class Opt>
class NoAllocation : public testing::Test {};
using Optimizers = testing::Types<adamx::Adam<float>, adamx::AdamW<double>, adamx::AdamX<float>,
                                  adamx::AdamX<double>, adamx::AdamX<Eigen::bfloat16>,
                                  adamx::RAdam<float>, adamx::AdaBound<float>, adamx::AdaMod<double>,
                                  adamx::Lion<float>, adamx::Lion<double>,
                                  adamx::Adan<float>, adamx::Adan<double>,
                                  adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>>;
TYPED_TEST_SUITE(NoAllocation, Optimizers);

TYPED_TEST(NoAllocation, StepAllocatesNothingAfterTheFirstStep) {
  using Scalar = typename TypeParam::scalar_type;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  for (const auto policy : {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::skip,
                            adamx::NonFinitePolicy::error}) {
    Matrix w1 = Matrix::Ones(300, 70), g1 = Matrix::Constant(300, 70, Scalar(0.1));
    Vector b1 = Vector::Ones(70), gb1 = Vector::Constant(70, Scalar(-0.2));
    Vector w2 = Vector::Ones(9000), g2 = Vector::Constant(9000, Scalar(0.3));
    typename TypeParam::Options o;
    o.nonfinite = policy;
    TypeParam opt;
    opt.add_group({w1, b1}, o, "fc1");
    adamx_test::set_option(o, "amsgrad", 1);  // where the optimizer has it (not Lion)
    opt.add_group({w2}, o, "fc2");
    std::vector<std::vector<adamx::TensorRef<Scalar>>> params{{w1, b1}, {w2}};
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grads{{g1, gb1}, {g2}};
    opt.step({{w1, b1}, {w2}}, {{g1, gb1}, {g2}});  // the first step

    const long before = allocations.load();
    for (int i = 0; i < 20; ++i) {
      opt.step({{w1, b1}, {w2}}, {{g1, gb1}, {g2}});
      opt(params, grads);
      opt.set_lr(1e-3 / (i + 1));
    }
    // Nor does a step on other memory, which runs the whole memory check
    // (overlap.hpp) instead of recognising the memory of the last step.
    {
      Matrix w1b = w1, g1b = g1;
      Vector b1b = b1, w2b = w2;
      const long before_other = allocations.load();
      opt.step({{w1b, b1b}, {w2b}}, {{g1b, gb1}, {g2}});
      opt.step({{w1, b1}, {w2}}, {{g1, gb1}, {g2}});
      EXPECT_EQ(allocations.load() - before_other, 0) << "policy " << adamx::to_string(policy);
    }
    // A skipped non-finite step allocates nothing either.
    if (policy == adamx::NonFinitePolicy::skip) {
      g2[4] = std::numeric_limits<Scalar>::infinity();
      opt.step(params, grads);
      g2[4] = Scalar(0.3);
    }
    EXPECT_EQ(allocations.load() - before, 0) << "policy " << adamx::to_string(policy);
  }
}

// Nor does stepping a subset (step_subset.hpp): per-tensor coefficients and
// the list of stepped blocks live in storage sized by add_group.
TYPED_TEST(NoAllocation, SubsetStepAllocatesNothing) {
  using Scalar = typename TypeParam::scalar_type;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  for (const auto policy : {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::error}) {
    Vector w1 = Vector::Ones(5000), g1 = Vector::Constant(5000, Scalar(0.1));
    Vector b1 = Vector::Ones(70), gb1 = Vector::Constant(70, Scalar(-0.2));
    Vector w2 = Vector::Ones(9000), g2 = Vector::Constant(9000, Scalar(0.3));
    typename TypeParam::Options o;
    o.nonfinite = policy;
    TypeParam opt;
    opt.add_group({w1, b1, w2}, o);
    opt.step({{w1, b1, w2}}, {{g1, gb1, g2}});  // the first step: t = 1
    adamx::StepSubset first_and_last;  // built before counting: the caller's memory
    first_and_last.groups.resize(1);
    first_and_last.groups[0].add(0, 1);
    first_and_last.groups[0].add(2, 0);
    adamx::StepSubset middle;
    middle.groups.resize(1);
    middle.groups[0].add(1, 1);
    std::vector<std::vector<adamx::TensorRef<Scalar>>> params{{w1, w2}};
    std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grads{{g1, g2}};

    const long before = allocations.load();
    for (int i = 0; i < 10; ++i) {
      opt.step(params, grads, first_and_last);
      opt.step({{b1}}, {{gb1}}, middle);
    }
    EXPECT_EQ(allocations.load() - before, 0) << "policy " << adamx::to_string(policy);
    EXPECT_EQ(opt.state(0).t, 21);
  }
}

// Each allocation of an operation that allocates failed in turn, until the
// operation succeeds: every failure throws std::bad_alloc and leaves the
// optimizer's groups and state bitwise as they were.
TYPED_TEST(NoAllocation, AFailedAllocationChangesNothing) {
  using Scalar = typename TypeParam::scalar_type;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Vector w1 = Vector::Ones(70), g1 = Vector::Constant(70, Scalar(0.1));
  Vector w2 = Vector::Ones(33), g2 = Vector::Constant(33, Scalar(-0.2));
  Vector w3 = Vector::Ones(5);
  TypeParam opt;
  opt.add_group({w1}, {}, "fc1");
  opt.add_group({w2}, {}, "fc2");
  opt.step({{w1}, {w2}}, {{g1}, {g2}});
  const auto each_failure = [&](const char* what, auto operation) {
    long failures = 0;
    for (long k = 1;; ++k) {
      const auto before = opt.state();
      const std::size_t groups = opt.num_groups();
      fail_at = allocations.load() + k;
      bool failed = false;
      try {
        operation();
      } catch (const std::bad_alloc&) {
        failed = true;
      }
      fail_at = -1;
      if (!failed) break;
      ++failures;
      EXPECT_EQ(opt.num_groups(), groups) << what << ", allocation " << k << " failed";
      EXPECT_TRUE(opt.state() == before) << what << ", allocation " << k << " failed";
    }
    EXPECT_GT(failures, 0) << what << " allocated nothing: the test would prove nothing";
  };
  // Switching AMSGrad on allocates v_max; a rule without it (Lion) keeps no
  // v_max to allocate.
  auto amsgrad_on = opt.options(1);
  if (adamx_test::set_option(amsgrad_on, "amsgrad", 1)) {
    each_failure("set_amsgrad(true)", [&] { opt.set_options(1, amsgrad_on); });
  } else {
    EXPECT_FALSE(adamx_test::rule_has_slot<TypeParam>("v_max"));
  }
  opt.step({{w1}, {w2}}, {{g1}, {g2}});
  const auto saved = opt.state();
  opt.step({{w1}, {w2}}, {{g1}, {g2}});
  each_failure("restore", [&] { opt.restore(saved); });
  EXPECT_TRUE(opt.state() == saved);
  each_failure("add_group", [&] { opt.add_group({w3}, {}, "fc3"); });
  EXPECT_EQ(opt.num_groups(), 3u);
}

// The counter is live: adding a group allocates, so a zero above is a real zero.
// Muon's step keeps its Newton-Schulz workspace with the group (sized by
// add_group): for matrices whose products fit Eigen's stack workspace
// (EIGEN_STACK_ALLOCATION_LIMIT, 128 KB: these), it allocates nothing; a
// larger product takes Eigen's packing buffers from the heap
// (docs/design.md, "Muon").
template <class Scalar>
void muon_step_allocates_nothing() {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  Matrix w1 = Matrix::Ones(48, 24), g1 = Matrix::Constant(48, 24, Scalar(0.1));
  Matrix w2 = Matrix::Ones(16, 40), g2 = Matrix::Constant(16, 40, Scalar(-0.1));
  g1(3, 4) = Scalar(0.5);
  g2(7, 1) = Scalar(0.25);
  Vector b = Vector::Ones(24), gb = Vector::Constant(24, Scalar(0.3));
  adamx::Muon<Scalar> opt;
  adamx::MuonOptions o;
  o.nonfinite = adamx::NonFinitePolicy::skip;
  opt.add_group({w1, w2}, o, "matrices");
  opt.add_group({b}, adamx::muon_adamw_options(), "vectors");
  opt.step({{w1, w2}, {b}}, {{g1, g2}, {gb}});
  const long before = allocations.load();
  for (int i = 0; i < 5; ++i) opt.step({{w1, w2}, {b}}, {{g1, g2}, {gb}});
  EXPECT_EQ(allocations.load() - before, 0);
}

TEST(NoAllocationMuon, StepAllocatesNothingAfterTheFirstStep) {
  muon_step_allocates_nothing<float>();
  muon_step_allocates_nothing<double>();
}

TEST(NoAllocationCounter, CountsTheAllocationsOfAddGroup) {
  Eigen::VectorXf w = Eigen::VectorXf::Ones(100);
  adamx::AdamX<float> opt;
  const long before = allocations.load();
  opt.add_group({w});
  EXPECT_GT(allocations.load() - before, 0);
}

}  // namespace
