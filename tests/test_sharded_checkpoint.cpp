// Sharded checkpoints without MPI (adamx/sharded_checkpoint.hpp): shard files
// of the shared multi-group model (shard_model.hpp) loaded into each rank's
// shard optimizer equal one process's state bit for bit; re-sharding N -> M,
// merging and splitting are exact (the files they write are byte for byte
// the files written directly); and every refusal — missing, truncated or
// corrupt shards, shards of different saves or of another model, bad rank
// counts — names the problem, writes no output and changes no state.
// test_mpi.cpp runs the same files through adamx::mpi.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "shard_model.hpp"
#include "temp_dir.hpp"

#if defined(ADAMX_RESHARD_TOOL)
#include <sys/wait.h>
#endif

namespace {

namespace fs = std::filesystem;
using shard_model::Index;

using adamx_test::TempDir;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
// Flips the bits `mask` of byte `at` of a file (counted from its end when negative).
void flip_bits(const fs::path& path, std::ptrdiff_t at, int mask) {
  std::string bytes = read_bytes(path);
  const std::size_t index = at < 0 ? bytes.size() - static_cast<std::size_t>(-at) : static_cast<std::size_t>(at);
  bytes.at(index) = static_cast<char>(bytes[index] ^ mask);
  write_bytes(path, bytes);
}

// Rank r's file of the sharded checkpoint of `ranks` ranks under `prefix`:
// the one its manifest names, or the legacy name when it has none.
fs::path shard_file(const fs::path& prefix, int r, int ranks) {
  return adamx::shard_checkpoint_files(prefix, ranks).at(static_cast<std::size_t>(r));
}

// The model's layout cut for `ranks` (every tensor a column vector).
adamx::ShardLayout layout_for(int ranks) {
  adamx::ShardLayout layout;
  layout.ranks = ranks;
  for (const shard_model::GroupSpec& spec : shard_model::groups()) {
    std::vector<adamx::ShardLayout::Tensor> tensors;
    for (std::size_t t = 0; t < spec.sizes.size(); ++t) tensors.push_back({spec.tensor_names[t], spec.sizes[t], 1, false});
    layout.groups.push_back(adamx::make_shard_layout_group(spec.name, tensors, ranks));
  }
  return layout;
}

// Rank `rank`'s shard optimizer for `ranks` ranks (state zero), and its shards.
template <class Opt>
Opt shard_optimizer(int rank, int ranks, std::vector<adamx::GroupShard>* shards = nullptr) {
  Opt opt;
  for (const shard_model::GroupSpec& spec : shard_model::groups()) {
    const adamx::GroupShard shard = adamx::shard_group(spec.sizes, ranks)[static_cast<std::size_t>(rank)];
    adamx::add_shard_group(opt, shard, shard_model::options_of<Opt>(spec), spec.name, spec.tensor_names);
    if (shards) shards->push_back(shard);
  }
  return opt;
}

// Loads every file of "<prefix>.r-of-ranks" into rank r's shard optimizer
// and checks it against the one-process state, bit for bit.
template <class Opt>
void expect_shards_equal(const shard_model::Reference<Opt>& reference, const fs::path& prefix, int ranks) {
  const adamx::ShardLayout layout = layout_for(ranks);
  for (int r = 0; r < ranks; ++r) {
    std::vector<adamx::GroupShard> shards;
    Opt local = shard_optimizer<Opt>(r, ranks, &shards);
    adamx::load_shard_checkpoint(local, layout, r, shard_file(prefix, r, ranks));
    shard_model::expect_shard_equal(reference, local, shards, reference.params, r);
  }
}

template <class Opt>
class ShardedCheckpoint : public ::testing::Test {};
// AdamX in both precisions; Adam (γ ≡ 1, same code) in float; AdaMod for its
// extra step_avg array; Lion for its single array m (no v); Adan for its
// four (m, v, n, prev_grad).
using Optimizers = ::testing::Types<adamx::AdamX<float>, adamx::AdamX<double>, adamx::Adam<float>,
                                    adamx::AdaMod<double>, adamx::Lion<float>, adamx::Lion<double>,
                                    adamx::Adan<float>, adamx::Adan<double>,
                                    adamx::ScheduleFreeAdamW<float>, adamx::ScheduleFreeAdamW<double>>;
TYPED_TEST_SUITE(ShardedCheckpoint, Optimizers);

// One process's checkpoint after 60 steps, split into 3 shards, re-sharded
// 3 -> 2 -> 5 -> 1 and merged: every set of shards holds exactly one
// process's state, and the merged file is byte for byte the one-process file.
// Five ranks leave the 100-element group empty on ranks 1-4.
TYPED_TEST(ShardedCheckpoint, ReshardChainIsExact) {
  using Opt = TypeParam;
  const shard_model::Reference<Opt> reference(60);
  TempDir dir("chain");
  adamx::save_checkpoint(reference.opt, dir / "whole.ckpt");

  adamx::split_checkpoint(dir / "whole.ckpt", dir / "a", 3);
  expect_shards_equal(reference, dir / "a", 3);
  adamx::reshard_checkpoint(dir / "a", 3, dir / "b", 2);
  expect_shards_equal(reference, dir / "b", 2);
  adamx::reshard_checkpoint(dir / "b", dir / "c", 5);  // the rank count found from the files
  expect_shards_equal(reference, dir / "c", 5);
  adamx::reshard_checkpoint(dir / "c", 5, dir / "d", 1);
  expect_shards_equal(reference, dir / "d", 1);
  adamx::merge_sharded_checkpoint(dir / "d", 1, dir / "merged.ckpt");
  EXPECT_EQ(read_bytes(dir / "merged.ckpt"), read_bytes(dir / "whole.ckpt"));
  adamx::merge_sharded_checkpoint(dir / "c", dir / "merged5.ckpt");
  EXPECT_EQ(read_bytes(dir / "merged5.ckpt"), read_bytes(dir / "whole.ckpt"));

  Opt one;
  auto params = shard_model::initial_params<typename Opt::scalar_type>();
  shard_model::add_full_groups(one, params);
  adamx::load_checkpoint(one, dir / "merged5.ckpt");
  EXPECT_TRUE(one.state() == reference.opt.state());

  // Re-sharded files are the files a direct split writes.
  adamx::split_checkpoint(dir / "whole.ckpt", dir / "b_direct", 2);
  for (int r = 0; r < 2; ++r)
    EXPECT_EQ(read_bytes(shard_file(dir / "b", r, 2)),
              read_bytes(shard_file(dir / "b_direct", r, 2)))
        << "rank " << r;
  // No temporary file is left behind.
  for (const std::string& name : dir.files()) EXPECT_EQ(name.find(".partial"), std::string::npos) << name;
}

// A shard optimizer saves the same bytes the conversions write, and what it
// saves loads back bitwise.
TYPED_TEST(ShardedCheckpoint, ShardOptimizerSavesWhatTheConversionsWrite) {
  using Opt = TypeParam;
  const shard_model::Reference<Opt> reference(25);
  TempDir dir("save");
  adamx::save_checkpoint(reference.opt, dir / "whole.ckpt");
  adamx::split_checkpoint(dir / "whole.ckpt", dir / "split", 3);
  const adamx::ShardLayout layout = layout_for(3);
  for (int r = 0; r < 3; ++r) {
    Opt local = shard_optimizer<Opt>(r, 3);
    adamx::load_shard_checkpoint(local, layout, r, shard_file(dir / "split", r, 3));
    adamx::save_shard_checkpoint(local, layout, r, shard_file(dir / "saved", r, 3));
    EXPECT_EQ(read_bytes(shard_file(dir / "saved", r, 3)),
              read_bytes(shard_file(dir / "split", r, 3)))
        << "rank " << r;
  }
}

// --- refusals: a clear message, no output, no state changed ---------------

using Opt = adamx::AdamX<float>;

// Three shards of the model after `steps` steps under "<dir>/<name>".
void three_shards(TempDir& dir, const std::string& name, int steps) {
  const shard_model::Reference<Opt> reference(steps);
  adamx::save_checkpoint(reference.opt, dir / (name + ".ckpt"));
  adamx::split_checkpoint(dir / (name + ".ckpt"), dir / name, 3);
}

// Expects reshard of "<dir>/in" (3 ranks) to "<dir>/out" to throw
// CheckpointError containing every one of `needles`, and no output file.
void expect_reshard_refused(TempDir& dir, const std::vector<std::string>& needles) {
  const std::vector<std::string> before = dir.files();
  try {
    adamx::reshard_checkpoint(dir / "in", 3, dir / "out", 2);
    ADD_FAILURE() << "the re-sharding was not refused";
  } catch (const adamx::CheckpointError& e) {
    const std::string message = e.what();
    for (const std::string& needle : needles) EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
  EXPECT_EQ(dir.files(), before) << "a refused re-sharding wrote or removed files";
}

TEST(ShardedCheckpointRefusals, MissingShard) {
  TempDir dir("missing");
  three_shards(dir, "in", 5);
  fs::remove(shard_file(dir / "in", 1, 3));
  expect_reshard_refused(dir, {"cannot open", "in.1-of-3"});
}

TEST(ShardedCheckpointRefusals, TruncatedShard) {
  TempDir dir("truncated");
  three_shards(dir, "in", 5);
  const fs::path victim = shard_file(dir / "in", 2, 3);
  const std::string bytes = read_bytes(victim);
  write_bytes(victim, bytes.substr(0, bytes.size() - 10));
  expect_reshard_refused(dir, {"truncated", "in.2-of-3"});
}

TEST(ShardedCheckpointRefusals, CorruptStateByte) {
  TempDir dir("corrupt");
  three_shards(dir, "in", 5);
  flip_bits(shard_file(dir / "in", 1, 3), -100, 0x10);  // inside the last array
  expect_reshard_refused(dir, {"checksum mismatch", "in.1-of-3"});
}

TEST(ShardedCheckpointRefusals, CorruptShardRecord) {
  TempDir dir("record");
  three_shards(dir, "in", 5);
  flip_bits(shard_file(dir / "in", 0, 3), 30, 0x01);  // inside the record's body
  expect_reshard_refused(dir, {"shard record checksum mismatch", "in.0-of-3"});
}

TEST(ShardedCheckpointRefusals, ShardsOfDifferentSaves) {
  TempDir dir("saves");
  three_shards(dir, "in", 5);
  three_shards(dir, "later", 6);
  fs::copy_file(shard_file(dir / "later", 1, 3), shard_file(dir / "in", 1, 3),
                fs::copy_options::overwrite_existing);
  expect_reshard_refused(dir, {"not from one save", "t = 6", "t = 5"});
}

TEST(ShardedCheckpointRefusals, ShardOfAnotherRank) {
  TempDir dir("rank");
  three_shards(dir, "in", 5);
  fs::copy_file(shard_file(dir / "in", 0, 3), shard_file(dir / "in", 2, 3),
                fs::copy_options::overwrite_existing);
  expect_reshard_refused(dir, {"holds rank 0 of 3, expected rank 2 of 3"});
}

TEST(ShardedCheckpointRefusals, OrdinaryCheckpointIsNotAShard) {
  TempDir dir("ordinary");
  three_shards(dir, "in", 5);
  fs::copy_file(dir / "in.ckpt", shard_file(dir / "in", 1, 3), fs::copy_options::overwrite_existing);
  expect_reshard_refused(dir, {"ordinary checkpoint of a whole model"});
}

TEST(ShardedCheckpointRefusals, BadRankCounts) {
  TempDir dir("ranks");
  three_shards(dir, "in", 5);
  EXPECT_THROW(adamx::reshard_checkpoint(dir / "in", 3, dir / "out", 0), std::invalid_argument);
  EXPECT_THROW(adamx::reshard_checkpoint(dir / "in", 0, dir / "out", 2), std::invalid_argument);
  EXPECT_THROW(adamx::split_checkpoint(dir / "in.ckpt", dir / "out", -1), std::invalid_argument);
  // Two rank counts under one prefix: the caller must say which.
  adamx::split_checkpoint(dir / "in.ckpt", dir / "in", 2);
  EXPECT_EQ(adamx::find_sharded_checkpoints(dir / "in"), (std::vector<int>{2, 3}));
  try {
    adamx::reshard_checkpoint(dir / "in", dir / "out", 4);
    ADD_FAILURE() << "an ambiguous prefix was accepted";
  } catch (const adamx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("of 2, 3 ranks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(adamx::reshard_checkpoint(dir / "nothing", dir / "out", 4), adamx::CheckpointError);
  EXPECT_TRUE(adamx::find_sharded_checkpoints(dir / "out").empty());
}

// bfloat16 and half parameters (with float state) re-shard exactly too.
template <class Half>
void expect_reduced_precision_round_trip(const std::string& name) {
  TempDir dir(name);
  adamx::AdamX<Half> opt;
  std::vector<Eigen::Matrix<Half, Eigen::Dynamic, 1>> w{Eigen::Matrix<Half, Eigen::Dynamic, 1>(3 * 4096 + 5),
                                                       Eigen::Matrix<Half, Eigen::Dynamic, 1>(7)};
  for (auto& tensor : w)
    for (Index i = 0; i < tensor.size(); ++i) tensor[i] = static_cast<Half>(0.01 * static_cast<double>(i % 97));
  std::vector<adamx::TensorRef<Half>> views(w.begin(), w.end());
  opt.add_group(views);
  std::vector<Eigen::Matrix<Half, Eigen::Dynamic, 1>> g = w;
  std::vector<adamx::ConstTensorRef<Half>> grads(g.begin(), g.end());
  const std::vector<std::vector<adamx::TensorRef<Half>>> param_groups{views};
  const std::vector<std::vector<adamx::ConstTensorRef<Half>>> grad_groups{grads};
  for (int k = 0; k < 5; ++k) opt.step(param_groups, grad_groups);
  adamx::save_checkpoint(opt, dir / "whole.ckpt");
  adamx::split_checkpoint(dir / "whole.ckpt", dir / "three", 3);
  adamx::reshard_checkpoint(dir / "three", 3, dir / "two", 2);
  adamx::merge_sharded_checkpoint(dir / "two", 2, dir / "merged.ckpt");
  EXPECT_EQ(read_bytes(dir / "merged.ckpt"), read_bytes(dir / "whole.ckpt"));
}

TEST(ShardedCheckpoint16Bit, BFloat16AndHalfRoundTripExactly) {
  expect_reduced_precision_round_trip<Eigen::bfloat16>("bf16");
  expect_reduced_precision_round_trip<Eigen::half>("half");
}

// A record (with a valid checksum) whose tensor sizes add up past 2^63 is
// refused as malformed rather than overflowing (found by the fuzzer).
TEST(ShardedCheckpointRefusals, RecordWithOverflowingSizesRefused) {
  adamx::ShardLayout layout;
  const Index huge = Index{1} << 62;
  layout.groups.push_back({{"g", {{"a", huge, 1, false}, {"b", huge, 1, false}, {"c", huge, 1, false}}}, {0, 0}});
  std::istringstream in(adamx::detail::encode_shard_record(layout, 0), std::ios::binary);
  try {
    adamx::detail::read_shard_record(in);
    ADD_FAILURE() << "a record of 3 * 2^62 elements was accepted";
  } catch (const adamx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("more elements than a 64-bit count holds"), std::string::npos) << e.what();
  }
}

// Loading into a run of another layout lists every difference and leaves the
// shard optimizer as it was.
TEST(ShardedCheckpointRefusals, LoadListsLayoutDifferencesStateUnchanged) {
  TempDir dir("layout");
  three_shards(dir, "in", 5);
  const shard_model::Reference<Opt> other_run(2);  // some state to keep
  adamx::save_checkpoint(other_run.opt, dir / "other.ckpt");
  adamx::split_checkpoint(dir / "other.ckpt", dir / "other", 2);

  Opt local = shard_optimizer<Opt>(0, 2);
  adamx::load_shard_checkpoint(local, layout_for(2), 0, shard_file(dir / "other", 0, 2));
  const auto before = local.state();

  // A 3-rank file into a 2-rank run.
  try {
    adamx::load_shard_checkpoint(local, layout_for(2), 0, shard_file(dir / "in", 0, 3));
    ADD_FAILURE() << "a 3-rank shard was loaded by a 2-rank run";
  } catch (const adamx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("shards of 3 rank(s), this run has 2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(local.state() == before);

  // Another model: a renamed group and a reshaped tensor, both named.
  adamx::ShardLayout changed = layout_for(3);
  changed.groups[1].name = "renamed";
  changed.groups[0].tensors[1].rows = 1;
  changed.groups[0].tensors[1].cols = 5;
  try {
    adamx::load_shard_checkpoint(local, changed, 0, shard_file(dir / "in", 0, 3));
    ADD_FAILURE() << "a shard of another model was loaded";
  } catch (const adamx::CheckpointError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("is named 'small' in the checkpoint"), std::string::npos) << message;
    EXPECT_NE(message.find("tensor 'b1' is 5x1 in the checkpoint, 1x5 in this run"), std::string::npos) << message;
  }
  EXPECT_TRUE(local.state() == before);

  // The right layout but another rank's file.
  try {
    adamx::load_shard_checkpoint(local, layout_for(2), 0, shard_file(dir / "other", 1, 2));
    ADD_FAILURE() << "rank 1's shard was loaded as rank 0's";
  } catch (const adamx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("holds rank 1's shard, this is rank 0"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(local.state() == before);

  // An optimizer that is not the layout's shard cannot save as one.
  EXPECT_THROW(adamx::save_shard_checkpoint(local, layout_for(3), 0, dir / "bad"), std::invalid_argument);
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

#if defined(ADAMX_RESHARD_TOOL)
// The command-line tool does what the functions do, and refuses bad input
// with exit status 1 (refused) or 2 (usage).
int run_tool(const std::string& arguments) {
  const std::string command = std::string("\"") + ADAMX_RESHARD_TOOL + "\" " + arguments + " >/dev/null 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ReshardTool, ConvertsLikeTheFunctions) {
  TempDir dir("tool");
  three_shards(dir, "in", 7);
  const std::string d = (dir / "").string();
  EXPECT_EQ(run_tool("reshard " + d + "in " + d + "two 2"), 0);
  adamx::reshard_checkpoint(dir / "in", 3, dir / "two_function", 2);
  for (int r = 0; r < 2; ++r)
    EXPECT_EQ(read_bytes(shard_file(dir / "two", r, 2)),
              read_bytes(shard_file(dir / "two_function", r, 2)));
  EXPECT_EQ(run_tool("merge " + d + "two " + d + "merged.ckpt --from-ranks 2"), 0);
  EXPECT_EQ(read_bytes(dir / "merged.ckpt"), read_bytes(dir / "in.ckpt"));
  EXPECT_EQ(run_tool("split " + d + "merged.ckpt " + d + "four 4"), 0);
  EXPECT_EQ(adamx::find_sharded_checkpoints(dir / "four"), std::vector<int>{4});

  EXPECT_EQ(run_tool(""), 2);
  EXPECT_EQ(run_tool("reshard " + d + "in " + d + "x 0"), 2);
  EXPECT_EQ(run_tool("reshard " + d + "in " + d + "x two"), 2);
  EXPECT_EQ(run_tool("shuffle " + d + "in " + d + "x 2"), 2);
  EXPECT_EQ(run_tool("reshard " + d + "absent " + d + "x 2"), 1);
  fs::remove(shard_file(dir / "in", 2, 3));
  EXPECT_EQ(run_tool("reshard " + d + "in " + d + "x 2"), 1);
  EXPECT_TRUE(adamx::find_sharded_checkpoints(dir / "x").empty());
}
#endif

}  // namespace
