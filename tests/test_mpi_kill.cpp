// Sharded saves from MPI ranks killed at seeded moments. mpi_save_child runs
// under mpirun (2 and 3 ranks) and saves the shared model (shard_model.hpp)
// under one prefix again and again; the whole job, mpirun and every rank, is
// killed with SIGKILL at moments spread over its run. After each kill the
// prefix loads (merged, no MPI needed to read a shard set) either the
// checkpoint that was there before the job or one that the job committed,
// bit for bit one process's state after that many steps — never a mix, never
// an incomplete set; the only other files are what docs/checkpoints.md says a
// crash may leave; and the next save removes them.
//
// Killing the whole job: Open MPI 4.1's mpirun puts every rank in a process
// group of its own (ps shows pgid == pid for each rank), so killing mpirun's
// group leaves the ranks running, orphaned, and still writing. They stay in
// mpirun's session, though, so the job is started in a new session (setsid)
// and, once mpirun is dead, every process left in that session is killed
// too; this process is their subreaper, so they are reaped here and known to
// be dead before the files are looked at.
#include <gtest/gtest.h>

#include <adamx/adamx.hpp>
#include <adamx/sharded_checkpoint.hpp>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shard_model.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using adamx_test::TempDir;
using Opt = adamx::AdamX<float>;
using Clock = std::chrono::steady_clock;

constexpr int kSaves = 24;   // saves per job, 2 steps apart
constexpr int kStride = 2;
constexpr int kKills = 10;   // per rank count

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The processes of session `session` that are not yet dead (zombies are:
// they write nothing more), from /proc.
std::vector<pid_t> live_processes_of_session(pid_t session) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); }))
      continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;  // the process went meanwhile
    std::istringstream fields(stat.substr(close + 1));
    char state = 0;
    long parent = 0, group = 0, sid = 0;
    if (fields >> state >> parent >> group >> sid && sid == session && state != 'Z')
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// One mpirun job, started in a session of its own whose id is `pid`.
struct Job {
  pid_t pid = -1;
  Clock::time_point started;

  Job(int ranks, const fs::path& prefix, int first, const fs::path& log) {
    const std::vector<std::string> args = {ADAMX_MPIEXEC,   ADAMX_MPIEXEC_NUMPROC_FLAG, std::to_string(ranks),
                                           "--oversubscribe", "--allow-run-as-root",      ADAMX_MPI_SAVE_CHILD,
                                           prefix.string(),   std::to_string(first),      std::to_string(kSaves),
                                           std::to_string(kStride)};
    std::vector<char*> argv;
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    started = Clock::now();
    pid = fork();
    if (pid == 0) {
      setsid();
      const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
  }

  // Waits for the job to end by itself; its exit status.
  int wait() const {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // SIGKILL to mpirun's process group, then to every process of the session
  // still alive once mpirun is dead (the ranks, in groups of their own);
  // returns when all of them are dead. `ended` tells whether mpirun had
  // exited by itself already; returns how many processes outlived mpirun.
  int kill_all(bool& ended) const {
    ::kill(pid, SIGKILL);  // in case it has not called setsid yet (no group -pid then)
    ::kill(-pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ended = WIFEXITED(status);
    std::set<pid_t> orphans;
    for (;;) {
      const std::vector<pid_t> left = live_processes_of_session(pid);
      for (const pid_t p : left) ::kill(p, SIGKILL);
      orphans.insert(left.begin(), left.end());
      while (waitpid(-1, &status, WNOHANG) > 0) {
      }
      if (left.empty()) return static_cast<int>(orphans.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
};

// The committed set under `prefix` for `ranks`: its manifest and the files it names.
std::vector<std::string> committed_names(const fs::path& prefix, int ranks) {
  std::vector<std::string> names{adamx::shard_manifest_path(prefix, ranks).filename().string()};
  for (const fs::path& file : adamx::shard_checkpoint_files(prefix, ranks)) names.push_back(file.filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// What a crash may leave beside the committed set (docs/checkpoints.md, "The
// manifest"): "run.<r>-of-<P>.<16 hex digits>" and "run.manifest-of-<P>.partial".
bool crash_leftover(const std::string& name, int ranks) {
  if (name == "run.manifest-of-" + std::to_string(ranks) + ".partial") return true;
  for (int r = 0; r < ranks; ++r) {
    const std::string head = "run." + std::to_string(r) + "-of-" + std::to_string(ranks) + ".";
    if (name.size() == head.size() + 16 && name.compare(0, head.size(), head) == 0 &&
        std::all_of(name.begin() + static_cast<std::ptrdiff_t>(head.size()), name.end(),
                    [](unsigned char c) { return std::isxdigit(c); }))
      return true;
  }
  return false;
}

// The test for one rank count (the directory is named after the test case).
void killed_saves_leave_one_whole_checkpoint(int ranks) {
  // Ranks orphaned by mpirun's death become this process's children.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0) << std::strerror(errno);
  TempDir dir;
  const fs::path ck = dir / "ck";
  fs::create_directories(ck);
  const fs::path prefix = ck / "run";
  const fs::path log = dir / "mpirun.log";

  // Every state a job may commit, one process's, as an ordinary checkpoint:
  // a merged shard set is byte for byte that (docs/checkpoints.md), and
  // step_global is bitwise one process's step.
  std::map<std::string, int> steps_of;
  for (int steps = 1; steps <= 1 + kStride * kSaves; ++steps) {
    const shard_model::Reference<Opt> reference(steps);
    adamx::save_checkpoint(reference.opt, dir / "expected.ckpt");
    steps_of.emplace(read_bytes(dir / "expected.ckpt"), steps);
  }
  ASSERT_EQ(steps_of.size(), static_cast<std::size_t>(1 + kStride * kSaves)) << "two step counts share a state";
  const auto loaded_steps = [&]() -> int {
    adamx::merge_sharded_checkpoint(prefix, ranks, dir / "merged.ckpt");
    const auto found = steps_of.find(read_bytes(dir / "merged.ckpt"));
    fs::remove(dir / "merged.ckpt");
    return found == steps_of.end() ? -1 : found->second;
  };
  const auto last_of = [](int first) { return first + kStride * (kSaves - 1); };

  // One whole job (even step counts), timed to spread the kills over a job.
  const Clock::time_point start = Clock::now();
  {
    const Job job(ranks, prefix, 2, log);
    ASSERT_EQ(job.wait(), 0) << "the job failed; see " << log;
  }
  const long job_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  int previous = last_of(2);
  ASSERT_EQ(loaded_steps(), previous);
  EXPECT_EQ(listing(ck), committed_names(prefix, ranks));

  // Kill k lands in the k-th tenth of 1.2 job durations, at a seeded point.
  std::mt19937 random(20261126 + static_cast<unsigned>(ranks));
  std::uniform_real_distribution<double> within(0.0, 1.0);
  int kept = 0, committed = 0, inside = 0, finished = 0, orphans = 0;
  for (int kill = 0; kill < kKills; ++kill) {
    // Step counts of the other parity than the checkpoint in place, so the
    // state loaded tells whether this job committed.
    const int first = previous % 2 == 0 ? 1 : 2;
    const std::vector<std::string> before = listing(ck);
    const long delay = static_cast<long>((kill + within(random)) / kKills * 1.2 * static_cast<double>(job_us));
    const Job job(ranks, prefix, first, log);
    ASSERT_GT(job.pid, 0) << std::strerror(errno);
    std::this_thread::sleep_until(job.started + std::chrono::microseconds(delay));
    bool ended = false;
    orphans += job.kill_all(ended);
    SCOPED_TRACE("kill " + std::to_string(kill) + " after " + std::to_string(delay) + " us of a " +
                 std::to_string(job_us) + " us job");
    int now = -2;
    try {
      now = loaded_steps();
    } catch (const adamx::CheckpointError& e) {
      FAIL() << "the prefix does not load: " << e.what();
    }
    ASSERT_NE(now, -1) << "the prefix loads a state no save wrote";
    if (ended) {
      ++finished;
      EXPECT_EQ(now, last_of(first)) << "the job ended but its last save is not what loads";
    }
    if (now == previous) {
      ++kept;
    } else {
      EXPECT_EQ(now % 2, first % 2) << "loads " << now << " steps, neither the previous checkpoint nor this job's";
      EXPECT_LE(now, last_of(first));
      ++committed;
    }
    // Besides the committed set, only what a crash may leave; uncommitted
    // files that were not there before mean the kill landed inside a save.
    const std::vector<std::string> keep = committed_names(prefix, ranks);
    bool new_leftover = false;
    for (const std::string& name : listing(ck)) {
      if (std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
      EXPECT_TRUE(crash_leftover(name, ranks)) << "unexpected file " << name;
      if (std::find(before.begin(), before.end(), name) == before.end()) new_leftover = true;
    }
    inside += new_leftover ? 1 : 0;
    previous = now;
  }
  // How the kills fell: before this job's first commit (the previous
  // checkpoint loads), after one (a state of this job loads), and inside a
  // save (it left uncommitted files). Both sides of the commit must have
  // been hit for the test to mean anything.
  std::printf("np%d: %d kills, job %ld us: %d before the first commit, %d after a commit (%d of them after the job "
              "ended), %d inside a save; %d processes of the job (its ranks) outlived mpirun and were killed after it\n",
              ranks, kKills, job_us, kept, committed, finished, inside, orphans);
  ::testing::Test::RecordProperty("kills_before_commit", kept);
  ::testing::Test::RecordProperty("kills_after_commit", committed);
  ::testing::Test::RecordProperty("kills_inside_save", inside);
  ::testing::Test::RecordProperty("processes_outliving_mpirun", orphans);
  EXPECT_GE(kept, 1) << "no kill landed before a commit: the delays need adjusting";
  EXPECT_GE(committed - finished, 1) << "no kill landed after a commit while the job ran: the delays need adjusting";

  // The next save, a whole job, removes every leftover.
  const int first = previous % 2 == 0 ? 1 : 2;
  const Job job(ranks, prefix, first, log);
  ASSERT_EQ(job.wait(), 0) << "the job failed; see " << log;
  EXPECT_EQ(loaded_steps(), last_of(first));
  EXPECT_EQ(listing(ck), committed_names(prefix, ranks));
}

TEST(MpiKill, KilledSaveLeavesOneWholeCheckpointTwoRanks) { killed_saves_leave_one_whole_checkpoint(2); }
TEST(MpiKill, KilledSaveLeavesOneWholeCheckpointThreeRanks) { killed_saves_leave_one_whole_checkpoint(3); }

}  // namespace
