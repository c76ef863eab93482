// File errors of checkpoints, sharded checkpoints and the adamx_reshard tool
// name the file and end with the operating system's reason (strerror), and
// a failed save leaves no file behind and the previous file as it was.
//
// The failures are real ones the tests can cause as root (which ignores
// directory permissions): a file-size limit (RLIMIT_FSIZE, "File too large"),
// a full device (a ".partial" name that is a symbolic link to /dev/full, "No
// space left on device"), a path whose parent is a regular file ("Not a
// directory"), a missing file, a directory read as a file ("Is a
// directory") and a rename over a non-empty directory.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

using adamx_test::TempDir;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// An optimizer whose checkpoint is about 160 KB: larger than the size limit
// below, so that a save fails part-way through the moments.
struct Model {
  Eigen::VectorXf w = Eigen::VectorXf::LinSpaced(20000, -1.0f, 1.0f);
  Eigen::VectorXf g = Eigen::VectorXf::Constant(20000, 0.25f);
  adamx::AdamX<float> opt;
  Model() {
    opt.add_group({w}, {}, "fc", {"weight"});
    opt.step({{w}}, {{g}});
  }
};

// The message of the CheckpointError `action` throws ("" if none).
template <class Action>
std::string checkpoint_error(Action&& action) {
  try {
    action();
  } catch (const adamx::CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no CheckpointError was thrown";
  return {};
}

::testing::AssertionResult HasReason(const std::string& message, int error, const std::string& file) {
  const std::string reason = std::strerror(error);
  if (message.find(reason) == std::string::npos)
    return ::testing::AssertionFailure() << "no \"" << reason << "\" in: " << message;
  if (message.find(file) == std::string::npos)
    return ::testing::AssertionFailure() << "no '" << file << "' in: " << message;
  return ::testing::AssertionSuccess();
}

// For its lifetime, files this process writes may not grow past `bytes`,
// and the signal such a write raises is ignored, so the write fails with
// EFBIG instead of ending the process.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    ok_ = setrlimit(RLIMIT_FSIZE, &limit) == 0;
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_handler_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  void (*previous_handler_)(int) = SIG_DFL;
  bool ok_ = false;
};

TEST(CheckpointFileErrors, SaveBeyondTheFileSizeLimitSaysFileTooLargeAndKeepsThePreviousFile) {
  TempDir dir;
  Model model;
  write_bytes(dir / "ckpt", "the previous checkpoint");
  std::string message;
  {
    FileSizeLimit limit(4096);
    ASSERT_TRUE(limit.ok());
    message = checkpoint_error([&] { adamx::save_checkpoint(model.opt, dir / "ckpt"); });
  }
  EXPECT_TRUE(HasReason(message, EFBIG, "ckpt.partial"));
  EXPECT_EQ(read_bytes(dir / "ckpt"), "the previous checkpoint");
  EXPECT_EQ(dir.files(), std::vector<std::string>{"ckpt"});
  // Without the limit the same save works.
  adamx::save_checkpoint(model.opt, dir / "ckpt");
  adamx::AdamX<float> loaded;
  loaded.add_group({model.w}, {}, "fc", {"weight"});
  adamx::load_checkpoint(loaded, dir / "ckpt");
  EXPECT_TRUE(loaded.state() == model.opt.state());
}

TEST(CheckpointFileErrors, SaveToAFullDeviceSaysNoSpaceAndRemovesThePartialFile) {
  TempDir dir;
  Model model;
  // The save writes "ckpt.partial": here a link to the always-full device.
  fs::create_symlink("/dev/full", dir / "ckpt.partial");
  const std::string message = checkpoint_error([&] { adamx::save_checkpoint(model.opt, dir / "ckpt"); });
  EXPECT_TRUE(HasReason(message, ENOSPC, "ckpt.partial"));
  EXPECT_TRUE(dir.files().empty());
}

TEST(CheckpointFileErrors, SaveUnderARegularFileSaysNotADirectory) {
  TempDir dir;
  Model model;
  write_bytes(dir / "file", "x");
  const std::string message =
      checkpoint_error([&] { adamx::save_checkpoint(model.opt, dir / "file" / "ckpt"); });
  EXPECT_TRUE(HasReason(message, ENOTDIR, "ckpt.partial"));
  EXPECT_NE(message.find("cannot create"), std::string::npos) << message;
  EXPECT_EQ(dir.files(), std::vector<std::string>{"file"});
}

TEST(CheckpointFileErrors, RenameOverANonEmptyDirectorySaysWhyAndRemovesThePartialFile) {
  TempDir dir;
  Model model;
  fs::create_directories(dir / "ckpt" / "inside");
  const std::string message = checkpoint_error([&] { adamx::save_checkpoint(model.opt, dir / "ckpt"); });
  // rename(2) over a directory fails with EISDIR.
  EXPECT_TRUE(HasReason(message, EISDIR, "ckpt"));
  EXPECT_NE(message.find("renaming"), std::string::npos) << message;
  EXPECT_EQ(dir.files(), std::vector<std::string>{"ckpt"});
  EXPECT_TRUE(fs::is_directory(dir / "ckpt" / "inside"));
}

TEST(CheckpointFileErrors, LoadSaysWhyAFileCannotBeOpenedOrRead) {
  TempDir dir;
  Model model;
  const auto state = model.opt.state();
  write_bytes(dir / "file", "x");
  fs::create_directories(dir / "directory");
  EXPECT_TRUE(HasReason(checkpoint_error([&] { adamx::load_checkpoint(model.opt, dir / "absent"); }), ENOENT,
                        "absent"));
  EXPECT_TRUE(HasReason(checkpoint_error([&] { adamx::load_checkpoint(model.opt, dir / "file" / "ckpt"); }),
                        ENOTDIR, "ckpt"));
  // A directory opens, but reading it fails: that is not a truncated file.
  const std::string message = checkpoint_error([&] { adamx::load_checkpoint(model.opt, dir / "directory"); });
  EXPECT_TRUE(HasReason(message, EISDIR, "directory"));
  EXPECT_EQ(message.find("truncated"), std::string::npos) << message;
  EXPECT_TRUE(model.opt.state() == state);
}

// ---- sharded checkpoints ----------------------------------------------------

TEST(ShardedCheckpointFileErrors, SaveBeyondTheFileSizeLimitSaysFileTooLarge) {
  TempDir dir;
  Model model;
  adamx::save_checkpoint(model.opt, dir / "whole");
  std::string message;
  {
    FileSizeLimit limit(4096);
    ASSERT_TRUE(limit.ok());
    message = checkpoint_error([&] { adamx::split_checkpoint(dir / "whole", dir / "shards", 2); });
  }
  EXPECT_TRUE(HasReason(message, EFBIG, "shards.0-of-2."));
  EXPECT_EQ(dir.files(), std::vector<std::string>{"whole"});
}

TEST(ShardedCheckpointFileErrors, ReshardIntoARegularFileOrFromAMissingShardSaysWhy) {
  TempDir dir;
  Model model;
  adamx::save_checkpoint(model.opt, dir / "whole");
  adamx::split_checkpoint(dir / "whole", dir / "shards", 2);
  write_bytes(dir / "file", "x");
  const std::vector<std::string> before = dir.files();
  EXPECT_TRUE(HasReason(
      checkpoint_error([&] { adamx::reshard_checkpoint(dir / "shards", 2, dir / "file" / "out", 3); }), ENOTDIR,
      "cannot create the directory '" + (dir / "file").string() + "'"));
  const fs::path second = adamx::shard_checkpoint_files(dir / "shards", 2)[1];
  fs::remove(second);
  EXPECT_TRUE(HasReason(checkpoint_error([&] { adamx::reshard_checkpoint(dir / "shards", 2, dir / "out", 3); }),
                        ENOENT, "shards.1-of-2"));
  // A prefix whose directory cannot be listed is not "no checkpoint".
  EXPECT_TRUE(HasReason(checkpoint_error([&] { adamx::merge_sharded_checkpoint(dir / "file" / "shards", dir / "out"); }),
                        ENOTDIR, "file"));
  std::vector<std::string> after = before;
  after.erase(std::find(after.begin(), after.end(), second.filename().string()));
  EXPECT_EQ(dir.files(), after);
}

#if defined(ADAMX_RESHARD_TOOL)
// Runs the tool through the shell; returns its exit status and its output.
int run_tool(const std::string& shell_prefix, const std::string& arguments, std::string& output) {
  const std::string command = shell_prefix + "\"" + ADAMX_RESHARD_TOOL + "\" " + arguments + " 2>&1";
  output.clear();
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ReshardToolFileErrors, ExitsWithStatusOneAndTheReason) {
  TempDir dir;
  Model model;
  adamx::save_checkpoint(model.opt, dir / "whole");
  write_bytes(dir / "file", "x");
  const std::string d = (dir / "").string();
  std::string output;
  EXPECT_EQ(run_tool("", "split " + d + "whole " + d + "file/out 2", output), 1);
  EXPECT_TRUE(HasReason(output, ENOTDIR, "cannot create the directory '" + d + "file'"));
  EXPECT_EQ(run_tool("", "split " + d + "absent " + d + "out 2", output), 1);
  EXPECT_TRUE(HasReason(output, ENOENT, "absent"));
  EXPECT_EQ(run_tool("", "list " + d + "file/prefix", output), 1);
  EXPECT_TRUE(HasReason(output, ENOTDIR, "file"));
  // A file-size limit of 8 blocks (4 KiB or 8 KiB, depending on the shell):
  // the tool reports the failed write, it is not killed by SIGXFSZ.
  EXPECT_EQ(run_tool("ulimit -f 8 && ", "split " + d + "whole " + d + "out 2", output), 1);
  EXPECT_TRUE(HasReason(output, EFBIG, "out.0-of-2."));
  EXPECT_EQ(dir.files(), (std::vector<std::string>{"file", "whole"}));
}
#endif

}  // namespace
