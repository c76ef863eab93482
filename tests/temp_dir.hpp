// A fresh directory per test under the system's temporary directory, named
// after the test (and `what`, for tests that need several), removed with
// everything in it when the object goes.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace adamx_test {

class TempDir {
 public:
  explicit TempDir(const std::string& what = {}) {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("adamx_test_" + std::string(test->test_suite_name()) + "_" + test->name() +
            (what.empty() ? "" : "_" + what));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }
  // Every file in the directory, by name.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(dir_))
      out.push_back(entry.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace adamx_test
