// Sharded stepping through the norm-reducer hook, with ranks simulated by
// threads in one process (no MPI needed): for 1, 2 and 3 ranks, each stepping
// its block-aligned shard of every group on the global gradient's shard, θ,
// m, v, v_max, γ and h are bitwise those of one process stepping everything.
// test_mpi.cpp checks the same over real MPI ranks.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/norm_reducer.hpp>
#include <adamx/shard.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "shard_model.hpp"

namespace {

using shard_model::Index;

// Threads that wait for each other, reusable step after step.
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      released_.notify_all();
    } else {
      released_.wait(lock, [&] { return generation != generation_; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int count_;
  int arrived_ = 0;
  long generation_ = 0;
};

// What an MPI all-gather of the partials does, between threads: every rank
// posts its partials, then each sums all ranks' partials in rank order.
class ThreadExchange {
 public:
  explicit ThreadExchange(int ranks) : barrier_(ranks), posted_(static_cast<std::size_t>(ranks)) {}

  struct Reducer {
    ThreadExchange* exchange;
    int rank;
    void operator()(const std::vector<adamx::BlockPartials>& mine, std::vector<double>& s) const {
      auto& slot = exchange->posted_[static_cast<std::size_t>(rank)];
      slot.assign(mine.size(), {});
      for (std::size_t g = 0; g < mine.size(); ++g)
        slot[g].assign(mine[g].data, mine[g].data + mine[g].size);
      exchange->barrier_.wait();
      for (std::size_t g = 0; g < s.size(); ++g) {
        double running = 0.0;
        for (const auto& other : exchange->posted_)
          running = adamx::ordered_block_sum(other[g].data(), other[g].size(), running);
        s[g] = running;
      }
      exchange->barrier_.wait();  // nobody reposts before everyone has read
    }
  };

 private:
  Barrier barrier_;
  std::vector<std::vector<std::vector<double>>> posted_;  // [rank][group][block]
};

template <class Opt>
class Sharded : public ::testing::Test {};
using Optimizers = ::testing::Types<adamx::AdamX<float>, adamx::AdamX<double>, adamx::Adam<float>, adamx::Lion<float>,
                                    adamx::Lion<double>, adamx::Adan<float>, adamx::Adan<double>,
                                    adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>>;
TYPED_TEST_SUITE(Sharded, Optimizers);

TYPED_TEST(Sharded, BitwiseEqualToOneProcessForOneTwoThreeRanks) {
  using Opt = TypeParam;
  using Scalar = typename Opt::scalar_type;
  constexpr int kSteps = 500;
  const shard_model::Reference<Opt> reference(kSteps);
  const std::vector<shard_model::GroupSpec> specs = shard_model::groups();

  for (int ranks = 1; ranks <= 3; ++ranks) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    // layout[g][r]: rank r's shard of group g.
    std::vector<std::vector<adamx::GroupShard>> layout;
    for (const auto& spec : specs) layout.push_back(adamx::shard_group(spec.sizes, ranks));
    // θ is shared: ranks write disjoint pieces of it.
    shard_model::Tensors<Scalar> params = shard_model::initial_params<Scalar>();
    std::vector<Opt> locals(static_cast<std::size_t>(ranks));
    std::vector<std::vector<adamx::GroupShard>> mine(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r)
      for (std::size_t g = 0; g < specs.size(); ++g) {
        const adamx::GroupShard& shard = layout[g][static_cast<std::size_t>(r)];
        mine[static_cast<std::size_t>(r)].push_back(shard);
        adamx::add_shard_group(locals[static_cast<std::size_t>(r)], shard,
                               shard_model::options_of<Opt>(specs[g]), specs[g].name,
                               specs[g].tensor_names);
      }
    ThreadExchange exchange(ranks);
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
      threads.emplace_back([&, r] {
        Opt& local = locals[static_cast<std::size_t>(r)];
        shard_model::Tensors<Scalar> grads = shard_model::zeros<Scalar>();
        std::vector<std::vector<adamx::TensorRef<Scalar>>> pv(specs.size());
        std::vector<std::vector<adamx::ConstTensorRef<Scalar>>> gv(specs.size());
        for (int k = 1; k <= kSteps; ++k) {
          shard_model::global_gradient(k, grads);
          for (std::size_t g = 0; g < specs.size(); ++g) {
            std::vector<Scalar*> pb;
            std::vector<const Scalar*> gb;
            for (std::size_t t = 0; t < params[g].size(); ++t) {
              pb.push_back(params[g][t].data());
              gb.push_back(grads[g][t].data());
            }
            adamx::shard_views(mine[static_cast<std::size_t>(r)][g], pb, pv[g]);
            adamx::shard_views(mine[static_cast<std::size_t>(r)][g], gb, gv[g]);
          }
          local.step(pv, gv, ThreadExchange::Reducer{&exchange, r});
        }
      });
    for (std::thread& t : threads) t.join();
    for (int r = 0; r < ranks; ++r)
      shard_model::expect_shard_equal(reference, locals[static_cast<std::size_t>(r)],
                                      mine[static_cast<std::size_t>(r)], params, r);
    // The NaN step was skipped, on every rank, as by one process.
    EXPECT_EQ(reference.opt.state(0).t, kSteps - 1);
  }
}

TEST(ShardGroup, ShardsAreBlockAlignedContiguousAndCoverTheGroup) {
  constexpr Index B = adamx::detail::kNormBlock;
  const std::vector<Index> sizes = {3 * B + 17, 5, 0, 2 * B, B + 1};
  Index total = 0;
  for (Index n : sizes) total += n;
  for (int ranks = 1; ranks <= 7; ++ranks) {
    const std::vector<adamx::GroupShard> shards = adamx::shard_group(sizes, ranks);
    ASSERT_EQ(shards.size(), static_cast<std::size_t>(ranks));
    Index expected_begin = 0;
    std::size_t expected_block = 0;
    for (const adamx::GroupShard& shard : shards) {
      EXPECT_EQ(shard.begin, expected_begin);
      EXPECT_EQ(shard.first_block, expected_block);
      Index held = 0;
      for (const adamx::ShardPiece& piece : shard.pieces) {
        EXPECT_EQ(piece.start % B, 0) << "a piece must start on a block boundary";
        EXPECT_TRUE(piece.start + piece.length == sizes[piece.tensor] || piece.length % B == 0)
            << "a piece must end on a block boundary or its tensor's end";
        held += piece.length;
      }
      EXPECT_EQ(held, shard.size());
      expected_begin = shard.end;
      expected_block += shard.blocks;
    }
    EXPECT_EQ(expected_begin, total);
    EXPECT_EQ(expected_block, 4u + 1u + 2u + 2u + 0u);  // the group's block count
  }
  // A group of one block over three ranks: ranks 1 and 2 hold nothing.
  const std::vector<adamx::GroupShard> tiny = adamx::shard_group({100}, 3);
  EXPECT_EQ(tiny[0].size(), 100);
  EXPECT_TRUE(tiny[1].pieces.empty());
  EXPECT_TRUE(tiny[2].pieces.empty());
  EXPECT_THROW(adamx::shard_group({1}, 0), std::invalid_argument);
}

}  // namespace
