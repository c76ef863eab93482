// Sharded saves from MPI ranks (adamx::mpi::save_sharded_checkpoint) publish
// all files or none (the manifest, adamx/shard_manifest.hpp), under mpirun
// with two ranks or more (tests/CMakeLists.txt). Every file operation of a
// save on every rank is made to fail in turn (detail::file_fault_hook, set
// on that rank only): every rank throws MpiError, the failing one with the
// OS reason, and the checkpoint that was under the prefix loads bit for bit
// with nothing else left — or, for a failure after the commit (removing the
// previous files), the save succeeds and only that file is left over. A
// missing directory is created; one that cannot be is refused on every rank
// with the OS reason, nothing changed, nothing aborted.
#include <gtest/gtest.h>
#include <mpi.h>

#include <adamx/adamx.hpp>
#include <adamx/mpi.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "file_faults.hpp"
#include "mpi_util.hpp"
#include "shard_model.hpp"

namespace {

namespace fs = std::filesystem;
using adamx::detail::FileOperation;
using adamx_test::Faults;
using shard_model::Tensors;
using Sharded = adamx::mpi::AdamX<float>;

using mpi_util::world_rank;
using mpi_util::world_size;

// Rank `root`'s string on every rank.
std::string broadcast(std::string text, int root) {
  int length = static_cast<int>(text.size());
  MPI_Bcast(&length, 1, MPI_INT, root, MPI_COMM_WORLD);
  text.resize(static_cast<std::size_t>(length));
  MPI_Bcast(text.data(), length, MPI_CHAR, root, MPI_COMM_WORLD);
  return text;
}

// A directory every rank sees, emptied by rank 0 between barriers.
fs::path fresh_directory(const std::string& what) {
  const fs::path dir =
      fs::temp_directory_path() / ("adamx_test_mpi_commit_np" + std::to_string(world_size()) + "_" + what);
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return dir;
}

void remove_directory(const fs::path& dir) {
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) fs::remove_all(dir);
  MPI_Barrier(MPI_COMM_WORLD);
}

// Rank 0's listing of `dir` (names, sorted), on every rank.
std::vector<std::string> listing(const fs::path& dir) {
  std::string joined;
  if (world_rank() == 0) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) joined += name + "\n";
  }
  joined = broadcast(joined, 0);
  std::vector<std::string> names;
  for (std::size_t at = 0, end; (end = joined.find('\n', at)) != std::string::npos; at = end + 1)
    names.push_back(joined.substr(at, end - at));
  return names;
}

// The shared model sharded over the world after `steps` steps.
struct Model {
  Tensors<float> params = shard_model::initial_params<float>();
  Sharded opt{MPI_COMM_WORLD};
  explicit Model(int steps) {
    const std::vector<shard_model::GroupSpec> specs = shard_model::groups();
    for (std::size_t g = 0; g < specs.size(); ++g)
      opt.add_group(params[g], shard_model::options_of<Sharded::Local>(specs[g]), specs[g].name,
                    specs[g].tensor_names);
    Tensors<float> grads = shard_model::zeros<float>();
    std::vector<std::vector<adamx::TensorRef<float>>> p;
    std::vector<std::vector<adamx::ConstTensorRef<float>>> q;
    for (std::size_t g = 0; g < params.size(); ++g) {
      p.emplace_back(params[g].begin(), params[g].end());
      q.emplace_back(grads[g].begin(), grads[g].end());
    }
    for (int k = 1; k <= steps; ++k) {
      shard_model::global_gradient(k, grads);
      opt.step_global(p, q);
    }
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
};

// This rank's shard state as a fresh optimizer loads it from `prefix`.
std::vector<Sharded::Local::State> loaded(const fs::path& prefix) {
  Model fresh(0);
  adamx::mpi::load_sharded_checkpoint(fresh.opt, prefix);
  return fresh.opt.local().state();
}

// The manifest and files of the committed checkpoint under `prefix`.
std::vector<std::string> committed_names(const fs::path& prefix) {
  std::vector<std::string> names{adamx::shard_manifest_path(prefix, world_size()).filename().string()};
  for (const fs::path& file : adamx::shard_checkpoint_files(prefix, world_size()))
    names.push_back(file.filename().string());
  return names;
}

TEST(MpiShardCommit, EveryFailedOperationOnAnyRankPublishesAllOrNothing) {
  ASSERT_GE(world_size(), 2) << "needs two ranks or more";
  const fs::path dir = fresh_directory("faults");
  const fs::path prefix = dir / "ck";
  Model older(3);
  Model newer(7);
  const auto older_state = older.opt.local().state();
  const auto newer_state = newer.opt.local().state();
  ASSERT_FALSE(older_state == newer_state);

  // How many file operations a save over a previous one makes on each rank.
  int mine = 0;
  {
    adamx::mpi::save_sharded_checkpoint(older.opt, prefix);
    Faults faults(-1);
    adamx::mpi::save_sharded_checkpoint(newer.opt, prefix);
    mine = Faults::count;
    // Every kind of operation occurs on rank 0 (which also renames the
    // manifest), so every kind is made to fail below.
    for (const FileOperation kind : {FileOperation::create, FileOperation::write, FileOperation::sync,
                                     FileOperation::close, FileOperation::rename, FileOperation::remove})
      EXPECT_EQ(Faults::seen[kind] >= 1, world_rank() == 0 || kind != FileOperation::rename)
          << "operation kind " << static_cast<int>(kind);
  }
  std::vector<int> counts(static_cast<std::size_t>(world_size()));
  MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  // Rank 0 also writes the manifest: create, write, sync, close, rename.
  EXPECT_GE(counts[0], counts[1] + 5);
  for (int r = 0; r < world_size(); ++r)
    RecordProperty("file_operations_rank" + std::to_string(r), counts[static_cast<std::size_t>(r)]);

  for (int failing = 0; failing < world_size(); ++failing)
    for (int k = 0; k <= counts[static_cast<std::size_t>(failing)]; ++k) {
      SCOPED_TRACE("rank " + std::to_string(failing) + ", operation " + std::to_string(k));
      remove_directory(dir);
      fresh_directory("faults");
      adamx::mpi::save_sharded_checkpoint(older.opt, prefix);
      const std::vector<std::string> before = listing(dir);
      const std::vector<std::string> old_set = committed_names(prefix);
      bool refused = false;
      std::string message;
      {
        Faults faults(world_rank() == failing ? k : -1);
        try {
          adamx::mpi::save_sharded_checkpoint(newer.opt, prefix);
        } catch (const adamx::mpi::MpiError& e) {
          refused = true;
          message = e.what();
        }
      }
      int refusals = refused ? 1 : 0, all = 0;
      MPI_Allreduce(&refusals, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
      ASSERT_TRUE(all == 0 || all == world_size()) << "the ranks did not agree";
      const bool failed = k < counts[static_cast<std::size_t>(failing)];
      const int removal =
          broadcast(world_rank() == failing && failed && Faults::failed_operation == FileOperation::remove ? "1" : "0",
                    failing) == "1";
      const std::string failed_name = broadcast(Faults::failed_path.filename().string(), failing);
      if (refused) {
        ASSERT_TRUE(failed);
        EXPECT_FALSE(removal);
        const std::string expected = world_rank() == failing ? std::strerror(EIO) : "refused the call";
        EXPECT_NE(message.find(expected), std::string::npos) << message;
        EXPECT_TRUE(loaded(prefix) == older_state);
        EXPECT_EQ(listing(dir), before);
      } else {
        ASSERT_TRUE(!failed || removal) << "a failed operation went unreported";
        EXPECT_TRUE(loaded(prefix) == newer_state);
        std::vector<std::string> expected = before;
        for (const std::string& name : old_set) expected.erase(std::find(expected.begin(), expected.end(), name));
        for (const std::string& name : committed_names(prefix)) expected.push_back(name);
        if (failed) expected.push_back(failed_name);
        std::sort(expected.begin(), expected.end());
        EXPECT_EQ(listing(dir), expected);
      }
    }
  remove_directory(dir);
}

// A prefix in a directory that does not exist yet: it is created (by every
// rank at once, which must not trip over one another) and the save loads.
TEST(MpiShardCommit, MissingDirectoryIsCreated) {
  const fs::path dir = fresh_directory("mkdir");
  const fs::path prefix = dir / "runs" / "today" / "ck";
  Model model(4);
  adamx::mpi::save_sharded_checkpoint(model.opt, prefix);
  EXPECT_TRUE(loaded(prefix) == model.opt.local().state());
  remove_directory(dir);
}

// A directory that cannot be created (a regular file is in the way): every
// rank throws MpiError with the OS reason, no rank aborts, nothing changes.
TEST(MpiShardCommit, UncreatableDirectoryRefusedOnEveryRank) {
  const fs::path dir = fresh_directory("notdir");
  if (world_rank() == 0) std::ofstream(dir / "file") << "x";
  MPI_Barrier(MPI_COMM_WORLD);
  const std::vector<std::string> before = listing(dir);
  Model model(2);
  for (const fs::path& prefix : {dir / "file" / "ck", dir / "file" / "sub" / "ck"}) {
    SCOPED_TRACE(prefix.string());
    try {
      adamx::mpi::save_sharded_checkpoint(model.opt, prefix);
      ADD_FAILURE() << "saved under a regular file";
    } catch (const adamx::mpi::MpiError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("rank " + std::to_string(world_rank()) + ": "), std::string::npos) << message;
      EXPECT_NE(message.find("cannot create the directory"), std::string::npos) << message;
      EXPECT_NE(message.find(std::strerror(ENOTDIR)), std::string::npos) << message;
    }
    EXPECT_EQ(listing(dir), before);
  }
  remove_directory(dir);
}

}  // namespace
