// Clipping by the global gradient norm in the ZeRO-1 driver (adamx/mpi.hpp,
// step(…, ClipGradNorm) and step_global(…, ClipGradNorm)) under mpirun -np 1,
// 2 and 3 (tests/CMakeLists.txt), against one process calling
// adamx::clip_grad_norm and then step() on the same global gradient: the norm
// and θ, m, v, v_max, γ, h bit for bit, for norm types 1, 2 and ∞, with the
// clip binding and not; non-finite gradients; error_if_nonfinite and invalid
// arguments refused on every rank with nothing changed.
#include <gtest/gtest.h>
#include <mpi.h>

#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpi_util.hpp"
#include "shard_model.hpp"

namespace {

using mpi_util::add_model;
using mpi_util::my_shards;
using mpi_util::world_rank;
using mpi_util::world_size;
using shard_model::Index;
using shard_model::Tensors;
using shard_model::const_views;
using shard_model::mutable_views;
using shard_model::same_tensors;

constexpr int kSteps = 6;
constexpr double kInf = std::numeric_limits<double>::infinity();

// One process: clip_grad_norm on (a copy of) each step's global gradient,
// then step; the norms it returned, per step.
template <class Opt>
struct ClippedReference {
  shard_model::Reference<Opt> run;
  std::vector<double> norms;

  template <class GradientOfStep>
  ClippedReference(int steps, const adamx::ClipGradNorm& clip, GradientOfStep gradient)
      : run(0, [](int, auto&) {}) {
    using Scalar = typename Opt::scalar_type;
    Tensors<Scalar> grads = shard_model::zeros<Scalar>();
    auto pv = mutable_views(run.params);
    auto gv = mutable_views(grads);
    for (int k = 1; k <= steps; ++k) {
      gradient(k, grads);
      norms.push_back(adamx::clip_grad_norm(gv, clip.max_norm, clip.norm_type, clip.error_if_nonfinite));
      run.opt.step(pv, const_views(grads));
    }
  }
};

// The norm of the test gradients is far above 1e-3 and far below 1e6 for
// every norm type (each element's magnitude is at most 15, and thousands are
// near it), so these bind and do not bind at every step; the tests check it.
constexpr double kBinding = 1e-3;
constexpr double kNotBinding = 1e6;

template <class Scalar>
class MpiClip : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MpiClip, Scalars);

// Every rank passes the global gradient: bitwise one process's clip + step,
// for any rank count, and the caller's gradient is not modified.
template <class Scalar>
void expect_global_clipped_bitwise() {
  using Opt = adamx::AdamX<Scalar>;
  for (const double p : {1.0, 2.0, kInf})
    for (const double max_norm : {kBinding, kNotBinding}) {
      SCOPED_TRACE("p = " + std::to_string(p) + ", max_norm = " + std::to_string(max_norm));
      const adamx::ClipGradNorm clip{max_norm, p};
      const ClippedReference<Opt> reference(kSteps, clip, shard_model::global_gradient<Scalar>);
      Tensors<Scalar> params = shard_model::initial_params<Scalar>();
      Tensors<Scalar> grads = shard_model::zeros<Scalar>();
      Tensors<Scalar> unchanged = shard_model::zeros<Scalar>();
      adamx::mpi::AdamX<Scalar> sharded(MPI_COMM_WORLD);
      add_model(sharded, params);
      EXPECT_TRUE(std::isnan(sharded.last_grad_norm())) << "no clipped step yet";
      const auto pv = mutable_views(params);
      const auto gv = const_views(grads);
      for (int k = 1; k <= kSteps; ++k) {
        shard_model::global_gradient(k, grads);
        unchanged = grads;
        sharded.step_global(pv, gv, clip);
        const double want = reference.norms[static_cast<std::size_t>(k - 1)];
        EXPECT_TRUE(shard_model::same_bits(sharded.last_grad_norm(), want))
            << "step " << k << ": " << sharded.last_grad_norm() << " vs " << want;
        EXPECT_EQ(want > max_norm, max_norm == kBinding) << "step " << k << ": norm " << want;
        EXPECT_TRUE(same_tensors(grads, unchanged)) << "step " << k << ": the caller's gradient was modified";
      }
      shard_model::expect_shard_equal(reference.run, sharded.local(), my_shards(sharded), params, world_rank());
    }
}
TYPED_TEST(MpiClip, GlobalGradientClippedBitwiseEqualToOneProcess) { expect_global_clipped_bitwise<TypeParam>(); }
// bfloat16: the norm's parts are summed from values widened to float.
TEST(MpiClipBFloat16, GlobalGradientClippedBitwiseEqualToOneProcess) {
  expect_global_clipped_bitwise<Eigen::bfloat16>();
}

// A gradient with few significant bits (as in test_mpi.cpp), so that sums of
// a few of its multiples are exact in float and double.
template <class Scalar>
Scalar coarse(Scalar x) {
  return std::isfinite(x) ? static_cast<Scalar>(std::round(static_cast<double>(x) * 1024.0) / 1024.0) : x;
}

// Rank r's local gradient at step k: (r + 1)·coarse(global gradient), with
// `poison(k, rank, grads)` then free to plant non-finite values. The mean over
// the ranks is exact (test_mpi.cpp, ExactSumsBitwiseEqualToOneProcess).
template <class Scalar>
void local_gradient(int k, int rank, Tensors<Scalar>& g) {
  shard_model::global_gradient(k, g);
  for (auto& group : g)
    for (auto& tensor : group)
      for (Index i = 0; i < tensor.size(); ++i) tensor[i] = coarse(tensor[i]) * static_cast<Scalar>(rank + 1);
}
template <class Scalar>
void mean_gradient(int k, Tensors<Scalar>& g) {
  const int ranks = world_size();
  const Scalar multiplier = static_cast<Scalar>(ranks * (ranks + 1) / 2);
  shard_model::global_gradient(k, g);
  for (auto& group : g)
    for (auto& tensor : group)
      for (Index i = 0; i < tensor.size(); ++i)
        tensor[i] = coarse(tensor[i]) * multiplier / static_cast<Scalar>(ranks);
}

// Step 3 puts a NaN, step 5 an +Inf, into one rank's (the last rank's)
// gradient of group "mixed" (policy skip): the mean is NaN or Inf there, the
// norm is not finite on every rank, nothing is scaled and every rank skips
// "mixed" while the other groups step unclipped, as in one process.
constexpr int kNaNStep = 3;
constexpr int kInfStep = 5;
template <class Scalar>
void plant(int k, Tensors<Scalar>& g) {
  shard_model::Vec<Scalar>& tensor = g[0][1];
  if (k == kNaNStep) tensor[2] = std::numeric_limits<Scalar>::quiet_NaN();
  if (k == kInfStep) tensor[2] = std::numeric_limits<Scalar>::infinity();
}

// The data-parallel path: the reduce-scatter's mean is clipped.
TYPED_TEST(MpiClip, ReduceScatterMeanClippedBitwiseEqualToOneProcess) {
  using Scalar = TypeParam;
  using Opt = adamx::AdamX<Scalar>;
  const int last = world_size() - 1;
  for (const double p : {1.0, 2.0, kInf})
    for (const double max_norm : {kBinding, kNotBinding}) {
      SCOPED_TRACE("p = " + std::to_string(p) + ", max_norm = " + std::to_string(max_norm));
      const adamx::ClipGradNorm clip{max_norm, p};
      const ClippedReference<Opt> reference(kSteps, clip, [](int k, Tensors<Scalar>& g) {
        mean_gradient(k, g);
        plant(k, g);
      });
      Tensors<Scalar> params = shard_model::initial_params<Scalar>();
      Tensors<Scalar> grads = shard_model::zeros<Scalar>();
      Tensors<Scalar> unchanged = shard_model::zeros<Scalar>();
      adamx::mpi::AdamX<Scalar> sharded(MPI_COMM_WORLD);
      add_model(sharded, params);
      const auto pv = mutable_views(params);
      const auto gv = const_views(grads);
      for (int k = 1; k <= kSteps; ++k) {
        local_gradient(k, world_rank(), grads);
        if (world_rank() == last) plant(k, grads);
        unchanged = grads;
        sharded.step(pv, gv, clip);
        const double want = reference.norms[static_cast<std::size_t>(k - 1)];
        EXPECT_TRUE(shard_model::same_bits(sharded.last_grad_norm(), want))
            << "step " << k << ": " << sharded.last_grad_norm() << " vs " << want;
        if (k == kNaNStep) EXPECT_TRUE(std::isnan(want));
        else if (k == kInfStep) EXPECT_EQ(want, kInf);
        else EXPECT_EQ(want > max_norm, max_norm == kBinding) << "step " << k << ": norm " << want;
        EXPECT_TRUE(same_tensors(grads, unchanged)) << "step " << k << ": the caller's gradient was modified";
      }
      shard_model::expect_shard_equal(reference.run, sharded.local(), my_shards(sharded), params, world_rank());
      EXPECT_EQ(sharded.local().state(0).t, kSteps - 2) << "both non-finite steps skipped on every rank";
      EXPECT_EQ(sharded.local().state(1).t, kSteps);
    }
}

// A sharded model and everything a refused step must leave as it was.
template <class Scalar>
struct Snapshot {
  adamx::mpi::AdamX<Scalar> sharded{MPI_COMM_WORLD};
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  Tensors<Scalar> grads = shard_model::zeros<Scalar>();
  std::vector<std::vector<adamx::TensorRef<Scalar>>> pv;
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> gv;
  std::vector<typename adamx::AdamX<Scalar>::State> state_before;
  Tensors<Scalar> params_before, grads_before;
  double norm_before = 0.0;

  Snapshot() {
    add_model(sharded, params);
    pv = mutable_views(params);
    gv = const_views(grads);
    shard_model::global_gradient(1, grads);
    sharded.step_global(pv, gv, adamx::ClipGradNorm{1.0});
    shard_model::global_gradient(2, grads);
  }
  void take() {
    state_before = sharded.full_state();
    params_before = params;
    grads_before = grads;
    norm_before = sharded.last_grad_norm();
  }
  void expect_unchanged() {
    const auto state = sharded.full_state();
    for (std::size_t g = 0; g < state.size(); ++g) {
      SCOPED_TRACE(state[g].name);
      EXPECT_EQ(state[g].t, state_before[g].t);
      EXPECT_TRUE(shard_model::same_bits(state[g].gamma, state_before[g].gamma));
      EXPECT_TRUE(shard_model::same_bits(state[g].h, state_before[g].h));
      for (std::size_t t = 0; t < state[g].tensors.size(); ++t) {
        EXPECT_TRUE(shard_model::same_bits(state[g].tensors[t].m.data(), state_before[g].tensors[t].m.data(),
                                           state[g].tensors[t].m.size()));
        EXPECT_TRUE(shard_model::same_bits(state[g].tensors[t].v.data(), state_before[g].tensors[t].v.data(),
                                           state[g].tensors[t].v.size()));
      }
    }
    EXPECT_TRUE(same_tensors(params, params_before));
    EXPECT_TRUE(same_tensors(grads, grads_before));
    EXPECT_TRUE(shard_model::same_bits(sharded.last_grad_norm(), norm_before));
  }
};

// What one process's clip_grad_norm throws for `grads` (a copy is clipped).
template <class Scalar, class Exception>
std::string one_process_message(const Tensors<Scalar>& grads, const adamx::ClipGradNorm& clip) {
  Tensors<Scalar> copy = grads;
  try {
    adamx::clip_grad_norm(mutable_views(copy), clip.max_norm, clip.norm_type, clip.error_if_nonfinite);
  } catch (const Exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "clip_grad_norm did not throw";
  return {};
}

// error_if_nonfinite: an Inf in group 2 ("amsgrad") of the global gradient,
// or in one rank's local gradient: every rank throws NonFiniteGradientError
// naming group 2 with one process's message, and nothing changes.
TYPED_TEST(MpiClip, ErrorIfNonfiniteThrowsOnEveryRankAndChangesNothing) {
  using Scalar = TypeParam;
  for (const double p : {1.0, 2.0, kInf}) {
    SCOPED_TRACE("p = " + std::to_string(p));
    const adamx::ClipGradNorm clip{1.0, p, true};
    Snapshot<Scalar> model;
    model.grads[2][0][5] = std::numeric_limits<Scalar>::infinity();
    model.take();
    const std::string want = one_process_message<Scalar, adamx::NonFiniteGradientError>(model.grads, clip);
    try {
      model.sharded.step_global(model.pv, model.gv, clip);
      ADD_FAILURE() << "step_global did not throw";
    } catch (const adamx::NonFiniteGradientError& e) {
      EXPECT_EQ(std::string(e.what()), want);
      EXPECT_EQ(e.group(), 2u);
    }
    model.expect_unchanged();

    // Only the last rank's local gradient is infinite.
    model.grads[2][0][5] = Scalar(0);
    if (world_rank() == world_size() - 1) model.grads[2][0][5] = std::numeric_limits<Scalar>::infinity();
    model.take();
    EXPECT_THROW(model.sharded.step(model.pv, model.gv, clip), adamx::NonFiniteGradientError);
    model.expect_unchanged();
    // The ranks are still in step: a good step follows.
    model.grads[2][0][5] = Scalar(0);
    model.sharded.step(model.pv, model.gv, adamx::ClipGradNorm{1.0, p});
    EXPECT_EQ(model.sharded.local().state(2).t, 2);
  }
}

// Invalid max_norm or norm_type: clip_grad_norm's std::invalid_argument and
// message on every rank, nothing changed, both step forms.
TYPED_TEST(MpiClip, InvalidArgumentsThrowOnEveryRankAndChangeNothing) {
  using Scalar = TypeParam;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Snapshot<Scalar> model;
  model.take();
  for (const adamx::ClipGradNorm clip : {adamx::ClipGradNorm{-1.0}, adamx::ClipGradNorm{nan},
                                         adamx::ClipGradNorm{1.0, 0.0}, adamx::ClipGradNorm{1.0, -2.0},
                                         adamx::ClipGradNorm{1.0, nan}}) {
    const std::string want = one_process_message<Scalar, std::invalid_argument>(model.grads, clip);
    SCOPED_TRACE(want);
    try {
      model.sharded.step_global(model.pv, model.gv, clip);
      ADD_FAILURE() << "step_global did not throw";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), want);
    }
    try {
      model.sharded.step(model.pv, model.gv, clip);
      ADD_FAILURE() << "step did not throw";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()), want);
    }
    model.expect_unchanged();
  }
}

// Ranks passing different ClipGradNorm (run with 2 and 3 ranks): every rank
// throws MpiError listing them, nothing changed.
TEST(MpiClipRanks, DifferentArgumentsOnTheRanksRefusedOnEveryRank) {
  ASSERT_GE(world_size(), 2);
  Snapshot<float> model;
  model.take();
  const adamx::ClipGradNorm clip{world_rank() == 1 ? 2.0 : 1.0};
  try {
    model.sharded.step_global(model.pv, model.gv, clip);
    ADD_FAILURE() << "step_global did not throw";
  } catch (const adamx::mpi::MpiError& e) {
    EXPECT_NE(std::string(e.what()).find("different ClipGradNorm"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 1: max_norm = 2"), std::string::npos) << e.what();
  }
  model.expect_unchanged();
}

}  // namespace
