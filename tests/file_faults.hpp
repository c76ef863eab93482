// Makes one of the checkpoint writers' file operations fail, through the
// library's test-only seam (adamx::detail::file_fault_hook): while a Faults
// object lives, operations are counted from 0 and the one numbered `at`
// fails with EIO (none when `at` is negative). Used to fail each operation of
// a save or a conversion in turn.
#pragma once

#include <adamx/checkpoint.hpp>

#include <cerrno>
#include <filesystem>
#include <map>

namespace adamx_test {

struct Faults {
  using Operation = adamx::detail::FileOperation;
  static inline int count = 0;  // operations so far
  static inline int fail_at = -1;
  static inline Operation failed_operation{};
  static inline std::filesystem::path failed_path;  // what the failed operation was on
  static inline std::map<Operation, int> seen;      // operations so far, by kind

  static int hook(Operation operation, const std::filesystem::path& path) {
    ++seen[operation];
    if (count++ != fail_at) return 0;
    failed_operation = operation;
    failed_path = path;
    return EIO;
  }
  explicit Faults(int at) {
    count = 0;
    fail_at = at;
    failed_path.clear();
    seen.clear();
    adamx::detail::file_fault_hook = &Faults::hook;
  }
  ~Faults() { adamx::detail::file_fault_hook = nullptr; }
  Faults(const Faults&) = delete;
  Faults& operator=(const Faults&) = delete;
};

}  // namespace adamx_test
