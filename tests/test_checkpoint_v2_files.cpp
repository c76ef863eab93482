// Checkpoint files written by an earlier adamx (format version 2, committed
// under tests/data/checkpoints_v2/) still load, into exactly the state that
// the same deterministic training (recorded_model.hpp) gives today: optimizer
// checkpoints of every optimizer over float, double, bfloat16 and half, a
// run checkpoint (parameters, a schedule, counters) and a sharded checkpoint
// of two ranks with its manifest, loaded rank by rank and merged. Each file's
// version fields are checked too: these are the files a future format must
// still read.
//
// ADAMX_WRITE_CHECKPOINTS_V2=<directory> writes the files instead of
// comparing (tests/data/README.md).
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/shard.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "recorded_model.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using recorded_model::GroupSpec;
using recorded_model::Model;
using recorded_model::Regime;

constexpr int kSteps = 10;  // RAdam switches to rectified steps at step 6
constexpr std::uint64_t kSeed = 2024;
constexpr std::uint32_t kOptimizerFormat = 2;  // what these files were written in
constexpr std::uint32_t kRecordFormat = 1;     // the run record's, shard record's and manifest's

const char* write_dir() { return std::getenv("ADAMX_WRITE_CHECKPOINTS_V2"); }
fs::path data_dir() { return fs::path(ADAMX_TEST_DATA_DIR) / "checkpoints_v2"; }

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.is_open()) << "cannot open " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The u32 (little-endian) version after the first 8-byte `magic` at or after
// `from` in `bytes` (every adamx file and block starts so); `at` receives
// where the magic is.
std::uint32_t version_after(const std::string& bytes, const std::string& magic, std::size_t from = 0,
                            std::size_t* at = nullptr) {
  const std::size_t found = bytes.find(magic, from);
  if (found == std::string::npos || found + 12 > bytes.size()) {
    ADD_FAILURE() << "no '" << magic << "' block";
    return 0;
  }
  if (at != nullptr) *at = found;
  std::uint32_t version = 0;
  for (int i = 3; i >= 0; --i)
    version = (version << 8) | static_cast<unsigned char>(bytes[found + 8 + static_cast<std::size_t>(i)]);
  return version;
}

// The version of a file that must start with `magic`.
std::uint32_t leading_version(const std::string& bytes, const std::string& magic) {
  std::size_t at = 1;
  const std::uint32_t version = version_after(bytes, magic, 0, &at);
  EXPECT_EQ(at, 0u) << "the file does not start with '" << magic << "'";
  return version;
}

// Two groups of small tensors in every regime, both storage orders.
std::vector<GroupSpec> small_model() {
  return {
      {"layer0", {{"weight", 3, 4, true, Regime::ordinary}, {"bias", 4, 1, false, Regime::sparse}}},
      {"layer1", {{"w", 2, 5, false, Regime::large}, {"tiny", 3, 1, false, Regime::tiny}}},
  };
}

// A model trained for kSteps steps (options set by `configure` after
// add_group, through the setters).
template <class Opt>
struct Trained {
  using Scalar = typename Opt::scalar_type;
  template <class Configure>
  Trained(std::vector<GroupSpec> groups, Configure configure) : model(std::move(groups), kSeed) {
    model.add_groups(opt);
    configure(opt);
    for (int step = 0; step < kSteps; ++step) model.step(opt);
  }
  Model<Scalar> model;
  Opt opt;
};

// An optimizer checkpoint file: written from, or loaded and compared with,
// today's training.
template <class Opt, class Configure>
void check_optimizer_file(const std::string& file, Configure configure) {
  const Trained<Opt> trained(small_model(), configure);
  if (const char* dir = write_dir()) {
    adamx::save_checkpoint(trained.opt, fs::path(dir) / file);
    return;
  }
  const fs::path path = data_dir() / file;
  EXPECT_EQ(leading_version(read_bytes(path), "ADAMXCKP"), kOptimizerFormat);

  Model<typename Opt::scalar_type> model(small_model(), kSeed);
  Opt loaded;
  model.add_groups(loaded);  // default options: the file's replace them
  adamx::load_checkpoint(loaded, path);
  EXPECT_TRUE(loaded.state() == trained.opt.state()) << file << " does not hold today's state";
}

TEST(CheckpointV2Files, AdamXFloatTwoGroupsAmsgradOnOne) {
  check_optimizer_file<adamx::AdamX<float>>("adamx_float.ckpt", [](auto& opt) {
    opt.set_weight_decay(0, 1e-2);
    opt.set_amsgrad(1, true);
    opt.set_lr(1, 3e-3);
  });
}
TEST(CheckpointV2Files, AdamDouble) {
  check_optimizer_file<adamx::Adam<double>>("adam_double.ckpt", [](auto& opt) {
    opt.set_maximize(0, true);
    opt.set_weight_decay(0, 1e-2);
  });
}
TEST(CheckpointV2Files, AdamWFloat) {
  check_optimizer_file<adamx::AdamW<float>>("adamw_float.ckpt", [](auto&) {});
}
TEST(CheckpointV2Files, AdaModBfloat16) {
  check_optimizer_file<adamx::AdaMod<Eigen::bfloat16>>("adamod_bfloat16.ckpt",
                                                        [](auto& opt) { opt.set_beta_step(0, 0.9); });
}
TEST(CheckpointV2Files, RAdamHalf) {
  check_optimizer_file<adamx::RAdam<Eigen::half>>("radam_half.ckpt", [](auto& opt) { opt.set_betas(1, 0.8, 0.99); });
}
TEST(CheckpointV2Files, AdaBoundDoubleAmsbound) {
  check_optimizer_file<adamx::AdaBound<double>>("adabound_double.ckpt", [](auto& opt) {
    opt.set_amsgrad(0, true);
    opt.set_final_lr(1, 0.05);
  });
}

// A schedule state as text: every name, every double by its bits.
std::string flatten(const adamx::ScheduleState& s) {
  std::string out = s.kind + "{";
  for (const auto& [name, value] : s.settings) out += name + "=" + std::to_string(recorded_model::bits_of(value)) + ",";
  for (const auto& [name, value] : s.values) out += name + "=" + std::to_string(recorded_model::bits_of(value)) + ",";
  for (const auto& [name, value] : s.counters) out += name + "=" + std::to_string(value) + ",";
  for (const adamx::ScheduleState& child : s.children) out += flatten(child);
  return out + "}";
}

// A run: AdamX over float with a StepLR and two counters.
TEST(CheckpointV2Files, RunWithScheduleAndCounters) {
  using Opt = adamx::AdamX<float>;
  Model<float> model(small_model(), kSeed);
  Opt opt;
  model.add_groups(opt);
  adamx::StepLR schedule(3e-3, 3, 0.5);
  std::int64_t step = 0, epoch = 0;
  for (int i = 0; i < kSteps; ++i) {
    schedule.apply(opt);
    model.step(opt);
    schedule.step();
    ++step;
    epoch = step / 4;
  }
  const std::string file = "run_adamx_float.run";
  if (const char* dir = write_dir()) {
    adamx::save_run(opt, model.param_views(), {{"lr", schedule}}, {{"step", step}, {"epoch", epoch}},
                    fs::path(dir) / file);
    return;
  }
  const fs::path path = data_dir() / file;
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(leading_version(bytes, "ADAMXRUN"), kRecordFormat);
  EXPECT_EQ(version_after(bytes, "ADAMXCKP"), kOptimizerFormat);

  Model<float> fresh(small_model(), kSeed + 1);  // other parameters: the file's replace them
  Opt loaded;
  fresh.add_groups(loaded);
  adamx::StepLR loaded_schedule(3e-3, 3, 0.5);
  std::int64_t loaded_step = 0, loaded_epoch = 0;
  adamx::load_run(loaded, fresh.param_views(), {{"lr", loaded_schedule}},
                  {{"step", loaded_step}, {"epoch", loaded_epoch}}, path);
  EXPECT_TRUE(recorded_model::same_parameters(fresh, model));
  EXPECT_TRUE(loaded.state() == opt.state());
  EXPECT_EQ(flatten(loaded_schedule.state()), flatten(schedule.state()));
  EXPECT_EQ(loaded_step, step);
  EXPECT_EQ(loaded_epoch, epoch);
}

// The sharded model: a group of one block and a ragged tail, and a group of
// two small tensors (shards are cut at block boundaries, and every tensor
// starts a block): each rank holds part of each group.
std::vector<GroupSpec> sharded_model() {
  return {{"big", {{"w", 4096 + 24, 1, false, Regime::ordinary}}},
          {"small", {{"a", 6, 1, false, Regime::large}, {"b", 4, 1, false, Regime::sparse}}}};
}

template <class Array>
bool same_segment(const Array& part, const Array& whole, Eigen::Index start) {
  if (part.size() == 0) return whole.size() == 0;
  return whole.size() >= start + part.size() &&
         std::memcmp(part.data(), whole.data() + start, sizeof(part[0]) * static_cast<std::size_t>(part.size())) == 0;
}

TEST(CheckpointV2Files, ShardedSetOfTwoRanksWithManifest) {
  using Opt = adamx::AdamX<float>;
  const Trained<Opt> trained(sharded_model(), [](Opt& opt) { opt.set_amsgrad(1, true); });
  const std::string name = "sharded_adamx_float";
  if (const char* dir = write_dir()) {
    adamx_test::TempDir temp;
    adamx::save_checkpoint(trained.opt, temp / "whole.ckpt");
    adamx::split_checkpoint(temp / "whole.ckpt", fs::path(dir) / name, 2);
    return;
  }
  const fs::path prefix = data_dir() / name;
  EXPECT_EQ(leading_version(read_bytes(adamx::shard_manifest_path(prefix, 2)), "ADAMXMAN"), kRecordFormat);
  const std::vector<fs::path> files = adamx::shard_checkpoint_files(prefix, 2);
  ASSERT_EQ(files.size(), 2u);

  adamx::ShardLayout layout;
  layout.ranks = 2;
  for (const GroupSpec& group : sharded_model()) {
    std::vector<adamx::ShardLayout::Tensor> tensors;
    for (const auto& t : group.tensors) tensors.push_back({t.name, t.rows, t.cols, t.row_major});
    layout.groups.push_back(adamx::make_shard_layout_group(group.name, tensors, 2));
  }
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const std::string bytes = read_bytes(files[static_cast<std::size_t>(rank)]);
    EXPECT_EQ(leading_version(bytes, "ADAMXSHD"), kRecordFormat);
    EXPECT_EQ(version_after(bytes, "ADAMXCKP"), kOptimizerFormat);

    Opt local;
    std::vector<adamx::GroupShard> shards;
    for (const GroupSpec& group : sharded_model()) {
      std::vector<Eigen::Index> sizes;
      std::vector<std::string> names;
      for (const auto& t : group.tensors) {
        sizes.push_back(t.size());
        names.push_back(t.name);
      }
      shards.push_back(adamx::shard_group(sizes, 2)[static_cast<std::size_t>(rank)]);
      adamx::add_shard_group(local, shards.back(), Opt::Options{}, group.name, names);
    }
    adamx::load_shard_checkpoint(local, layout, rank, files[static_cast<std::size_t>(rank)]);
    // Each piece holds its slice of today's whole state; t, γ, h and the
    // options are the group's.
    for (std::size_t g = 0; g < shards.size(); ++g) {
      const auto& mine = local.state(g);
      const auto& whole = trained.opt.state(g);
      EXPECT_TRUE(mine.options == whole.options);
      EXPECT_EQ(mine.t, whole.t);
      EXPECT_EQ(recorded_model::bits_of(mine.gamma), recorded_model::bits_of(whole.gamma));
      EXPECT_EQ(recorded_model::bits_of(mine.h), recorded_model::bits_of(whole.h));
      for (std::size_t k = 0; k < shards[g].pieces.size(); ++k) {
        const adamx::ShardPiece& piece = shards[g].pieces[k];
        const auto& part = mine.tensors.at(k);
        const auto& full = whole.tensors.at(piece.tensor);
        for (int s = 0; s < part.kSlots; ++s)
          EXPECT_TRUE(same_segment(part.slot(s), full.slot(s), piece.start))
              << "group " << g << " piece " << k << ": " << part.slot_names[s];
      }
    }
    for (const adamx::GroupShard& shard : shards) EXPECT_FALSE(shard.pieces.empty()) << "meant to hold part of every group";
  }

  // Merged by the conversion API into one checkpoint of the whole model.
  adamx_test::TempDir temp;
  adamx::merge_sharded_checkpoint(prefix, 2, temp / "merged.ckpt");
  Model<float> model(sharded_model(), kSeed);
  Opt merged;
  model.add_groups(merged);
  adamx::load_checkpoint(merged, temp / "merged.ckpt");
  EXPECT_TRUE(merged.state() == trained.opt.state());
}

}  // namespace
