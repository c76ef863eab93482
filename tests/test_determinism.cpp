// The same inputs give bitwise the same θ, m, v, v_max, γ and h with 1, 2 or 3
// threads: work is split on the fixed blocks s is summed over, and the blocks'
// partials are added in one fixed order (include/adamx/parallel.hpp). And on
// every instruction set this machine runs (isa.hpp): the sets' passes do the
// same elementwise arithmetic and sum s in the same order.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>

#include <cstring>
#include <random>
#include <vector>

namespace {

template <class Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// A model of many tensors of awkward sizes: odd lengths, lengths that are not
// multiples of the 8-element chunk or of the 4096-element block, and lots of
// small tensors, together well above the size where threads are used.
std::vector<Eigen::Index> awkward_sizes() {
  std::vector<Eigen::Index> sizes = {100003, 4097, 4095, 1, 7, 65537};
  for (Eigen::Index n = 1; n <= 300; n += 3) sizes.push_back(n);  // many small tensors
  return sizes;
}

template <class Scalar>
struct Run {
  std::vector<Vector<Scalar>> params;
  std::vector<typename adamx::AdamX<Scalar>::State> state;
};

// Steps a two-group AdamX for `steps` steps on `threads` threads and returns
// the parameters and the state. Gradients burst ×100 for a stretch and carry a
// NaN at one step (which the skip group skips), so every code path runs.
template <class Scalar>
Run<Scalar> run(int threads, int steps, bool amsgrad, adamx::NonFinitePolicy policy) {
  const std::vector<Eigen::Index> sizes = awkward_sizes();
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal(0.0, 1.0);
  Run<Scalar> out;
  std::vector<Vector<Scalar>> grads;
  for (Eigen::Index n : sizes) {
    Vector<Scalar> p(n), g(n);
    for (Eigen::Index i = 0; i < n; ++i) p[i] = static_cast<Scalar>(normal(rng));
    out.params.push_back(p);
    grads.push_back(g);
  }
  const std::size_t split = 3;  // group 0: the first three tensors; group 1: the rest
  adamx::AdamXOptions o;
  o.amsgrad = amsgrad;
  o.nonfinite = policy;
  o.weight_decay = 1e-3;
  adamx::AdamX<Scalar> opt;
  opt.set_threads(threads);
  std::vector<std::vector<adamx::TensorRef<Scalar>>> params(2);
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grad_views(2);
  for (std::size_t j = 0; j < sizes.size(); ++j) {
    params[j < split ? 0 : 1].emplace_back(out.params[j]);
    grad_views[j < split ? 0 : 1].emplace_back(grads[j]);
  }
  opt.add_group(params[0], o);
  o.decay_mode = adamx::WeightDecayMode::decoupled;
  opt.add_group(params[1], o);
  for (int step = 1; step <= steps; ++step) {
    const double scale = (step > steps / 3 && step <= 2 * steps / 3) ? 100.0 : 1.0;
    for (auto& g : grads)
      for (Eigen::Index i = 0; i < g.size(); ++i) g[i] = static_cast<Scalar>(scale * normal(rng));
    if (step == steps / 2) grads[1][5] = std::numeric_limits<Scalar>::quiet_NaN();
    opt.step(params, grad_views);
  }
  out.state = opt.state();
  return out;
}

template <class Scalar>
void expect_identical(const Run<Scalar>& a, const Run<Scalar>& b, int threads) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (std::size_t j = 0; j < a.params.size(); ++j) {
    ASSERT_EQ(std::memcmp(a.params[j].data(), b.params[j].data(),
                          sizeof(Scalar) * static_cast<std::size_t>(a.params[j].size())),
              0)
        << "parameters of tensor " << j << " differ with " << threads << " threads";
  }
  // GroupState's == compares every bit: t, γ, h, m, v, v_max, options, names.
  ASSERT_EQ(a.state.size(), b.state.size());
  for (std::size_t g = 0; g < a.state.size(); ++g)
    EXPECT_TRUE(a.state[g] == b.state[g]) << "state of group " << g << " differs with " << threads
                                          << " threads";
}

template <class Scalar>
class Determinism : public testing::Test {};
using ScalarTypes = testing::Types<float, double>;
TYPED_TEST_SUITE(Determinism, ScalarTypes);

TYPED_TEST(Determinism, OneTwoAndThreeThreadsGiveBitwiseEqualResults) {
  ASSERT_TRUE(adamx::detail::kOpenMP) << "this test must be built with ADAMX_OPENMP";
  for (const bool amsgrad : {false, true}) {
    for (const auto policy : {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::skip}) {
      SCOPED_TRACE(testing::Message() << "amsgrad " << amsgrad << ", policy " << adamx::to_string(policy));
      const Run<TypeParam> one = run<TypeParam>(1, 60, amsgrad, policy);
      for (const int threads : {2, 3}) expect_identical(one, run<TypeParam>(threads, 60, amsgrad, policy), threads);
    }
  }
}

// Every instruction set against the baseline, on one thread and on two.
TYPED_TEST(Determinism, EveryInstructionSetGivesBitwiseEqualResults) {
  const adamx::InstructionSet before = adamx::instruction_set();
  for (const bool amsgrad : {false, true}) {
    for (const auto policy : {adamx::NonFinitePolicy::propagate, adamx::NonFinitePolicy::skip}) {
      adamx::set_instruction_set(adamx::InstructionSet::baseline);
      const Run<TypeParam> baseline = run<TypeParam>(1, 60, amsgrad, policy);
      for (const adamx::InstructionSet set : adamx::supported_instruction_sets()) {
        if (set == adamx::InstructionSet::baseline) continue;
        SCOPED_TRACE(testing::Message() << adamx::instruction_set_name(set) << ", amsgrad " << amsgrad
                                        << ", policy " << adamx::to_string(policy));
        adamx::set_instruction_set(set);
        for (const int threads : {1, 2}) expect_identical(baseline, run<TypeParam>(threads, 60, amsgrad, policy), threads);
      }
    }
  }
  adamx::set_instruction_set(before);
}

// Muon's Newton-Schulz products are Eigen's, split over set_threads()
// threads by Eigen (a split of the result's rows or columns: every output
// element is summed in the same order whoever computes it), so Muon too gives
// bitwise the same results with 1, 2 or 3 threads. The matrices are large
// enough for Eigen to split their products.
template <class Scalar>
std::vector<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>> muon_run(int threads) {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<Matrix> w = {Matrix(160, 240), Matrix(300, 96)}, g = w;
  for (Matrix& m : w)
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(0.1 * normal(rng));
  adamx::Muon<Scalar> opt;
  opt.set_threads(threads);
  opt.add_group({w[0], w[1]});
  for (int t = 0; t < 4; ++t) {
    for (Matrix& m : g)
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(normal(rng));
    opt.step({{w[0], w[1]}}, {{g[0], g[1]}});
  }
  return w;
}

TEST(Threads, MuonIsBitwiseTheSameOnOneTwoAndThreeThreads) {
  const auto one = muon_run<float>(1);
  for (const int threads : {2, 3}) {
    const auto other = muon_run<float>(threads);
    for (std::size_t k = 0; k < one.size(); ++k)
      EXPECT_EQ(0, std::memcmp(one[k].data(), other[k].data(), sizeof(float) * static_cast<std::size_t>(one[k].size())))
          << "matrix " << k << ", " << threads << " threads";
  }
  const auto one_d = muon_run<double>(1);
  const auto two_d = muon_run<double>(2);
  for (std::size_t k = 0; k < one_d.size(); ++k)
    EXPECT_EQ(0, std::memcmp(one_d[k].data(), two_d[k].data(), sizeof(double) * static_cast<std::size_t>(one_d[k].size())))
        << "matrix " << k;
}

TEST(Threads, InvalidThreadCountsThrowAndKeepTheSetting) {
  adamx::AdamX<float> opt;
  opt.set_threads(2);
  EXPECT_THROW(opt.set_threads(0), std::invalid_argument);
  EXPECT_THROW(opt.set_threads(-3), std::invalid_argument);
  EXPECT_EQ(opt.threads(), 2);
}

}  // namespace
