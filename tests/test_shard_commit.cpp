// The commit point of sharded checkpoints (adamx/shard_manifest.hpp): a
// conversion publishes all of its files or none. Every file operation of a
// re-sharding and of a split is made to fail in turn (the library's
// fault-injection seam, detail::file_fault_hook), and conversions are killed
// with SIGKILL at seeded moments; after each, the checkpoint that was under
// the output prefix still loads bit for bit, or the new one loads whole, and
// no file is left but those docs/checkpoints.md says a crash may leave. Also:
// the manifest is required and checked, and manifest-less sets of older
// adamx versions still load (legacy) and are replaced by a conversion.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "file_faults.hpp"
#include "shard_model.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using adamx::detail::FileOperation;
using adamx_test::Faults;
using adamx_test::TempDir;
using Opt = adamx::AdamX<float>;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The whole model's state after `steps` steps, as an ordinary checkpoint.
std::string save_state(const fs::path& path, int steps) {
  const shard_model::Reference<Opt> reference(steps);
  adamx::save_checkpoint(reference.opt, path);
  return read_bytes(path);
}

// The sharded checkpoint of `ranks` ranks under `prefix`, merged: the
// ordinary checkpoint's bytes (merging is exact: test_sharded_checkpoint.cpp).
std::string merged(TempDir& dir, const fs::path& prefix, int ranks) {
  const fs::path out = dir / "merged.check";
  adamx::merge_sharded_checkpoint(prefix, ranks, out);
  std::string bytes = read_bytes(out);
  fs::remove(out);
  return bytes;
}

// The names of the committed set of `ranks` ranks under `prefix`: its
// manifest and the files the manifest names.
std::vector<std::string> committed_names(const fs::path& prefix, int ranks) {
  std::vector<std::string> names{adamx::shard_manifest_path(prefix, ranks).filename().string()};
  for (const fs::path& file : adamx::shard_checkpoint_files(prefix, ranks)) names.push_back(file.filename().string());
  return names;
}

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

// The conversions under test, from the committed set "run" (2 ranks, state
// B) or the ordinary "b.ckpt" into "out" (3 ranks).
struct Conversion {
  const char* name;
  std::function<void(TempDir&)> run;
};
const Conversion kConversions[] = {
    {"reshard", [](TempDir& dir) { adamx::reshard_checkpoint(dir / "run", 2, dir / "out", 3); }},
    {"split", [](TempDir& dir) { adamx::split_checkpoint(dir / "b.ckpt", dir / "out", 3); }},
};

// "a.ckpt" (state A, 5 steps) split into "out" (the checkpoint to keep),
// "b.ckpt" (state B, 9 steps) split into "run" (the input).
struct TwoCheckpoints {
  std::string a, b;
  explicit TwoCheckpoints(TempDir& dir) {
    a = save_state(dir / "a.ckpt", 5);
    b = save_state(dir / "b.ckpt", 9);
    adamx::split_checkpoint(dir / "a.ckpt", dir / "out", 3);
    adamx::split_checkpoint(dir / "b.ckpt", dir / "run", 2);
  }
};

// Every operation of each conversion fails in turn. A failure before the
// manifest's rename refuses the conversion with the OS reason and changes
// nothing: "out" still loads state A and the directory is as it was. A
// failure after it (removing the previous files) does not fail the
// conversion: "out" loads state B and only the file that could not be
// removed is left over.
TEST(ShardCommit, EveryFailedOperationPublishesAllOrNothing) {
  for (const Conversion& conversion : kConversions) {
    SCOPED_TRACE(conversion.name);
    int operations = 0;
    std::map<FileOperation, int> kinds;
    {
      TempDir dir(std::string(conversion.name) + "_count");
      TwoCheckpoints setup(dir);
      Faults faults(-1);
      conversion.run(dir);
      operations = Faults::count;
      kinds = Faults::seen;
    }
    // Every kind of operation occurs, so every kind is made to fail below.
    for (const FileOperation kind : {FileOperation::create, FileOperation::write, FileOperation::sync,
                                     FileOperation::close, FileOperation::rename, FileOperation::remove})
      EXPECT_GE(kinds[kind], 1) << "operation kind " << static_cast<int>(kind) << " never happened";
    ASSERT_GE(operations, 10);
    RecordProperty(std::string(conversion.name) + "_file_operations", operations);
    for (int k = 0; k <= operations; ++k) {
      SCOPED_TRACE("failing operation " + std::to_string(k) + " of " + std::to_string(operations));
      TempDir dir(std::string(conversion.name) + "_faults");
      TwoCheckpoints setup(dir);
      const std::vector<std::string> before = dir.files();
      const std::vector<std::string> old_set = committed_names(dir / "out", 3);
      bool refused = false;
      std::string message;
      {
        Faults faults(k);
        try {
          conversion.run(dir);
        } catch (const adamx::CheckpointError& e) {
          refused = true;
          message = e.what();
        }
      }
      const bool failed = k < operations;
      if (refused) {
        ASSERT_TRUE(failed);
        EXPECT_NE(Faults::failed_operation, FileOperation::remove);
        EXPECT_NE(message.find(std::strerror(EIO)), std::string::npos) << message;
        EXPECT_EQ(merged(dir, dir / "out", 3), setup.a);
        EXPECT_EQ(dir.files(), before);
      } else {
        ASSERT_TRUE(!failed || Faults::failed_operation == FileOperation::remove)
            << "operation " << k << " failed and the conversion succeeded";
        EXPECT_EQ(merged(dir, dir / "out", 3), setup.b);
        std::vector<std::string> expected = before;
        for (const std::string& name : old_set) expected.erase(std::find(expected.begin(), expected.end(), name));
        for (const std::string& name : committed_names(dir / "out", 3)) expected.push_back(name);
        if (failed) expected.push_back(Faults::failed_path.filename().string());
        EXPECT_EQ(dir.files(), sorted(expected));
      }
      // The input is untouched either way.
      EXPECT_EQ(merged(dir, dir / "run", 2), setup.b);
    }
  }
}

// A conversion killed (SIGKILL) at seeded moments spanning its duration:
// "out" loads state A or state B, whole; besides the two sets only what a
// crash may leave is there (files not named by the manifest, a manifest
// ".partial"), never read; the next conversion into "out" removes them.
TEST(ShardCommit, KilledConversionLeavesOneWholeCheckpoint) {
  TempDir dir("kill");
  TwoCheckpoints setup(dir);
  const std::vector<std::string> fixed = {"a.ckpt", "b.ckpt"};
  // How long one conversion takes here, to spread the kills over it.
  const auto start = std::chrono::steady_clock::now();
  adamx::reshard_checkpoint(dir / "run", 2, dir / "timing", 3);
  const auto duration = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  std::mt19937 random(20261126);
  std::uniform_int_distribution<long> delay(0, static_cast<long>(duration.count()) * 3 / 2 + 1);
  int kept = 0, published = 0;  // kills before the commit, conversions that committed
  for (int kill = 0; kill < 24; ++kill) {
    // Alternate the state being written, so that each kill replaces the
    // other one: from "run" (state B) or from "a.ckpt" (state A).
    const bool write_b = kill % 2 == 0;
    const std::string previous = merged(dir, dir / "out", 3);
    const pid_t child = fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) {
      try {
        if (write_b)
          adamx::reshard_checkpoint(dir / "run", 2, dir / "out", 3);
        else
          adamx::split_checkpoint(dir / "a.ckpt", dir / "out", 3);
      } catch (...) {
        _exit(3);
      }
      _exit(0);
    }
    const long wait = delay(random);
    std::this_thread::sleep_for(std::chrono::microseconds(wait));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
        << "the conversion failed on its own";
    SCOPED_TRACE("kill " + std::to_string(kill) + " after " + std::to_string(wait) + " us");
    const std::string now = merged(dir, dir / "out", 3);
    EXPECT_TRUE(now == setup.a || now == setup.b);
    // Killed before the commit: the previous checkpoint is what loads.
    const std::string& target = write_b ? setup.b : setup.a;
    if (now != target) {
      EXPECT_EQ(now, previous);
    }
    if (target != previous) (now == target ? published : kept) += 1;
    // Nothing else but the uncommitted leftovers a crash may leave.
    const std::vector<std::string> keep = committed_names(dir / "out", 3);
    const std::vector<std::string> input = committed_names(dir / "run", 2);
    const std::vector<std::string> timing = committed_names(dir / "timing", 3);
    for (const std::string& name : dir.files()) {
      if (std::find(fixed.begin(), fixed.end(), name) != fixed.end() ||
          std::find(keep.begin(), keep.end(), name) != keep.end() ||
          std::find(input.begin(), input.end(), name) != input.end() ||
          std::find(timing.begin(), timing.end(), name) != timing.end())
        continue;
      const bool leftover_file = name.rfind("out.", 0) == 0 && name.find("-of-3.") != std::string::npos &&
                                 name.size() == std::string("out.0-of-3.").size() + 16;
      EXPECT_TRUE(leftover_file || name == "out.manifest-of-3.partial") << "unexpected file " << name;
    }
  }
  // How the kills fell (timing-dependent, so recorded rather than asserted).
  RecordProperty("kills_before_commit", kept);
  RecordProperty("conversions_committed", published);
  // A conversion that completes removes every leftover.
  adamx::reshard_checkpoint(dir / "run", 2, dir / "out", 3);
  std::vector<std::string> expected = fixed;
  for (const fs::path& prefix : {dir / "out", dir / "timing"})
    for (const std::string& name : committed_names(prefix, 3)) expected.push_back(name);
  for (const std::string& name : committed_names(dir / "run", 2)) expected.push_back(name);
  EXPECT_EQ(dir.files(), sorted(expected));
  EXPECT_EQ(merged(dir, dir / "out", 3), setup.b);
}

// The manifest is required once it exists: a corrupt one is refused (the
// legacy names are not tried instead), and a file that is not the one it
// records — same name, another size or checksum — is refused.
TEST(ShardCommit, ManifestIsCheckedAndRequired) {
  TempDir dir("manifest");
  TwoCheckpoints setup(dir);
  const fs::path manifest = adamx::shard_manifest_path(dir / "run", 2);
  const std::string good = read_bytes(manifest);
  const auto expect_refused = [&](const std::string& needle) {
    try {
      adamx::merge_sharded_checkpoint(dir / "run", 2, dir / "never.ckpt");
      ADD_FAILURE() << "accepted";
    } catch (const adamx::CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "never.ckpt"));
  };
  // A flipped bit in the manifest's body.
  std::string bytes = good;
  bytes[20] = static_cast<char>(bytes[20] ^ 0x04);
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << bytes;
  expect_refused("manifest checksum mismatch");
  // A well-formed manifest recording another size for rank 1's file.
  adamx::detail::ShardManifest edited;
  {
    std::ofstream(manifest, std::ios::binary | std::ios::trunc) << good;
    edited = adamx::detail::read_shard_manifest(dir / "run", 2, "test");
    edited.files[1].bytes += 1;
    std::ofstream(manifest, std::ios::binary | std::ios::trunc) << adamx::detail::encode_shard_manifest(edited);
  }
  expect_refused("it is not the file that save wrote");
  // ... or another checksum.
  edited.files[1].bytes -= 1;
  edited.files[1].last_crc ^= 1;
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << adamx::detail::encode_shard_manifest(edited);
  expect_refused("it is not the file that save wrote");
  // A manifest naming a file outside its save.
  edited.files[1].last_crc ^= 1;
  edited.files[1].name = "b.ckpt";
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << adamx::detail::encode_shard_manifest(edited);
  expect_refused("rank 1's file is named 'b.ckpt'");
  // Restored, it loads.
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << good;
  EXPECT_EQ(merged(dir, dir / "run", 2), setup.b);
}

// A set without a manifest, as older adamx versions wrote it
// ("<prefix>.<r>-of-<N>"), is found and loaded as legacy; a conversion into
// the same prefix and rank count commits a manifest and removes the legacy
// files.
TEST(ShardCommit, LegacySetsLoadAndAreReplaced) {
  TempDir dir("legacy");
  TwoCheckpoints setup(dir);
  for (int r = 0; r < 2; ++r)
    fs::copy_file(adamx::shard_checkpoint_files(dir / "run", 2)[static_cast<std::size_t>(r)],
                  adamx::shard_checkpoint_path(dir / "old", r, 2));
  std::vector<int> legacy;
  EXPECT_EQ(adamx::detail::find_shard_sets(dir / "old", &legacy), std::vector<int>{2});
  EXPECT_EQ(legacy, std::vector<int>{2});
  EXPECT_EQ(adamx::shard_checkpoint_files(dir / "old", 2)[1], adamx::shard_checkpoint_path(dir / "old", 1, 2));
  EXPECT_EQ(merged(dir, dir / "old", 2), setup.b);

  adamx::reshard_checkpoint(dir / "old", 2, dir / "old", 2);
  legacy.clear();
  EXPECT_EQ(adamx::detail::find_shard_sets(dir / "old", &legacy), std::vector<int>{2});
  EXPECT_TRUE(legacy.empty());
  EXPECT_FALSE(fs::exists(adamx::shard_checkpoint_path(dir / "old", 0, 2)));
  EXPECT_FALSE(fs::exists(adamx::shard_checkpoint_path(dir / "old", 1, 2)));
  EXPECT_EQ(merged(dir, dir / "old", 2), setup.b);
}

// A conversion creates the directory of its output prefix, as sharded saves
// do; one it cannot create (its parent is a regular file) is refused with the
// OS's reason, after the inputs were checked, and nothing is written.
TEST(ShardCommit, ConversionsCreateTheOutputDirectory) {
  TempDir dir("directories");
  TwoCheckpoints setup(dir);
  adamx::reshard_checkpoint(dir / "run", 2, dir / "new" / "deeper" / "out", 3);
  EXPECT_EQ(merged(dir, dir / "new" / "deeper" / "out", 3), setup.b);
  adamx::merge_sharded_checkpoint(dir / "run", 2, dir / "merged" / "one.ckpt");
  EXPECT_EQ(read_bytes(dir / "merged" / "one.ckpt"), setup.b);

  std::ofstream(dir / "plain") << "a file, not a directory";
  const std::vector<std::string> before = dir.files();  // a file under "plain" cannot exist
  for (const Conversion& conversion : {Conversion{"split", [](TempDir& d) {
                                                    adamx::split_checkpoint(d / "b.ckpt", d / "plain" / "out", 2);
                                                  }},
                                       Conversion{"reshard", [](TempDir& d) {
                                                    adamx::reshard_checkpoint(d / "run", 2, d / "plain" / "out", 3);
                                                  }}}) {
    SCOPED_TRACE(conversion.name);
    try {
      conversion.run(dir);
      ADD_FAILURE() << "a directory under a regular file was accepted";
    } catch (const adamx::CheckpointError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("cannot create the directory"), std::string::npos) << message;
      EXPECT_NE(message.find(std::strerror(ENOTDIR)), std::string::npos) << message;
    }
    EXPECT_EQ(dir.files(), before);
    EXPECT_TRUE(fs::is_regular_file(dir / "plain"));
  }
}

}  // namespace
