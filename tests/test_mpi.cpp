// adamx/mpi.hpp under mpirun (-np 1, 2 and 3; tests/CMakeLists.txt): the
// ZeRO-1 driver against one process stepping the whole model, bit for bit,
// over 500 steps of the shared multi-group model (shard_model.hpp: odd sizes,
// several tensors per group, amsgrad, an empty shard on ranks >= 1, a NaN
// step that every rank skips); and errors that every rank raises together.
#include <gtest/gtest.h>
#include <mpi.h>

#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cmath>
#include <filesystem>
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

constexpr int kSteps = 500;

template <class Scalar>
struct Views {
  std::vector<std::vector<adamx::TensorRef<Scalar>>> params;
  std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> grads;
  Views(Tensors<Scalar>& p, const Tensors<Scalar>& g) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      params.emplace_back(p[i].begin(), p[i].end());
      grads.emplace_back(g[i].begin(), g[i].end());
    }
  }
};

// The sharded driver of the same optimizer as Opt.
template <class Opt>
struct sharded_of;
template <class Scalar, class Flavour>
struct sharded_of<adamx::Optimizer<Scalar, Flavour>> {
  using type = adamx::mpi::ShardedOptimizer<Scalar, Flavour>;
};

template <class Opt>
class Mpi : public ::testing::Test {};
// Adam (AdamX with γ fixed at 1, the same code) is covered with ranks as
// threads in test_shard.cpp; over MPI the float and double transports matter.
using Optimizers = ::testing::Types<adamx::AdamX<float>, adamx::AdamX<double>, adamx::AdamX<Eigen::bfloat16>>;
TYPED_TEST_SUITE(Mpi, Optimizers);

// Every rank passes the global gradient: bitwise one process, any rank count.
TYPED_TEST(Mpi, GlobalGradientBitwiseEqualToOneProcess) {
  using Opt = TypeParam;
  using Scalar = typename Opt::scalar_type;
  const shard_model::Reference<Opt> reference(kSteps);
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  Tensors<Scalar> grads = shard_model::zeros<Scalar>();
  typename sharded_of<Opt>::type sharded(MPI_COMM_WORLD);
  add_model(sharded, params);
  Views<Scalar> views(params, grads);
  for (int k = 1; k <= kSteps; ++k) {
    shard_model::global_gradient(k, grads);
    sharded.step_global(views.params, views.grads);
  }
  shard_model::expect_shard_equal(reference, sharded.local(), my_shards(sharded), params, world_rank());
  EXPECT_EQ(sharded.local().state(0).t, kSteps - 1) << "the NaN step is skipped on every rank";
}

// Schedule-Free AdamW sharded: its steps bitwise one process's (each rank
// steps its shard of z and v); eval() puts one process's x into the full
// parameters on every rank, train() puts y back bit for bit, and a step or a
// save in between is refused on every rank with nothing changed.
TEST(MpiScheduleFree, StepsEvalAndTrainBitwiseOneProcess) {
  using Opt = adamx::ScheduleFreeAdamW<float>;
  shard_model::Reference<Opt> reference(kSteps);
  Tensors<float> params = shard_model::initial_params<float>();
  Tensors<float> grads = shard_model::zeros<float>();
  adamx::mpi::ScheduleFreeAdamW<float> sharded(MPI_COMM_WORLD);
  add_model(sharded, params);
  Views<float> views(params, grads);
  for (int k = 1; k <= kSteps; ++k) {
    shard_model::global_gradient(k, grads);
    sharded.step_global(views.params, views.grads);
  }
  shard_model::expect_shard_equal(reference, sharded.local(), my_shards(sharded), params, world_rank());
  const Tensors<float> y = params;
  std::vector<std::vector<adamx::TensorRef<float>>> reference_views;
  for (auto& group : reference.params) reference_views.emplace_back(group.begin(), group.end());
  reference.opt.eval(reference_views);
  sharded.eval(views.params);
  EXPECT_TRUE(sharded.in_eval_mode());
  bool moved = false;
  for (std::size_t g = 0; g < params.size(); ++g)
    for (std::size_t t = 0; t < params[g].size(); ++t) {
      EXPECT_TRUE(shard_model::same_bits(params[g][t].data(), reference.params[g][t].data(), params[g][t].size()))
          << "group " << g << ", tensor " << t;
      moved = moved || !shard_model::same_bits(params[g][t].data(), y[g][t].data(), params[g][t].size());
    }
  EXPECT_TRUE(moved);
  const Tensors<float> x = params;
  EXPECT_THROW(sharded.step_global(views.params, views.grads), std::logic_error);
  EXPECT_THROW(adamx::mpi::save_checkpoint(sharded, "unused.ckpt"), std::logic_error);
  sharded.eval(views.params);  // again: nothing changes
  for (std::size_t g = 0; g < params.size(); ++g)
    for (std::size_t t = 0; t < params[g].size(); ++t)
      EXPECT_TRUE(shard_model::same_bits(params[g][t].data(), x[g][t].data(), params[g][t].size()));
  sharded.train(views.params);
  EXPECT_FALSE(sharded.in_eval_mode());
  for (std::size_t g = 0; g < params.size(); ++g)
    for (std::size_t t = 0; t < params[g].size(); ++t)
      EXPECT_TRUE(shard_model::same_bits(params[g][t].data(), y[g][t].data(), params[g][t].size()))
          << "group " << g << ", tensor " << t;
  shard_model::global_gradient(kSteps + 1, grads);
  sharded.step_global(views.params, views.grads);  // training goes on from y
}

// A gradient with few significant bits, so that sums of a few of its
// multiples are exact in float.
template <class Scalar>
Scalar coarse(Scalar x) {
  return std::isfinite(x) ? static_cast<Scalar>(std::round(static_cast<double>(x) * 1024.0) / 1024.0) : x;
}

// The data-parallel path (reduce-scatter of local gradients, then the mean).
// Rank r's local gradient is (r + 1)·q with q a multiple of 2^-10 below 100
// in magnitude, so every partial sum is an integer multiple of 2^-10 below
// 2^14 and exact in float: MPI's sum, in whatever order, is the exact sum, and
// the mean, exact sum / ranks, is the value one process computes. Bitwise.
TEST(MpiReduceScatter, ExactSumsBitwiseEqualToOneProcess) {
  using Scalar = float;
  const int ranks = world_size();
  const Scalar multiplier = static_cast<Scalar>(ranks * (ranks + 1) / 2);
  const shard_model::Reference<adamx::AdamX<Scalar>> reference(kSteps, [&](int k, Tensors<Scalar>& g) {
    shard_model::global_gradient(k, g);
    for (auto& group : g)
      for (auto& tensor : group)
        for (Index i = 0; i < tensor.size(); ++i) tensor[i] = coarse(tensor[i]) * multiplier / static_cast<Scalar>(ranks);
  });
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  Tensors<Scalar> grads = shard_model::zeros<Scalar>();
  adamx::mpi::AdamX<Scalar> sharded(MPI_COMM_WORLD);
  add_model(sharded, params);
  Views<Scalar> views(params, grads);
  const Scalar mine = static_cast<Scalar>(world_rank() + 1);
  for (int k = 1; k <= kSteps; ++k) {
    shard_model::global_gradient(k, grads);
    for (auto& group : grads)
      for (auto& tensor : group)
        for (Index i = 0; i < tensor.size(); ++i) tensor[i] = coarse(tensor[i]) * mine;
    sharded.step(views.params, views.grads);
  }
  shard_model::expect_shard_equal(reference, sharded.local(), my_shards(sharded), params, world_rank());
}

// With one or two ranks the reduce-scatter's sum is a single rounding of
// a + b, which does not depend on the order: bitwise for any gradient. (Run
// under -np 1 and -np 2 only; with three ranks MPI may add in any order, and
// only exact sums are claimed, above.) The collectives are capped so that
// groups "mixed" and "small" share one and "amsgrad" has its own: the
// packing across groups and buckets is exercised; with the default cap
// (the test above) all three groups share one.
template <class Scalar>
void expect_any_gradient_bitwise() {
  const int ranks = world_size();
  ASSERT_LE(ranks, 2);
  const auto local_gradient = [](int k, int rank, Tensors<Scalar>& g) {
    shard_model::global_gradient(k, g);
    for (auto& group : g)
      for (auto& tensor : group)
        for (Index i = 0; i < tensor.size(); ++i)
          tensor[i] *= static_cast<Scalar>(1.0 + 0.1 * rank + 1e-3 * static_cast<double>(i % 7));
  };
  const shard_model::Reference<adamx::AdamX<Scalar>> reference(kSteps, [&](int k, Tensors<Scalar>& g) {
    Tensors<Scalar> other = shard_model::zeros<Scalar>();
    local_gradient(k, 0, g);
    for (int r = 1; r < ranks; ++r) {
      local_gradient(k, r, other);
      for (std::size_t a = 0; a < g.size(); ++a)
        for (std::size_t b = 0; b < g[a].size(); ++b) g[a][b] += other[a][b];
    }
    for (auto& group : g)
      for (auto& tensor : group) tensor /= static_cast<Scalar>(ranks);
  });
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  Tensors<Scalar> grads = shard_model::zeros<Scalar>();
  adamx::mpi::AdamX<Scalar> sharded(MPI_COMM_WORLD);
  add_model(sharded, params);
  sharded.set_max_bucket_elements(7 * shard_model::B);  // "mixed" has 6B + 23 elements, "small" 100
  Views<Scalar> views(params, grads);
  for (int k = 1; k <= kSteps; ++k) {
    local_gradient(k, world_rank(), grads);
    sharded.step(views.params, views.grads);
  }
  shard_model::expect_shard_equal(reference, sharded.local(), my_shards(sharded), params, world_rank());
}

TEST(MpiReduceScatter, AnyGradientBitwiseWithUpToTwoRanks) { expect_any_gradient_bitwise<float>(); }
// bfloat16 gradients are summed by adamx's own MPI operation (in float, one
// rounding to bfloat16 per addition, as Eigen's operator+).
TEST(MpiReduceScatter, AnyGradientBitwiseWithUpToTwoRanksBFloat16) {
  expect_any_gradient_bitwise<Eigen::bfloat16>();
}

// A checkpoint path the same on every rank of this run, apart from the
// runs of other rank counts that ctest may start at the same time.
std::filesystem::path checkpoint_path(const std::string& what) {
  return std::filesystem::temp_directory_path() /
         ("adamx_test_mpi_np" + std::to_string(world_size()) + "_" + what + ".ckpt");
}

// Steps `sharded` (global gradient) over steps [first, last].
template <class Sharded, class Scalar>
void run_steps(Sharded& sharded, Tensors<Scalar>& params, int first, int last) {
  Tensors<Scalar> grads = shard_model::zeros<Scalar>();
  Views<Scalar> views(params, grads);
  for (int k = first; k <= last; ++k) {
    shard_model::global_gradient(k, grads);
    sharded.step_global(views.params, views.grads);
  }
}

// k steps, save(first), load(second) into a fresh sharded optimizer, k more
// steps: bitwise 2k uninterrupted steps of one process.
template <class Scalar, class Save, class Load>
void expect_resume_bitwise(Save save, Load load) {
  constexpr int k = 40;
  const shard_model::Reference<adamx::AdamX<Scalar>> reference(2 * k);
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  {
    adamx::mpi::AdamX<Scalar> first(MPI_COMM_WORLD);
    add_model(first, params);
    run_steps(first, params, 1, k);
    save(first);
  }
  adamx::mpi::AdamX<Scalar> second(MPI_COMM_WORLD);
  add_model(second, params);
  load(second);
  run_steps(second, params, k + 1, 2 * k);
  shard_model::expect_shard_equal(reference, second.local(), my_shards(second), params, world_rank());
  EXPECT_TRUE(second.full_state() == reference.opt.state()) << "the gathered state is one process's";
}

TEST(MpiCheckpoint, ResumeIsBitwise) {
  const std::filesystem::path path = checkpoint_path("resume");
  expect_resume_bitwise<float>([&](auto& first) { adamx::mpi::save_checkpoint(first, path); },
                               [&](auto& second) { adamx::mpi::load_checkpoint(second, path); });
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove(path);
}

// Steps 1..k of the shared model on the first P-1 ranks (all of them when
// P = 1), handing their driver to `save`; then θ, which belongs to the
// training loop, goes from rank 0 to every rank.
template <class Save>
void steps_on_fewer_ranks(Tensors<float>& params, int k, Save save) {
  const int first_ranks = std::max(1, world_size() - 1);
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < first_ranks ? 0 : MPI_UNDEFINED, world_rank(), &sub);
  if (sub != MPI_COMM_NULL) {
    {
      adamx::mpi::AdamX<float> fewer(sub);
      add_model(fewer, params);
      run_steps(fewer, params, 1, k);
      save(fewer);
    }
    MPI_Comm_free(&sub);
  }
  for (auto& group : params)
    for (auto& tensor : group)
      MPI_Bcast(tensor.data(), static_cast<int>(tensor.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
}

// Re-sharding: k steps on P-1 ranks (1 when P = 1), save; load on all P
// ranks, k steps, save; load into one process (a plain Optimizer on every
// rank), k steps: bitwise 3k steps of one process. Under -np 3 that is the
// chain 2 -> 3 -> 1.
TEST(MpiCheckpoint, ReshardingResumesBitwise) {
  using Scalar = float;
  constexpr int k = 50;  // the NaN step (137) falls in the last, one-process stretch
  const shard_model::Reference<adamx::AdamX<Scalar>> reference(3 * k);
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  const std::filesystem::path path1 = checkpoint_path("reshard1");
  const std::filesystem::path path2 = checkpoint_path("reshard2");
  steps_on_fewer_ranks(params, k, [&](auto& fewer) { adamx::mpi::save_checkpoint(fewer, path1); });
  {
    adamx::mpi::AdamX<Scalar> all(MPI_COMM_WORLD);
    add_model(all, params);
    adamx::mpi::load_checkpoint(all, path1);
    run_steps(all, params, k + 1, 2 * k);
    adamx::mpi::save_checkpoint(all, path2);
  }
  adamx::AdamX<Scalar> one;
  shard_model::add_full_groups(one, params);
  adamx::load_checkpoint(one, path2);
  Tensors<Scalar> grads = shard_model::zeros<Scalar>();
  Views<Scalar> views(params, grads);
  for (int step = 2 * k + 1; step <= 3 * k; ++step) {
    shard_model::global_gradient(step, grads);
    one.step(views.params, views.grads);
  }
  EXPECT_TRUE(one.state() == reference.opt.state());
  for (std::size_t g = 0; g < params.size(); ++g)
    for (std::size_t t = 0; t < params[g].size(); ++t)
      EXPECT_TRUE(shard_model::same_bits(params[g][t].data(), reference.params[g][t].data(), params[g][t].size()));
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    std::filesystem::remove(path1);
    std::filesystem::remove(path2);
  }
}

// The shared model after 3 steps, handed to `save` (which saves it).
template <class Save>
void save_model_after_three_steps(Tensors<float>& params, Save save) {
  adamx::mpi::AdamX<float> saved(MPI_COMM_WORLD);
  add_model(saved, params);
  run_steps(saved, params, 1, 3);
  save(saved);
}

// Another model: the shared one with group 1 renamed "renamed", stepped twice.
void add_renamed_model(adamx::mpi::AdamX<float>& other, Tensors<float>& params) {
  const std::vector<shard_model::GroupSpec> specs = shard_model::groups();
  for (std::size_t g = 0; g < specs.size(); ++g)
    other.add_group(params[g], shard_model::options_of<adamx::AdamX<float>>(specs[g]),
                    g == 1 ? std::string("renamed") : specs[g].name, specs[g].tensor_names);
  run_steps(other, params, 1, 2);
}

// `load(other)` on the renamed model must throw MpiError on every rank with
// each of `needles` in its message, and change nothing.
template <class Load>
void expect_renamed_model_refused(Tensors<float>& params, Load load, const std::vector<std::string>& needles) {
  adamx::mpi::AdamX<float> other(MPI_COMM_WORLD);
  add_renamed_model(other, params);
  const auto before = other.local().state();
  try {
    load(other);
    ADD_FAILURE() << "the state of another model was loaded";
  } catch (const adamx::mpi::MpiError& e) {
    const std::string message = e.what();
    for (const std::string& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
  EXPECT_TRUE(other.local().state() == before);
}

// A checkpoint of another model is refused on every rank, naming the
// difference, with the state unchanged.
TEST(MpiCheckpoint, LayoutMismatchRefusedWithStateUnchanged) {
  using Scalar = float;
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  const std::filesystem::path path = checkpoint_path("mismatch");
  save_model_after_three_steps(params, [&](auto& saved) { adamx::mpi::save_checkpoint(saved, path); });
  expect_renamed_model_refused(params, [&](auto& other) { adamx::mpi::load_checkpoint(other, path); },
                               {"'small'", "'renamed'"});
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove(path);
}

// --- sharded checkpoints: one file per rank, nothing gathered -------------

// Removes every file of the sharded checkpoints under `prefix`, and their
// manifests (rank 0, between barriers: no rank is still reading, none writes
// yet).
void remove_sharded(const std::filesystem::path& prefix) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0)
    for (const int n : adamx::find_sharded_checkpoints(prefix)) {
      for (const auto& file : adamx::shard_checkpoint_files(prefix, n)) std::filesystem::remove(file);
      std::filesystem::remove(adamx::shard_manifest_path(prefix, n));
    }
  MPI_Barrier(MPI_COMM_WORLD);
}

// The same with every rank saving and loading its own shard file.
TEST(MpiShardedCheckpoint, ResumeIsBitwise) {
  const std::filesystem::path prefix = checkpoint_path("sharded_resume");
  expect_resume_bitwise<double>(
      [&](auto& first) {
        adamx::mpi::save_sharded_checkpoint(first, prefix);
        EXPECT_TRUE(std::filesystem::exists(adamx::shard_manifest_path(prefix, world_size())));
        EXPECT_TRUE(std::filesystem::exists(
            adamx::shard_checkpoint_files(prefix, world_size())[static_cast<std::size_t>(world_rank())]));
      },
      [&](auto& second) { adamx::mpi::load_sharded_checkpoint(second, prefix); });
  remove_sharded(prefix);
}

// k steps on P-1 ranks (1 when P = 1) saving their shards; re-sharded to P
// files; k steps on all P ranks saving theirs; re-sharded to 1 file, loaded
// by a one-rank driver on every process (MPI_COMM_SELF), k steps: bitwise 3k
// steps of one process. Under -np 3 that is the chain 2 -> 3 -> 1; the P
// files are also merged into an ordinary checkpoint that a plain Optimizer
// loads with the same state.
TEST(MpiShardedCheckpoint, ReshardingResumesBitwise) {
  using Scalar = float;
  constexpr int k = 50;  // the NaN step (137) falls in the last stretch
  const shard_model::Reference<adamx::AdamX<Scalar>> reference(3 * k);
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  const int ranks = world_size();
  const int first_ranks = std::max(1, ranks - 1);
  const std::filesystem::path fewer_prefix = checkpoint_path("sharded_fewer");
  const std::filesystem::path all_prefix = checkpoint_path("sharded_all");
  const std::filesystem::path one_prefix = checkpoint_path("sharded_one");
  const std::filesystem::path merged = checkpoint_path("sharded_merged");
  steps_on_fewer_ranks(params, k, [&](auto& fewer) { adamx::mpi::save_sharded_checkpoint(fewer, fewer_prefix); });
  if (world_rank() == 0) adamx::reshard_checkpoint(fewer_prefix, first_ranks, all_prefix, ranks);
  MPI_Barrier(MPI_COMM_WORLD);
  {
    adamx::mpi::AdamX<Scalar> all(MPI_COMM_WORLD);
    add_model(all, params);
    adamx::mpi::load_sharded_checkpoint(all, all_prefix);
    run_steps(all, params, k + 1, 2 * k);
    adamx::mpi::save_sharded_checkpoint(all, all_prefix);  // replaces the re-sharded files
  }
  if (world_rank() == 0) {
    adamx::reshard_checkpoint(all_prefix, ranks, one_prefix, 1);
    adamx::merge_sharded_checkpoint(all_prefix, ranks, merged);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  {
    adamx::AdamX<Scalar> plain;
    Tensors<Scalar> copy = params;
    shard_model::add_full_groups(plain, copy);
    adamx::load_checkpoint(plain, merged);
    adamx::mpi::AdamX<Scalar> full(MPI_COMM_WORLD);
    add_model(full, params);
    adamx::mpi::load_sharded_checkpoint(full, all_prefix);
    EXPECT_TRUE(full.full_state() == plain.state()) << "the merged file holds the P shards' state";
  }
  adamx::mpi::AdamX<Scalar> one(MPI_COMM_SELF);
  add_model(one, params);
  adamx::mpi::load_sharded_checkpoint(one, one_prefix);
  run_steps(one, params, 2 * k + 1, 3 * k);
  EXPECT_TRUE(one.local().state().size() == reference.opt.state().size());
  shard_model::expect_shard_equal(reference, one.local(), my_shards(one), params, world_rank());
  remove_sharded(fewer_prefix);
  remove_sharded(all_prefix);
  remove_sharded(one_prefix);
  if (world_rank() == 0) std::filesystem::remove(merged);
}

// Shards of another model, or of another rank count, are refused on every
// rank with every difference named and the state unchanged.
TEST(MpiShardedCheckpoint, LayoutMismatchRefusedWithStateUnchanged) {
  using Scalar = float;
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  const std::filesystem::path prefix = checkpoint_path("sharded_mismatch");
  save_model_after_three_steps(params, [&](auto& saved) { adamx::mpi::save_sharded_checkpoint(saved, prefix); });
  expect_renamed_model_refused(params, [&](auto& other) { adamx::mpi::load_sharded_checkpoint(other, prefix); },
                               {"is named 'small' in the checkpoint", "nothing was changed"});

  // A run of one rank fewer finds the files of this rank count and says so.
  if (world_size() >= 2) {
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank() < world_size() - 1 ? 0 : MPI_UNDEFINED, world_rank(), &sub);
    if (sub != MPI_COMM_NULL) {
      adamx::mpi::AdamX<Scalar> fewer(sub);
      add_model(fewer, params);
      run_steps(fewer, params, 1, 2);
      const auto fewer_before = fewer.local().state();
      try {
        adamx::mpi::load_sharded_checkpoint(fewer, prefix);
        ADD_FAILURE() << "shards of " << world_size() << " ranks were loaded by " << world_size() - 1;
      } catch (const adamx::mpi::MpiError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("has sharded checkpoints of " + std::to_string(world_size()) + " rank(s)"),
                  std::string::npos)
            << message;
      }
      EXPECT_TRUE(fewer.local().state() == fewer_before);
      MPI_Comm_free(&sub);
    }
  }
  remove_sharded(prefix);
}

// Every file valid on its own, but rank 1's from a later save: refused on
// every rank — by the manifest, which records another file; and, in a
// checkpoint of an older adamx without a manifest (as a crash between two
// ranks' renames left them), by the step counts that differ.
TEST(MpiShardedCheckpoint, FilesOfDifferentSavesRefusedOnEveryRank) {
  ASSERT_GE(world_size(), 2) << "needs two ranks or more";
  using Scalar = float;
  Tensors<Scalar> params = shard_model::initial_params<Scalar>();
  const std::filesystem::path prefix = checkpoint_path("sharded_mixed");
  const std::filesystem::path later = checkpoint_path("sharded_mixed_later");
  {
    adamx::mpi::AdamX<Scalar> saved(MPI_COMM_WORLD);
    add_model(saved, params);
    run_steps(saved, params, 1, 3);
    adamx::mpi::save_sharded_checkpoint(saved, prefix);
    run_steps(saved, params, 4, 4);
    adamx::mpi::save_sharded_checkpoint(saved, later);
  }
  const std::filesystem::path legacy = checkpoint_path("sharded_mixed_legacy");
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    const auto files = adamx::shard_checkpoint_files(prefix, world_size());
    const auto later_files = adamx::shard_checkpoint_files(later, world_size());
    for (int r = 0; r < world_size(); ++r)
      std::filesystem::copy_file(r == 1 ? later_files[1] : files[static_cast<std::size_t>(r)],
                                 adamx::shard_checkpoint_path(legacy, r, world_size()),
                                 std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(later_files[1], files[1], std::filesystem::copy_options::overwrite_existing);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  adamx::mpi::AdamX<Scalar> loader(MPI_COMM_WORLD);
  add_model(loader, params);
  const auto before = loader.local().state();
  try {
    adamx::mpi::load_sharded_checkpoint(loader, prefix);
    ADD_FAILURE() << "a file the manifest does not record was loaded";
  } catch (const adamx::mpi::MpiError& e) {
    const std::string message = e.what();
    if (world_rank() == 1)
      EXPECT_NE(message.find("it is not the file that save wrote"), std::string::npos) << message;
    else
      EXPECT_NE(message.find("rank(s) 1 refused"), std::string::npos) << message;
  }
  EXPECT_TRUE(loader.local().state() == before);
  try {
    adamx::mpi::load_sharded_checkpoint(loader, legacy);
    ADD_FAILURE() << "files of two saves were loaded";
  } catch (const adamx::mpi::MpiError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("not from one save"), std::string::npos) << message;
    EXPECT_NE(message.find("t=3"), std::string::npos) << message;
    EXPECT_NE(message.find("t=4"), std::string::npos) << message;
  }
  EXPECT_TRUE(loader.local().state() == before);
  remove_sharded(prefix);
  remove_sharded(later);
  remove_sharded(legacy);
}

// One group "fc" of one tensor "weight" (θ = 0.5, g = 1 unless changed),
// sharded over the world, with the views a step takes.
struct OneTensor {
  Eigen::VectorXf w, g, before;
  adamx::mpi::AdamX<float> sharded{MPI_COMM_WORLD};
  std::vector<std::vector<adamx::TensorRef<float>>> p;
  std::vector<std::vector<adamx::ConstTensorRef<float>>> q;
  OneTensor(Index param_size, Index grad_size, const adamx::AdamXOptions& options = {})
      : w(Eigen::VectorXf::Constant(param_size, 0.5f)),
        g(Eigen::VectorXf::Constant(grad_size, 1.0f)),
        before(w) {
    sharded.add_group(std::vector<adamx::TensorRef<float>>{w}, options, "fc", {"weight"});
    p = {{w}};
    q = {{g}};
  }
  void expect_unchanged() const {
    EXPECT_EQ(sharded.local().state(0).t, 0);
    EXPECT_TRUE(w == before);
  }
};

// Groups that differ on one rank are refused at the first step, on every
// rank (none waits in a collective), naming the ranks' layouts; nothing moves.
TEST(MpiErrors, LayoutMismatchRefusedOnEveryRank) {
  ASSERT_GE(world_size(), 2) << "needs two ranks or more";
  const Index size = world_rank() == world_size() - 1 ? 5000 : 5001;
  OneTensor model(size, size);
  try {
    model.sharded.step(model.p, model.q);
    ADD_FAILURE() << "a layout mismatch was accepted";
  } catch (const adamx::mpi::MpiError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layouts differ"), std::string::npos) << message;
    EXPECT_NE(message.find("weight:5000"), std::string::npos) << message;
    EXPECT_NE(message.find("weight:5001"), std::string::npos) << message;
  }
  model.expect_unchanged();
}

// The collective cap must be a valid int count; ranks that set different
// caps are refused like any other layout difference.
TEST(MpiErrors, BucketCapCheckedAndCompared) {
  OneTensor model(9000, 9000);
  EXPECT_THROW(model.sharded.set_max_bucket_elements(0), std::invalid_argument);
  EXPECT_THROW(model.sharded.set_max_bucket_elements(Index{INT_MAX} + 1), std::invalid_argument);
  EXPECT_EQ(model.sharded.max_bucket_elements(), adamx::mpi::AdamX<float>::kDefaultBucketElements);
  if (world_size() >= 2) {
    model.sharded.set_max_bucket_elements(world_rank() == 0 ? 4096 : 8192);
    try {
      model.sharded.step(model.p, model.q);
      ADD_FAILURE() << "different collective caps were accepted";
    } catch (const adamx::mpi::MpiError& e) {
      EXPECT_NE(std::string(e.what()).find("buckets of 8192"), std::string::npos) << e.what();
    }
    model.expect_unchanged();
  }
}

// One rank's bad input stops every rank before any data moves. With one
// rank every rank got it: then it is one process's std::invalid_argument.
TEST(MpiErrors, BadInputOnOneRankRefusedOnEveryRank) {
  const int bad_rank = world_size() - 1;
  OneTensor model(9000, world_rank() == bad_rank ? 8999 : 9000);
  const std::string problem =
      "adamx::AdamX::step: tensor 'fc.weight': the gradient has shape 8999x1 but the group was created with 9000x1";
  try {
    model.sharded.step(model.p, model.q);
    ADD_FAILURE() << "a wrong gradient size was accepted";
  } catch (const adamx::mpi::MpiError& e) {
    EXPECT_GE(world_size(), 2);
    const std::string message = e.what();
    if (world_rank() == bad_rank) {
      EXPECT_NE(message.find(problem), std::string::npos) << message;
    } else {
      EXPECT_NE(message.find("rank(s) " + std::to_string(bad_rank) + " refused"), std::string::npos) << message;
    }
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(world_size(), 1);
    EXPECT_EQ(e.what(), problem);
  }
  model.expect_unchanged();
}

// Parameters sharing memory on one rank are refused on every rank before any
// data moves (docs/design.md, "Aliasing"), naming both tensors.
TEST(MpiErrors, AliasedParametersOnOneRankRefusedOnEveryRank) {
  const int bad_rank = world_size() - 1;
  Eigen::VectorXf w = Eigen::VectorXf::Constant(9000, 0.5f), b = w;
  const Eigen::VectorXf g = Eigen::VectorXf::Constant(9000, 1.0f);
  adamx::mpi::AdamX<float> sharded{MPI_COMM_WORLD};
  sharded.add_group(std::vector<adamx::TensorRef<float>>{w, b}, {}, "fc", {"weight", "bias"});
  Eigen::VectorXf& second = world_rank() == bad_rank ? w : b;
  try {
    sharded.step(std::vector<std::vector<adamx::TensorRef<float>>>{{w, second}},
                 std::vector<std::vector<adamx::ConstTensorRef<float>>>{{g, g}});
    ADD_FAILURE() << "aliased parameters were accepted";
  } catch (const adamx::mpi::MpiError& e) {
    EXPECT_GE(world_size(), 2);
    const std::string message = e.what();
    if (world_rank() == bad_rank) {
      EXPECT_NE(message.find("'fc.weight' and 'fc.bias' share memory"), std::string::npos) << message;
    } else {
      EXPECT_NE(message.find("rank(s) " + std::to_string(bad_rank) + " refused"), std::string::npos) << message;
    }
  } catch (const std::invalid_argument& e) {  // one rank: every rank got it
    EXPECT_EQ(world_size(), 1);
    EXPECT_NE(std::string(e.what()).find("'fc.weight' and 'fc.bias' share memory"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sharded.local().state(0).t, 0);
  EXPECT_TRUE((w.array() == 0.5f).all() && (b.array() == 0.5f).all());
}

// A gradient that is its own parameter's memory steps bit for bit like a
// copy of it, in both kinds of step.
TEST(MpiAliasing, GradientThatIsItsOwnParameterStepsLikeACopy) {
  for (const bool global : {false, true}) {
    Eigen::VectorXf w = Eigen::VectorXf::LinSpaced(9000, -1.0f, 1.0f), w_copy = w;
    adamx::mpi::AdamX<float> aliased{MPI_COMM_WORLD}, separate{MPI_COMM_WORLD};
    aliased.add_group(std::vector<adamx::TensorRef<float>>{w}, {}, "fc", {"weight"});
    separate.add_group(std::vector<adamx::TensorRef<float>>{w_copy}, {}, "fc", {"weight"});
    for (int k = 0; k < 3; ++k) {
      const Eigen::VectorXf gradient = w_copy;
      std::vector<std::vector<adamx::TensorRef<float>>> p{{w}}, p_copy{{w_copy}};
      std::vector<std::vector<adamx::ConstTensorRef<float>>> q{{w}}, q_copy{{gradient}};
      if (global) {
        aliased.step_global(p, q);
        separate.step_global(p_copy, q_copy);
      } else {
        aliased.step(p, q);
        separate.step(p_copy, q_copy);
      }
      ASSERT_TRUE(std::memcmp(w.data(), w_copy.data(), sizeof(float) * 9000) == 0)
          << (global ? "step_global" : "step") << ", step " << k;
    }
  }
}

// NonFinitePolicy::error: a NaN on one rank's shard throws on every rank,
// because the decision is taken on the reduced s.
TEST(MpiErrors, NonFiniteErrorOnEveryRank) {
  adamx::AdamXOptions o;
  o.nonfinite = adamx::NonFinitePolicy::error;
  const Index size = 3 * adamx::detail::kNormBlock + 5;
  OneTensor model(size, size, o);
  model.g[size - 1] = std::numeric_limits<float>::quiet_NaN();  // in the last rank's shard
  EXPECT_THROW(model.sharded.step_global(model.p, model.q), adamx::NonFiniteGradientError);
  model.expect_unchanged();
}

}  // namespace
