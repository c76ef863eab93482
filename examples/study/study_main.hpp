// study_main.hpp - the command line shared by the study's runners
// (study_eigen: the problems written with Eigen; study_torch: the neural
// networks written with libtorch). Each runner lists its tasks; this runs one.
//
//   RUNNER --task NAME --out DIR [--quick] [--only ARM,ARM...] [data options]
//   RUNNER --list
//
// Exit codes: 0 success, 1 a run failed or data unreadable, 2 bad arguments,
// 77 the task's data set is not installed (the message names its package).
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "command_line.hpp"
#include "study.hpp"

namespace study {

/// Where the tasks find their data (defaults: Debian's packages and the
/// repository's data/ directory).
struct DataPaths {
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";                    // dataset-fashion-mnist
  std::string digits_file = "data/digits.csv.gz";                                   // in the repository
  std::string fortunes_dir = "/usr/share/games/fortunes";                           // fortunes
  std::string breast_cancer_file =
      "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv";     // python3-sklearn
};

/// A missing data set: the runner exits with 77 and this message.
class MissingData : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
constexpr int kMissingDataExit = 77;

struct TaskEntry {
  std::string name;
  std::function<Task(const DataPaths&)> make;  ///< loads the data; throws MissingData
};

inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

inline int study_main(int argc, char** argv, const char* program, const std::vector<TaskEntry>& tasks) {
  std::vector<std::string> names;
  for (const auto& t : tasks) names.push_back(t.name);
  std::string task_name, out_dir, only;
  bool quick = false, list = false;
  DataPaths paths;
  adamx_cli::Parser parser(program, "--task NAME --out DIR [options]",
                           "One task of the optimizer study: tunes every optimizer's learning rate, then "
                           "evaluates it on fresh seeds (docs/results.md).");
  parser.add("--task", "NAME", "the task", task_name, names)
      .add("--out", "DIR", "directory for NAME.runs.csv, NAME.curves.csv, NAME.meta.csv", out_dir)
      .flag("--quick", "a smoke run: 3-point grids, 1 tuning seed, 2 evaluation seeds, short runs", quick)
      .add("--only", "ARMS", "comma-separated optimizers to run (default: all)", only)
      .flag("--list", "print the tasks and the optimizers, then exit", list)
      .add("--data", "DIR", "Fashion-MNIST directory", paths.fashion_dir)
      .add("--digits", "FILE", "the UCI digits CSV", paths.digits_file)
      .add("--fortunes", "DIR", "the fortunes text directory", paths.fortunes_dir)
      .add("--breast-cancer", "FILE", "the Wisconsin breast cancer CSV", paths.breast_cancer_file);
  parser.parse(argc, argv);
  if (list) {
    for (const auto& n : names) std::printf("task %s\n", n.c_str());
    for (const Arm& a : arms()) std::printf("optimizer %s\n", a.name.c_str());
    return 0;
  }
  const std::vector<std::string> only_arms = split_list(only);
  for (const auto& a : only_arms) {
    bool known = false;
    for (const Arm& arm : arms()) known = known || arm.name == a;
    if (!known) {
      std::fprintf(stderr, "%s: --only: unknown optimizer '%s' (see --list)\ntry '%s --help'\n", program,
                   a.c_str(), program);
      return adamx_cli::kUsageExit;
    }
  }
  if (task_name.empty() || out_dir.empty()) {
    std::fprintf(stderr, "%s: --task and --out are required\ntry '%s --help'\n", program, program);
    return adamx_cli::kUsageExit;
  }
  try {
    for (const auto& t : tasks) {
      if (t.name != task_name) continue;
      const Task task = t.make(paths);
      run_protocol(task, out_dir, quick, only_arms);
    }
    return 0;
  } catch (const MissingData& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return kMissingDataExit;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace study
